"""The staff web under /admin: sign-in, roles, read pages, operator and admin actions, the phone simulator."""

from __future__ import annotations

import functools

from flask import Blueprint, Flask
from flask_limiter import Limiter

from handlers import sync_view

bp = Blueprint("admin", __name__, url_prefix="/admin")

# Importing the modules registers their routes on `bp`.
from handlers.admin import (  # noqa: E402
    access,
    actions,
    auth,
    campaign_edits,
    campaigns,
    channels,
    enrolments,
    exports,
    formatting,
    households,
    language,
    pages,
    payments,
    renewals,
    reports,
    simulator,
    statements,
)

__all__ = [
    "access",
    "actions",
    "auth",
    "bp",
    "campaign_edits",
    "campaigns",
    "channels",
    "enrolments",
    "exports",
    "formatting",
    "households",
    "language",
    "pages",
    "payments",
    "register",
    "renewals",
    "reports",
    "simulator",
    "statements",
]


# Sign-in limits: per address and username, per username from any address, per address for any username.
LOGIN_LIMITS = (
    ("ADMIN_LOGIN_RATE_LIMIT", "login_rate_key"),
    ("ADMIN_LOGIN_USER_RATE_LIMIT", "login_user_rate_key"),
    ("ADMIN_LOGIN_ADDRESS_RATE_LIMIT", "login_address_rate_key"),
)


def register(app: Flask) -> None:
    """Register the admin blueprint and rate-limit its sign-in form with the app's own limiter."""
    app.register_blueprint(bp)
    language.init_language(app)
    limiter: Limiter = app.extensions["admin_limiter"]
    endpoint = f"{bp.name}.{auth.login.__name__}"
    view = sync_view(app.view_functions[endpoint])
    for setting, key_name in LOGIN_LIMITS:
        view = limiter.limit(
            functools.partial(_config_value, app, setting),
            key_func=getattr(auth, key_name),
            methods=["POST"],
            error_message="Too many sign-in attempts; wait a while and try again.",
        )(view)
    app.view_functions[endpoint] = view


def _config_value(app: Flask, name: str) -> str:
    return str(app.config[name])
