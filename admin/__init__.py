"""care-episodes admin panel (Flask)."""
