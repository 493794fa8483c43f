"""Who may do what: staff users, facility agents and API tokens, collection devices, and the checks log."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Column, ForeignKey, Index, Integer, String, Table, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, CheckChannel, Language, StaffRole, utcnow
from models.schemes.mutuelle import Mutuelle

# The mutuelles a staff user is kept to; none listed: every mutuelle (a union's or the agency's staff).
staff_mutuelles = Table(
    "staff_mutuelles",
    Base.metadata,
    Column("user_id", ForeignKey("staff_users.id", ondelete="CASCADE"), primary_key=True),
    # No cascade: a mutuelle with staff cannot be deleted (its staff would silently see every mutuelle).
    Column("mutuelle_id", ForeignKey("mutuelles.id"), primary_key=True, index=True),
)


class StaffUser(Base):
    __tablename__ = "staff_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    password_hash: Mapped[str]
    role: Mapped[StaffRole]
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]
    # The language the admin speaks to this user (models.access.staff.STAFF_LANGUAGES).
    language: Mapped[Language] = mapped_column(default=Language.FR, server_default=Language.FR.value)

    mutuelles: Mapped[list[Mutuelle]] = relationship(secondary=staff_mutuelles, order_by="Mutuelle.code")


class StaffSession(Base):
    """One signed-in admin session; signing out ends it here, whatever the cookie still says."""

    __tablename__ = "staff_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("staff_users.id"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]


class Agent(Base):
    """A health-facility agent who checks coverage from a phone with a PIN."""

    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(primary_key=True)
    facility: Mapped[str] = mapped_column(String(120))
    name: Mapped[str | None] = mapped_column(String(120))
    # The mutuelle whose members the agent may check; None: every mutuelle's.
    mutuelle_id: Mapped[int | None] = mapped_column(ForeignKey("mutuelles.id"), index=True)
    phone: Mapped[str] = mapped_column(String(20), unique=True)
    pin_hash: Mapped[str]
    failed_attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None]
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApiToken(Base):
    """A facility's bearer token for the read APIs, stored as a SHA-256 hash."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    facility: Mapped[str] = mapped_column(String(120))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(12))
    # The mutuelle whose members the token may check; None: every mutuelle's.
    mutuelle_id: Mapped[int | None] = mapped_column(ForeignKey("mutuelles.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    # Requests answered with this token, and those refused by its rate limit (429).
    request_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    limited_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class CollectionDevice(Base):
    """A scheme phone that forwards operators' confirmation texts."""

    __tablename__ = "collection_devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_key: Mapped[str] = mapped_column(String(80), unique=True)  # device id or E.164 phone
    label: Mapped[str] = mapped_column(String(120))
    scheme_id: Mapped[int | None] = mapped_column(ForeignKey("schemes.id"))
    # The mutuelle whose merchant phone this is: its forwarded payments are paid to that mutuelle.
    mutuelle_id: Mapped[int | None] = mapped_column(ForeignKey("mutuelles.id"), index=True)
    operator_senders: Mapped[list[Any]]
    trusted: Mapped[bool] = mapped_column(default=False)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Its secret key (`Authorization: Bearer <key>` on /payments/sms-forward), shown once, kept as a SHA-256.
    key_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    key_prefix: Mapped[str | None] = mapped_column(String(12))
    key_issued_at: Mapped[datetime | None]
    key_revoked_at: Mapped[datetime | None]
    # The key it had before the last rotation or revocation: a forward with it is "on an old key".
    previous_key_hash: Mapped[str | None] = mapped_column(String(64), index=True)


class EligibilityCheck(Base):
    """A facility's coverage check and the answer it got."""

    __tablename__ = "eligibility_checks"
    __table_args__ = (Index("ix_eligibility_checks_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    channel: Mapped[CheckChannel]
    facility: Mapped[str | None] = mapped_column(String(120))
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agents.id"), index=True)
    api_token_id: Mapped[int | None] = mapped_column(ForeignKey("api_tokens.id"), index=True)
    member_no: Mapped[str] = mapped_column(String(44), index=True)
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    on_date: Mapped[date]
    covered: Mapped[bool | None]
    status: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EffectKey(Base):
    """A side effect already done, keyed (USSD session + hop, job + period…), so a replay repeats none."""

    __tablename__ = "effect_keys"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    result: Mapped[str | None] = mapped_column(Text)  # the effect's outcome (JSON), whole: a replay reads it back
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
