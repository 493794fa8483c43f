"""Declarative base, shared column types and the status vocabularies of docs/http-contract.md."""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import JSON, BigInteger, Enum, MetaData, String, Table
from sqlalchemy.orm import DeclarativeBase

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Return the current UTC time, naive (the database stores UTC without a zone)."""
    return datetime.now(UTC).replace(tzinfo=None)


def today_utc() -> date:
    """Return today's UTC date."""
    return utcnow().date()


class Base(DeclarativeBase):
    """Base of every table."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        enum.Enum: Enum(enum.Enum, native_enum=False, length=24, values_callable=lambda e: [m.value for m in e]),
        dict[str, Any]: JSON,
        list[Any]: JSON,
        str: String(255),
    }

    if TYPE_CHECKING:
        # SQLAlchemy types `__table__` as any FromClause (a class may map a join or a subquery); every model
        # here maps a Table, so `Model.__table__.insert()` and `.update()` type-check.
        __table__: ClassVar[Table]


# Money is an integer of the currency's minor unit; BigInteger so KHR and network totals never overflow.
Money = BigInteger


class Language(enum.StrEnum):
    FR = "fr"
    WO = "wo"
    EN = "en"
    KM = "km"


class PremiumKind(enum.StrEnum):
    PER_PERSON = "per_person"
    BANDS = "bands"


class HouseholdStatus(enum.StrEnum):
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    CLOSED = "CLOSED"


class MemberStatus(enum.StrEnum):
    ACTIVE = "active"
    LEFT = "left"
    DECEASED = "deceased"


class Sex(enum.StrEnum):
    F = "F"
    M = "M"


class LedgerKind(enum.StrEnum):
    CHARGE = "charge"
    PAYMENT = "payment"
    SUBSIDY = "subsidy"
    FEE = "fee"
    CREDIT = "credit"
    REVERSAL = "reversal"
    REFUND = "refund"
    ADJUSTMENT = "adjustment"


class PaymentStatus(enum.StrEnum):
    RECEIVED = "RECEIVED"
    MATCHED = "MATCHED"
    ALLOCATED = "ALLOCATED"
    PROVISIONAL = "PROVISIONAL"
    UNMATCHED = "UNMATCHED"
    CONFLICT = "CONFLICT"
    REVERSED = "REVERSED"
    REFUNDED = "REFUNDED"
    REJECTED = "REJECTED"


class EvidenceSource(enum.StrEnum):
    WEBHOOK = "webhook"
    SMS_FORWARD = "sms_forward"
    STATEMENT = "statement"
    MANUAL = "manual"


class RequestStatus(enum.StrEnum):
    OPEN = "OPEN"
    PAID = "PAID"
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"


class EligibilityStatus(enum.StrEnum):
    ACTIVE = "ACTIVE"
    WAITING = "WAITING"
    GRACE = "GRACE"
    LAPSED = "LAPSED"
    PENDING = "PENDING"
    SUSPENDED = "SUSPENDED"
    INACTIVE = "INACTIVE"


class MessageDirection(enum.StrEnum):
    INBOUND = "in"
    OUTBOUND = "out"


class MessageStatus(enum.StrEnum):
    QUEUED = "QUEUED"
    SENT = "Sent"
    SUBMITTED = "Submitted"
    BUFFERED = "Buffered"
    REJECTED = "Rejected"
    SUCCESS = "Success"
    FAILED = "Failed"
    UNKNOWN = "UNKNOWN"  # the provider may or may not have it (read timeout): a delivery report settles it
    NOT_SENT = "NOT_SENT"  # printed by the development console outbox, never handed to a provider
    RECEIVED = "RECEIVED"
    HANDLED = "HANDLED"


class StaffRole(enum.StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"


class CheckChannel(enum.StrEnum):
    API = "api"
    USSD = "ussd"
    SMS = "sms"
    FHIR = "fhir"
