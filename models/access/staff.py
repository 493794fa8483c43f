"""Staff users of the admin web: creation, password changes and sign-in checks."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from models.access.hashing import hash_password, password_needs_rehash, verify_password
from models.access.tables import StaffSession, StaffUser, staff_mutuelles
from models.base import Language, StaffRole, utcnow
from models.db import every_mutuelle
from models.schemes.mutuelle import Mutuelle, find_mutuelle

MIN_PASSWORD_LENGTH = 10
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{1,79}$")
# Verified when the username is unknown, so a wrong name costs as much time as a wrong password.
_DUMMY_HASH = hash_password("not-a-real-password-0000")
ROLE_RANK = {StaffRole.VIEWER: 1, StaffRole.OPERATOR: 2, StaffRole.ADMIN: 3}
# The languages the admin speaks (locales/<lang>/LC_MESSAGES/admin.po); the first is the default, as for CMU staff.
STAFF_LANGUAGES: tuple[Language, ...] = (Language.FR, Language.EN)


class StaffError(ValueError):
    """A staff user cannot be created or changed as asked."""


@dataclass(frozen=True)
class CreatedUser:
    """The outcome of `create_staff_user`: the user and whether it was created now."""

    user: StaffUser
    created: bool


def normalise_username(username: str) -> str:
    """Return the canonical (trimmed, lower-case) form of a username."""
    return username.strip().lower()


def role_allows(role: StaffRole, needed: StaffRole) -> bool:
    """Return whether a role includes the rights of `needed` (admin ⊃ operator ⊃ viewer)."""
    return ROLE_RANK[role] >= ROLE_RANK[needed]


def check_password_strength(password: str) -> None:
    """Raise StaffError when a password is too weak to protect payment data."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise StaffError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")


def staff_language(value: str | Language | None) -> Language:
    """Return the admin language a value names; raise StaffError for one the admin does not speak."""
    if value is None or value == "":
        return STAFF_LANGUAGES[0]
    code = str(value).strip().lower()
    for language in STAFF_LANGUAGES:
        if language.value == code:
            return language
    raise StaffError(f"the admin speaks {', '.join(language.value for language in STAFF_LANGUAGES)}, not {code!r}")


def find_staff_user(session: Session, username: str) -> StaffUser | None:
    """Return the staff user with this username, if any."""
    return session.scalar(select(StaffUser).where(StaffUser.username == normalise_username(username)))


def create_staff_user(
    session: Session,
    username: str,
    password: str,
    role: StaffRole,
    *,
    if_missing: bool = False,
    language: str | Language | None = None,
    mutuelles: Sequence[str] = (),
) -> CreatedUser:
    """Create a staff user with an argon2-hashed password (or return the existing one when `if_missing`).

    `mutuelles`: the codes of the mutuelles the user is kept to; none: every mutuelle (a union's or the agency's).
    """
    name = normalise_username(username)
    chosen = staff_language(language)
    if not _USERNAME.match(name):
        raise StaffError("a username is 2-80 characters: letters, digits, '.', '_', '@', '-'")
    # Usernames are unique across mutuelles: look in all of them, whoever asks.
    existing = session.scalar(every_mutuelle(select(StaffUser).where(StaffUser.username == name)))
    if existing is not None:
        if if_missing:
            return CreatedUser(existing, created=False)
        raise StaffError(f"user {name} already exists")
    check_password_strength(password)
    kept_to = mutuelles_named(session, mutuelles)
    user = StaffUser(username=name, password_hash=hash_password(password), role=role, active=True, language=chosen)
    user.mutuelles = kept_to
    session.add(user)
    session.flush()
    return CreatedUser(user, created=True)


def mutuelles_named(session: Session, codes: Sequence[str]) -> list[Mutuelle]:
    """Return the mutuelles these codes name (any case), or raise StaffError naming the unknown ones."""
    found, unknown = [], []
    for code in dict.fromkeys(c.strip() for c in codes if c.strip()):
        mutuelle = find_mutuelle(session, code)
        if mutuelle is None:
            unknown.append(code)
        else:
            found.append(mutuelle)
    if unknown:
        raise StaffError(f"no mutuelle {', '.join(unknown)} (see `flask --app app mutuelles list`)")
    return found


def set_staff_password(session: Session, username: str, password: str) -> StaffUser:
    """Replace a staff user's password (which signs out their open sessions)."""
    user = find_staff_user(session, username)
    if user is None:
        raise StaffError(f"no user {normalise_username(username)}")
    check_password_strength(password)
    user.password_hash = hash_password(password)
    return user


def set_staff_language(session: Session, user_id: int, language: str | Language) -> StaffUser:
    """Set the language the admin speaks to a staff user."""
    user = session.get(StaffUser, user_id)
    if user is None:
        raise StaffError(f"no user {user_id}")
    user.language = staff_language(language)
    session.flush()
    return user


def deactivate_staff_user(session: Session, username: str, by: str) -> StaffUser:
    """Deactivate a staff user (their open sessions end at once); nobody deactivates themselves."""
    user = find_staff_user(session, username)
    if user is None:
        raise StaffError(f"no user {normalise_username(username)}")
    if user.username == normalise_username(by):
        raise StaffError("you cannot deactivate yourself")
    user.active = False
    session.flush()
    return user


def list_staff_users(session: Session) -> list[StaffUser]:
    """Return every staff user by username, with their mutuelles."""
    query = select(StaffUser).options(selectinload(StaffUser.mutuelles)).order_by(StaffUser.username)
    return list(session.scalars(query))


def authenticate_staff(session: Session, username: str, password: str) -> StaffUser | None:
    """Return the active staff user these credentials belong to, recording the sign-in; else None."""
    user = find_staff_user(session, username)
    if user is None or not user.active:
        verify_password(_DUMMY_HASH, password)
        return None
    if not verify_password(user.password_hash, password):
        return None
    if password_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = utcnow()
    return user


def session_token(user: StaffUser, secret: str = "") -> str:
    """Return the id Flask-Login keeps in the cookie: the user, their password hash, and the signed-in session."""
    return f"{user.id}:{user.password_hash[-16:]}:{secret}"


def start_staff_session(session: Session, user: StaffUser) -> str:
    """Record a new signed-in session of the user and return its cookie token; the caller commits."""
    secret = secrets.token_urlsafe(24)
    session.add(StaffSession(user_id=user.id, secret_hash=_secret_hash(secret), created_at=utcnow()))
    session.flush()
    return session_token(user, secret)


def end_staff_session(session: Session, token: str) -> None:
    """End the signed-in session a cookie token names (a copy of the cookie no longer works); the caller commits."""
    secret = token.rpartition(":")[2]
    if secret:
        session.execute(
            update(StaffSession)
            .where(StaffSession.secret_hash == _secret_hash(secret), StaffSession.ended_at.is_(None))
            .values(ended_at=utcnow())
        )


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class SignedIn:
    """The staff user a live session token names, and the mutuelles they are kept to (None: every mutuelle)."""

    user: StaffUser
    mutuelle_ids: tuple[int, ...] | None
    mutuelle_codes: tuple[str, ...] = ()


def user_for_session_token(session: Session, token: str) -> SignedIn | None:
    """Return the active user a session token names, with their mutuelles, or None when stale (signed out,
    password changed, disabled)."""
    user_id, _, rest = token.partition(":")
    _fingerprint, _, secret = rest.partition(":")
    if not user_id.isascii() or not user_id.isdigit() or len(user_id) > 12 or not secret:
        return None
    user = session.get(StaffUser, int(user_id))
    if user is None or not user.active or session_token(user, secret) != token:
        return None
    # The live session and the user's mutuelles in one round trip (a row per mutuelle, one with None for none).
    rows = session.execute(
        select(StaffSession.id, staff_mutuelles.c.mutuelle_id, Mutuelle.code)
        .outerjoin(staff_mutuelles, staff_mutuelles.c.user_id == StaffSession.user_id)
        .outerjoin(Mutuelle, Mutuelle.id == staff_mutuelles.c.mutuelle_id)
        .where(
            StaffSession.secret_hash == _secret_hash(secret),
            StaffSession.user_id == user.id,
            StaffSession.ended_at.is_(None),
        )
    ).all()
    if not rows:
        return None
    kept = sorted({(code, int(mutuelle_id)) for _, mutuelle_id, code in rows if mutuelle_id is not None})
    ids = tuple(sorted(mutuelle_id for _, mutuelle_id in kept))
    return SignedIn(user, ids or None, tuple(code for code, _ in kept))
