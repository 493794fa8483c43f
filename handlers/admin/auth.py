"""Staff sign-in and sign-out, the logged-in principal, and the `role_required` guard."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_limiter.util import get_remote_address
from flask_login import UserMixin, current_user, login_required, login_user, logout_user
from flask_wtf.csrf import CSRFError

from extensions import db, login_manager
from handlers.admin import bp
from models.access import StaffUser
from models.base import StaffRole
from models.staff import authenticate_staff, normalise_username, role_allows, session_token, user_for_session_token

F = TypeVar("F", bound=Callable[..., Any])


class Staff(UserMixin):
    """The signed-in staff member as Flask-Login sees it (no password hash kept in memory)."""

    def __init__(self, user: StaffUser) -> None:
        self.id = session_token(user)
        self.user_id = user.id
        self.username = user.username
        self.role = user.role

    def can(self, role: StaffRole) -> bool:
        """Return whether this member's role includes `role`."""
        return role_allows(self.role, role)


@login_manager.user_loader
def load_staff(token: str) -> Staff | None:
    """Return the staff member of a session cookie, or None when it is stale."""
    user = user_for_session_token(db(), token)
    return Staff(user) if user is not None else None


def role_required(role: StaffRole) -> Callable[[F], F]:
    """Let signed-in staff whose role includes `role` through; send others to sign-in (401) or 403."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        @login_required
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not current_user.can(role):
                abort(403)
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def login_rate_key() -> str:
    """Return the rate-limit key of a sign-in attempt: the client address and the username tried."""
    return f"{get_remote_address()}|{normalise_username(request.form.get('username', ''))[:80]}"


def _safe_next(target: str | None) -> str:
    """Return a same-site admin path to go to after sign-in."""
    if target:
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and parts.path.startswith("/admin") and "\\" not in target:
            return target
    return url_for("admin.overview")


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """Show the sign-in form; sign a staff member in with username and password."""
    if request.method == "GET":
        if current_user.is_authenticated:
            return redirect(url_for("admin.overview"))
        return render_template("admin/login.html", next=request.args.get("next", ""))
    username = request.form.get("username", "")
    password = request.form.get("password", "")
    session = db()
    user = authenticate_staff(session, username, password)
    if user is None:
        session.rollback()
        return render_template(
            "admin/login.html", error="Wrong username or password.", username=username, next=request.form.get("next")
        ), 401
    session.commit()
    login_user(Staff(user))
    return redirect(_safe_next(request.form.get("next")))


@bp.post("/logout")
@login_required
def logout() -> ResponseReturnValue:
    """Sign the staff member out."""
    logout_user()
    flash("Signed out.")
    return redirect(url_for("admin.login"))


@bp.errorhandler(CSRFError)
def csrf_failed(error: CSRFError) -> ResponseReturnValue:
    """Answer a form without a valid CSRF token with the sign-in page and a 400."""
    return render_template("admin/login.html", error=f"The form expired or was forged ({error.description})."), 400


@bp.app_context_processor
def staff_roles() -> dict[str, Any]:
    """Expose the role names to templates."""
    return {"StaffRole": StaffRole}
