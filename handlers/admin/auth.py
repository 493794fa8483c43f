"""Staff sign-in and sign-out, the logged-in principal, and the `role_required` guard."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast
from urllib.parse import urlsplit

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_limiter.util import get_remote_address
from flask_login import UserMixin, current_user, login_user, logout_user
from flask_login import login_required as _untyped_login_required
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from extensions import db, keep_request_to, login_manager, settings
from handlers.admin import bp
from handlers.admin.texts import gettext
from models.access.staff import (
    authenticate_staff,
    end_staff_session,
    normalise_username,
    role_allows,
    start_staff_session,
    user_for_session_token,
)
from models.access.tables import StaffUser
from models.base import StaffRole
from models.inputs import InputError

F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")
R = TypeVar("R")
CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def login_required(view: F) -> F:
    """Flask-Login's `login_required` (send anyone not signed in to sign-in), typed: the package has no types."""
    return cast(F, _untyped_login_required(view))


class Staff(UserMixin):  # type: ignore[misc]  # Flask-Login ships no types: its UserMixin base is Any
    """The signed-in staff member as Flask-Login sees it (no password hash kept in memory)."""

    def __init__(
        self, user: StaffUser, token: str, mutuelle_ids: tuple[int, ...] | None = None, codes: tuple[str, ...] = ()
    ) -> None:
        self.id = token
        self.user_id = user.id
        self.username = user.username
        self.role = user.role
        self.language = user.language.value
        # The mutuelles the member is kept to; None: every mutuelle (a union's or the agency's staff).
        self.mutuelle_ids = mutuelle_ids
        self.mutuelle_codes = codes  # for the header

    @property
    def sees_every_mutuelle(self) -> bool:
        """Return whether this member is a union's or the agency's (kept to no mutuelle)."""
        return self.mutuelle_ids is None

    def can(self, role: StaffRole) -> bool:
        """Return whether this member's role includes `role`."""
        return role_allows(self.role, role)


def load_staff(token: str) -> Staff | None:
    """Return the staff member of a session cookie, or None when it is stale.

    Every admin request but sign-in goes through here first: the request's database session is kept from here on
    to the member's mutuelles (models/views/scope.py), for every page, action, export and report alike.
    """
    session = db()
    signed_in = user_for_session_token(session, token)
    if signed_in is None:
        return None
    keep_request_to(signed_in.mutuelle_ids)
    return Staff(signed_in.user, token, signed_in.mutuelle_ids, signed_in.mutuelle_codes)


login_manager.user_loader(load_staff)


def role_required(role: StaffRole, *, every_mutuelle: bool = False) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Let signed-in staff whose role includes `role` through; send others to sign-in (401) or 403.

    `every_mutuelle`: the page shows or acts on every mutuelle at once (the queues, the phone simulator), so staff
    kept to some mutuelles get 404, as for another mutuelle's row.
    """

    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(view)
        @login_required
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if not current_user.can(role):
                abort(403)
            if every_mutuelle and not current_user.sees_every_mutuelle:
                abort(404)
            return view(*args, **kwargs)

        return wrapper

    return decorate


def _username_tried() -> str:
    return normalise_username(request.form.get("username", ""))[:80]


def login_rate_key() -> str:
    """Return the rate-limit key of a sign-in attempt: the client address and the username tried."""
    return f"{get_remote_address()}|{_username_tried()}"


def login_user_rate_key() -> str:
    """Return the key of the per-username limit: the username tried, from any address."""
    return f"user|{_username_tried()}"


def login_address_rate_key() -> str:
    """Return the key of the per-address limit: the client address, whatever the username (spraying)."""
    return f"address|{get_remote_address()}"


def safe_next(target: str | None) -> str:
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
            "admin/login.html",
            error=gettext("Wrong username or password."),
            username=username,
            next=request.form.get("next"),
        ), 401
    token = start_staff_session(session, user)
    session.commit()
    login_user(Staff(user, token))
    return redirect(safe_next(request.form.get("next")))


@bp.post("/logout")
@login_required
def logout() -> ResponseReturnValue:
    """Sign the staff member out: the session ends in the database, so a copied cookie stops working too."""
    message = gettext("Signed out.")  # in the user's language, before they are anonymous
    session = db()
    end_staff_session(session, current_user.id)
    session.commit()
    logout_user()
    flash(message)
    return redirect(url_for("admin.login"))


@bp.errorhandler(CSRFError)
def csrf_failed(error: CSRFError) -> ResponseReturnValue:
    """Answer a form without a valid CSRF token with the sign-in page and a 400."""
    message = gettext("The form expired or was forged (%(reason)s).", reason=error.description)
    return render_template("admin/login.html", error=message), 400


@bp.app_context_processor
def staff_roles() -> dict[str, Any]:
    """Expose the role names to templates."""
    return {"StaffRole": StaffRole}


# Scripts and styles from this origin only (inline `style=` attributes draw the bar charts); no framing.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


@bp.after_request
def security_headers(response: Response) -> Response:
    """Add CSP, frame denial, no-sniff and referrer headers to every admin page; HSTS in production."""
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    if settings().is_production:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    return response


@bp.before_request
def refuse_control_characters() -> ResponseReturnValue | None:
    """Answer 400 to any query or form value with a NUL or another control character (no database takes them)."""
    values = [*request.args.items(multi=True)]
    if request.method == "POST" and request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        values.extend(request.form.items(multi=True))
    for name, value in values:
        if CONTROL_RE.search(value) or CONTROL_RE.search(name):
            abort(400, f"{name[:40]!r} contains control characters")
    return None


@bp.errorhandler(400)
def bad_request(error: HTTPException) -> ResponseReturnValue:
    """Answer a malformed parameter with a page naming it."""
    return render_template("admin/error.html", code=400, message=error.description), 400


@bp.errorhandler(InputError)
def bad_input(error: InputError) -> ResponseReturnValue:
    """Answer a query value found wrong only when the page is read (a cursor of another list) as a 400."""
    return render_template("admin/error.html", code=400, message=str(error)), 400
