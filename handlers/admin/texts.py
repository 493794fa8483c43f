"""The admin's gettext, typed: Flask-Babel's translation of a text into the request's language."""

from __future__ import annotations

from flask_babel import gettext as babel_gettext


def gettext(text: str, **values: object) -> str:
    """Return the text in the request's language (the admin catalogue), its %(name)s placeholders filled."""
    return str(babel_gettext(text, **values))
