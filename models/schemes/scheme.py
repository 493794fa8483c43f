"""A health-insurance scheme and its configuration: plans, premium, subsidies, payment channels."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from models.base import Base, Language, Money, PremiumKind, utcnow

# Days before a household's cover ends that its renewal reminders go out, when the scheme names none.
DEFAULT_REMINDER_DAYS = (14, 3)
# The FHIR identifier systems of a scheme that names none: `<base>/<scheme code>/member` and `…/coverage`
# (`.example` is reserved: a deployment that shares identifiers names its own in the scheme file's `[fhir]`).
FHIR_SYSTEM_BASE = "https://mutuelle.example/fhir"
# Household numbers issued at enrolment when the scheme file names no `[enrolment] household_pattern`.
DEFAULT_HOUSEHOLD_PATTERN = "{mutuelle}-{serial:06d}-{check}"
# What a household pattern may name: the scheme's code, the mutuelle's, the serial number and its check digit.
HOUSEHOLD_PATTERN_FIELDS = frozenset({"scheme", "mutuelle", "serial", "check"})
# The ID fields of an enrolled member a scheme file may require of the household's head.
ENROLMENT_ID_FIELDS = ("phone", "id_number", "card_number")


class Scheme(Base):
    __tablename__ = "schemes"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str]
    country: Mapped[str] = mapped_column(String(2))
    currency: Mapped[str] = mapped_column(String(3))
    currency_exponent: Mapped[int] = mapped_column(Integer, default=0)
    premium_kind: Mapped[PremiumKind]
    # per_person: `premium_amount` per person for `premium_per_months` months (CMU: 7,000 per 12).
    premium_amount: Mapped[int] = mapped_column(Money, default=0)
    premium_per_months: Mapped[int] = mapped_column(Integer, default=1)
    membership_fee: Mapped[int] = mapped_column(Money, default=0)
    grace_days: Mapped[int] = mapped_column(Integer, default=0)
    grace_covered: Mapped[bool] = mapped_column(default=False)
    max_advance_months: Mapped[int] = mapped_column(Integer, default=12)
    default_language: Mapped[Language]
    languages: Mapped[list[Any]]
    timezone: Mapped[str] = mapped_column(String(64))
    reminder_days: Mapped[list[Any]]
    daytime_start: Mapped[time]
    daytime_end: Mapped[time]
    # The local time collectors' evening summaries go out from (the scheme file's `[enrolment] collector_sms_at`).
    collector_sms_at: Mapped[time] = mapped_column(default=time(19, 0), server_default="19:00:00")
    sms_sender_id: Mapped[str | None] = mapped_column(String(11))
    request_ttl_hours: Mapped[int] = mapped_column(Integer, default=72)
    # FHIR identifier systems from the scheme file's `[fhir]` table; None: derived from the code (see below).
    fhir_member_system: Mapped[str | None] = mapped_column(String(200))
    fhir_coverage_system: Mapped[str | None] = mapped_column(String(200))
    # Enrolment (the scheme file's `[enrolment]`): the ID fields a household's head must give, the subsidy
    # categories whose head must give a card number, and the pattern of the household numbers validation issues.
    enrolment_required: Mapped[list[Any] | None]
    enrolment_card_categories: Mapped[list[Any] | None]
    household_pattern: Mapped[str | None] = mapped_column(String(80))
    # The share of its grant each network is asked to save (the scheme file's `[networks] savings_share_of_grant`),
    # in basis points (1000 = 10 %); None: the scheme sets no savings target.
    network_savings_bp: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    plans: Mapped[list[Plan]] = relationship(
        back_populates="scheme", cascade="all, delete-orphan", order_by="Plan.position"
    )
    bands: Mapped[list[PremiumBand]] = relationship(
        back_populates="scheme", cascade="all, delete-orphan", order_by="PremiumBand.min_size"
    )
    subsidy_categories: Mapped[list[SubsidyCategory]] = relationship(
        back_populates="scheme", cascade="all, delete-orphan", order_by="SubsidyCategory.code"
    )
    channels: Mapped[list[PaymentChannel]] = relationship(
        back_populates="scheme", cascade="all, delete-orphan", order_by="PaymentChannel.position"
    )

    def reminder_day_list(self) -> list[int]:
        """Return the days before cover ends that reminders go out (the scheme's, else the default), ascending."""
        return sorted({int(n) for n in (self.reminder_days or DEFAULT_REMINDER_DAYS)})

    @property
    def member_identifier_system(self) -> str:
        """Return the FHIR identifier system of the scheme's member numbers."""
        return self.fhir_member_system or f"{FHIR_SYSTEM_BASE}/{self.code}/member"

    @property
    def coverage_identifier_system(self) -> str:
        """Return the FHIR identifier system of the scheme's coverage identifiers (a member's cover)."""
        return self.fhir_coverage_system or f"{FHIR_SYSTEM_BASE}/{self.code}/coverage"

    @property
    def household_number_pattern(self) -> str:
        """Return the pattern of the household numbers enrolment issues (the scheme's, else the default)."""
        return self.household_pattern or DEFAULT_HOUSEHOLD_PATTERN

    def local_now(self, now: datetime | None = None) -> datetime:
        """Return the scheme's wall-clock time (naive) for a UTC instant (default: now)."""
        return wall_clock(self.timezone, now)

    def local_today(self, now: datetime | None = None) -> date:
        """Return the scheme's local date for a UTC instant (default: now)."""
        return self.local_now(now).date()

    def plan(self, code: str) -> Plan:
        """Return the scheme's plan with this code."""
        for plan in self.plans:
            if plan.code == code:
                return plan
        raise KeyError(f"scheme {self.code} has no plan {code!r}")

    def subsidy(self, code: str) -> SubsidyCategory:
        """Return the scheme's subsidy category with this code."""
        for category in self.subsidy_categories:
            if category.code == code:
                return category
        raise KeyError(f"scheme {self.code} has no subsidy category {code!r}")


class Plan(Base):
    """A payment plan: how many months a period covers and the waiting period after enrolment or lapse."""

    __tablename__ = "plans"
    __table_args__ = (UniqueConstraint("scheme_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    scheme_id: Mapped[int] = mapped_column(ForeignKey("schemes.id", ondelete="CASCADE"), index=True)
    code: Mapped[str] = mapped_column(String(40))
    months: Mapped[int] = mapped_column(Integer)
    waiting_months: Mapped[int] = mapped_column(Integer, default=0)
    position: Mapped[int] = mapped_column(Integer, default=0)
    is_default: Mapped[bool] = mapped_column(default=False)

    scheme: Mapped[Scheme] = relationship(back_populates="plans")


class PremiumBand(Base):
    """Monthly household premium for households of at least `min_size` active members."""

    __tablename__ = "premium_bands"
    __table_args__ = (UniqueConstraint("scheme_id", "min_size"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    scheme_id: Mapped[int] = mapped_column(ForeignKey("schemes.id", ondelete="CASCADE"), index=True)
    min_size: Mapped[int] = mapped_column(Integer)
    monthly_amount: Mapped[int] = mapped_column(Money)

    scheme: Mapped[Scheme] = relationship(back_populates="bands")


class SubsidyCategory(Base):
    """A category of household whose premium a funder pays in part (basis points of the price)."""

    __tablename__ = "subsidy_categories"
    __table_args__ = (UniqueConstraint("scheme_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    scheme_id: Mapped[int] = mapped_column(ForeignKey("schemes.id", ondelete="CASCADE"), index=True)
    code: Mapped[str] = mapped_column(String(40))
    share_bp: Mapped[int] = mapped_column(Integer)  # 5000 = the funder pays 50 %
    funder: Mapped[str] = mapped_column(String(80))
    label: Mapped[str | None]

    scheme: Mapped[Scheme] = relationship(back_populates="subsidy_categories")


class PaymentChannel(Base):
    """How to pay the scheme with one provider (Wave merchant number, Orange Money code, paybill…)."""

    __tablename__ = "payment_channels"
    __table_args__ = (UniqueConstraint("scheme_id", "provider"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    scheme_id: Mapped[int] = mapped_column(ForeignKey("schemes.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(40))
    label: Mapped[str] = mapped_column(String(40))
    account: Mapped[str] = mapped_column(String(80))
    # Short how-to per language, with {account}, {reference} and {amount} placeholders.
    instructions: Mapped[dict[str, Any]]
    position: Mapped[int] = mapped_column(Integer, default=0)

    scheme: Mapped[Scheme] = relationship(back_populates="channels")


def schemes_today(session: Session, scheme_id: int | None = None, now: datetime | None = None) -> date:
    """Return today for a page over the schemes: the chosen scheme's local date, else the earliest of the schemes'.

    The earliest: a list over schemes in several time zones never counts a day one of them has not reached. Without
    a scheme, UTC's date. `now`: a UTC instant (naive), default now.
    """
    query = select(Scheme.timezone).distinct()
    if scheme_id is not None:
        query = query.where(Scheme.id == scheme_id)
    now = now or utcnow()
    return min((wall_clock(zone, now).date() for zone in session.scalars(query)), default=now.date())


def utc_start(day: date, zone: ZoneInfo) -> datetime:
    """Return the naive UTC instant a local day starts at in a time zone."""
    return datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC).replace(tzinfo=None)


def wall_clock(timezone: str, now: datetime | None = None) -> datetime:
    """Return the wall-clock time (naive) in a time zone for a UTC instant (naive; default now)."""
    instant = (now or datetime.now(UTC).replace(tzinfo=None)).replace(tzinfo=UTC)
    return instant.astimezone(ZoneInfo(timezone)).replace(tzinfo=None)
