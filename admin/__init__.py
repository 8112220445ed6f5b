"""care-episodes admin panel: a Flask app over the library's write and read sides.

    from admin import create_app
    app = create_app({"DATABASE_URL": "sqlite:///care-episodes.db"})

``flask --app admin run`` works too (Flask finds ``create_app``).
"""

from admin.app import create_app

__all__ = ["create_app"]
