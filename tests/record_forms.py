"""Filling in the panel's record forms the way a browser does.

``submit(client, path, {...})`` opens the form page, takes every value the page offers
(hidden command id and CSRF token, prefilled dates, selected options, checked boxes),
changes the given fields and posts the form back to its own address.
"""

from __future__ import annotations

from html.parser import HTMLParser
from uuid import UUID

from episodes import Actor, ActorRole, Episodes

CLINICIAN = Actor("clin-ana", ActorRole.CLINICIAN)


class _FormReader(HTMLParser):
    """The name -> value pairs the record form (``form.record-form``, method post) would send."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self.action: str | None = None
        self._in_form = False
        self._select: str | None = None
        self._options: list[tuple[str, bool]] = []
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and "record-form" in a.get("class", "") and a.get("method") == "post":
            self._in_form, self.action = True, a.get("action")
        if not self._in_form:
            return
        if tag == "input" and a.get("name"):
            if a.get("type") != "checkbox" or "checked" in a:
                self.values[a["name"]] = a.get("value", "")
        elif tag == "select":
            self._select, self._options = a["name"], []
        elif tag == "option" and self._select is not None:
            self._options.append((a.get("value", ""), "selected" in a))
        elif tag == "textarea":
            self._textarea = a["name"]
            self.values[self._textarea] = ""

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self.values[self._textarea] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False
        elif tag == "select" and self._select is not None:
            chosen = [v for v, selected in self._options if selected] or [self._options[0][0]]
            self.values[self._select] = chosen[-1]
            self._select = None
        elif tag == "textarea":
            self._textarea = None


def read_form(html: str) -> _FormReader:
    reader = _FormReader()
    reader.feed(html)
    assert reader.action is not None, "no record form on the page"
    return reader


def submit(client, path: str, changes: dict[str, str | None] | None = None):
    """Open ``path``, fill in ``changes`` (None unticks a box or clears a field), post it."""
    page = client.get(path)
    assert page.status_code == 200, page.get_data(as_text=True)
    form = read_form(page.get_data(as_text=True))
    values = dict(form.values)
    for name, value in (changes or {}).items():
        if value is None:
            values.pop(name, None)
        else:
            values[name] = value
    return client.post(form.action, data=values)


def episode_of(response) -> UUID:
    """The episode a successful record redirected to (``/episodes/<id>``)."""
    assert response.status_code == 303, response.get_data(as_text=True)
    prefix = "/episodes/"
    location = response.headers["Location"]
    assert location.startswith(prefix), location
    return UUID(location[len(prefix):])


def flashes(client) -> list[str]:
    with client.session_transaction() as session:
        return [message for _, message in session.get("_flashes", [])]


def last_fact(library: Episodes, episode: UUID):
    return library.episode(episode).facts[-1]


def events_in(library: Episodes, episode: UUID) -> list[str]:
    return [type(event).__name__ for event in library.history(episode)]
