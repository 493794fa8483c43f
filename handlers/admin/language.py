"""The language the admin speaks: each staff user's own (French or English), switched from any page.

Flask-Babel translates the templates and flash messages with the `admin` catalogue
(`locales/<lang>/LC_MESSAGES/admin.po`), read through `models.texts.i18n` like the member-facing texts: a missing
or stale `.mo` is compiled in memory.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from babel.support import NullTranslations, Translations
from flask import Flask, flash, has_request_context, redirect, request
from flask.typing import ResponseReturnValue
from flask_babel import Babel, Domain, get_locale, refresh
from flask_login import current_user

from extensions import db, login_manager
from handlers.admin import bp
from handlers.admin.auth import role_required, safe_next
from handlers.admin.texts import gettext
from models.access.staff import STAFF_LANGUAGES, StaffError, set_staff_language
from models.base import StaffRole
from models.texts.i18n import ADMIN_DOMAIN, translations

log = logging.getLogger(__name__)

LANGUAGE_CODES: tuple[str, ...] = tuple(language.value for language in STAFF_LANGUAGES)
# Each language named in itself, as the switch shows it.
LANGUAGE_NAMES = {"fr": "Français", "en": "English"}


def N_(text: str) -> str:
    """Mark a text for the catalogue; it is translated where it is shown."""
    return text


# Flask-Login flashes this through `localize_callback`, in the visitor's language.
SIGN_IN_PROMPT = N_("Please sign in to see this page.")


class CatalogDomain(Domain):  # type: ignore[misc]
    """Flask-Babel's message domain read through `models.texts.i18n.translations` (compiled in memory if stale)."""

    def __init__(self) -> None:
        super().__init__(domain=ADMIN_DOMAIN)

    def get_translations(self) -> Translations | NullTranslations:
        """Return the admin catalogue of the request's language."""
        locale = get_locale()
        if locale is None:
            return NullTranslations()
        code = locale.language if locale.language in LANGUAGE_CODES else LANGUAGE_CODES[0]
        return translations(code, ADMIN_DOMAIN)


class AdminBabel(Babel):  # type: ignore[misc]
    """Flask-Babel with the admin's own catalogue domain."""

    @functools.cached_property
    def domain_instance(self) -> Domain:
        """Return the admin's message domain."""
        return CatalogDomain()


babel = AdminBabel()


def admin_locale() -> str:
    """Return the request's language: the signed-in user's, else the browser's choice among fr and en, else fr."""
    if not has_request_context():
        return LANGUAGE_CODES[0]
    language = getattr(current_user, "language", None)
    if language is not None and str(language) in LANGUAGE_CODES:
        return str(language)
    return request.accept_languages.best_match(LANGUAGE_CODES) or LANGUAGE_CODES[0]


def init_language(app: Flask) -> None:
    """Translate the admin (templates, flash messages, the sign-in prompt) into each user's language."""
    babel.init_app(app, default_locale=LANGUAGE_CODES[0], locale_selector=admin_locale)
    login_manager.login_message = SIGN_IN_PROMPT
    login_manager.localize_callback = gettext


@bp.app_context_processor
def language_context() -> dict[str, Any]:
    """Expose the page's language and the languages the user may switch to."""
    current = str(get_locale() or LANGUAGE_CODES[0])
    others = [(code, LANGUAGE_NAMES[code]) for code in LANGUAGE_CODES if code != current]
    return {"admin_language": current, "other_languages": others}


@bp.post("/language")
@role_required(StaffRole.VIEWER)
def set_language() -> ResponseReturnValue:
    """Save the language the admin speaks to the signed-in user, then go back to the page they were on."""
    session = db()
    try:
        user = set_staff_language(session, current_user.user_id, request.form.get("language", ""))
    except StaffError:
        session.rollback()
        flash(gettext("Choose French or English."))
        return redirect(safe_next(request.form.get("next")))
    session.commit()
    current_user.language = user.language.value
    refresh()
    log.info("admin: %s now reads the admin in %s", current_user.username, user.language.value)
    flash(gettext("Language saved: %(name)s.", name=LANGUAGE_NAMES[user.language.value]))
    return redirect(safe_next(request.form.get("next")))
