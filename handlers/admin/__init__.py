"""The staff web under /admin: sign-in, roles, and the read pages (operator actions slot in as more modules)."""

from __future__ import annotations

from flask import Blueprint, Flask
from flask_limiter import Limiter

bp = Blueprint("admin", __name__, url_prefix="/admin")

# Importing the modules registers their routes on `bp`.
from handlers.admin import auth, channels, formatting, households, pages, payments  # noqa: E402

__all__ = ["auth", "bp", "channels", "formatting", "households", "pages", "payments", "register"]


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
