"""The staff web under /admin: sign-in, roles, read pages, operator and admin actions, the phone simulator."""

from __future__ import annotations

from flask import Blueprint, Flask
from flask_limiter import Limiter

bp = Blueprint("admin", __name__, url_prefix="/admin")

# Importing the modules registers their routes on `bp`.
from handlers.admin import (  # noqa: E402
    access,
    actions,
    auth,
    channels,
    formatting,
    households,
    pages,
    payments,
    simulator,
    statements,
)

__all__ = [
    "access",
    "actions",
    "auth",
    "bp",
    "channels",
    "formatting",
    "households",
    "pages",
    "payments",
    "register",
    "simulator",
    "statements",
]


def register(app: Flask) -> None:
    """Register the admin blueprint and rate-limit its sign-in form with the app's own limiter."""
    app.register_blueprint(bp)
    limiter: Limiter = app.extensions["admin_limiter"]
    endpoint = f"{bp.name}.{auth.login.__name__}"
    app.view_functions[endpoint] = limiter.limit(
        lambda: app.config["ADMIN_LOGIN_RATE_LIMIT"],
        key_func=auth.login_rate_key,
        methods=["POST"],
        error_message="Too many sign-in attempts; wait a minute and try again.",
    )(app.view_functions[endpoint])
