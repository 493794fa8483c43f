"""API tokens for health facilities: issued once, stored as a SHA-256 hash, revocable."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.access.tables import ApiToken
from models.db import every_mutuelle

TOKEN_BYTES = 32
PREFIX_LENGTH = 8


class TokenError(ValueError):
    """A token cannot be issued or revoked; the message says why."""


def hash_token(token: str) -> str:
    """Return the hex SHA-256 of a presented token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token(
    session: Session, *, name: str, facility: str, now: datetime, mutuelle_id: int | None = None
) -> tuple[ApiToken, str]:
    """Create a token for a facility (kept to a mutuelle's members, or every mutuelle's) and return its row and
    the plain token, which is never stored."""
    name, facility = name.strip(), facility.strip()
    if not name or len(name) > 80:
        raise TokenError("the name must be 1 to 80 characters")
    if not facility or len(facility) > 120:
        raise TokenError("the facility must be 1 to 120 characters")
    existing = session.scalar(every_mutuelle(select(ApiToken).where(ApiToken.name == name)))
    if existing is not None:
        # Names stay unique even after revocation so the checks log keeps meaning one thing.
        state = "revoked" if existing.revoked_at else "active"
        raise TokenError(f"a token named {name!r} already exists ({state})")
    plain = secrets.token_urlsafe(TOKEN_BYTES)
    token = ApiToken(
        name=name,
        facility=facility,
        token_hash=hash_token(plain),
        prefix=plain[:PREFIX_LENGTH],
        mutuelle_id=mutuelle_id,
        created_at=now,
    )
    session.add(token)
    session.flush()
    return token, plain


def revoke_token(session: Session, name: str, now: datetime) -> ApiToken:
    """Revoke the named token (again is harmless) and return it."""
    token = session.scalar(select(ApiToken).where(ApiToken.name == name))
    if token is None:
        raise TokenError(f"no token named {name!r}")
    if token.revoked_at is None:
        token.revoked_at = now
        session.flush()
    return token


def authenticate_token(session: Session, presented: str) -> ApiToken | None:
    """Return the active token matching the presented bearer token, or None."""
    if not presented or len(presented) > 256:
        return None
    digest = hash_token(presented)
    # Looking up by the hash leaks nothing about the token: an attacker cannot steer SHA-256 prefixes.
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == digest))
    if token is None or not hmac.compare_digest(token.token_hash, digest) or token.revoked_at is not None:
        return None
    return token


def list_tokens(session: Session) -> list[ApiToken]:
    """Return every token, newest first."""
    return list(session.scalars(select(ApiToken).order_by(ApiToken.created_at.desc(), ApiToken.id.desc())))
