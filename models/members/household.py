"""Networks (réseaux), households, members and the accounts their money sits on."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    ColumnElement,
    ForeignKey,
    FromClause,
    Index,
    Select,
    String,
    UniqueConstraint,
    and_,
    func,
    or_,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from models.base import Base, HouseholdStatus, Language, MemberStatus, Money, Sex, utcnow
from models.inputs import squash
from models.schemes.mutuelle import Mutuelle
from models.schemes.scheme import Scheme


class Network(Base):
    """A réseau of households that receives network payments and pays its households' dues."""

    __tablename__ = "networks"
    __table_args__ = (UniqueConstraint("scheme_id", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    scheme_id: Mapped[int] = mapped_column(ForeignKey("schemes.id"), index=True)
    mutuelle_id: Mapped[int] = mapped_column(ForeignKey("mutuelles.id"), index=True)
    code: Mapped[str] = mapped_column(String(60))
    name: Mapped[str]
    commune: Mapped[str | None] = mapped_column(String(120))
    contact_phone: Mapped[str | None] = mapped_column(String(20))
    # Other names payers type for the network ("GIE Keur Moussa"), added by staff; matched like the name.
    aliases: Mapped[list[Any] | None]
    # The grant the network received (a CMU pilot's economic grant) and when: what its savings target is a share of.
    grant_amount: Mapped[int | None] = mapped_column(Money)
    grant_on: Mapped[date | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    scheme: Mapped[Scheme] = relationship()
    mutuelle: Mapped[Mutuelle] = relationship()
    households: Mapped[list[Household]] = relationship(back_populates="network")

    @property
    def match_keys(self) -> set[str]:
        """Return the squashed code, name and aliases a payment reference may name the network by."""
        keys = {squash(self.code), squash(self.name), *(squash(str(alias)) for alias in self.aliases or [])}
        keys.discard("")
        return keys


class Household(Base):
    __tablename__ = "households"
    # The renewal lists: a window of cover ends, in key order, an index range scan (`models.views.renewals`).
    __table_args__ = (Index("ix_households_cover_ends_on", "cover_ends_on", "household_no"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    household_no: Mapped[str] = mapped_column(String(40), unique=True)
    scheme_id: Mapped[int] = mapped_column(ForeignKey("schemes.id"), index=True)
    mutuelle_id: Mapped[int] = mapped_column(ForeignKey("mutuelles.id"), index=True)
    network_id: Mapped[int | None] = mapped_column(ForeignKey("networks.id"), index=True)
    head_member_no: Mapped[str | None] = mapped_column(String(44))
    commune: Mapped[str | None] = mapped_column(String(120), index=True)
    subsidy_category: Mapped[str] = mapped_column(String(40))
    plan: Mapped[str] = mapped_column(String(40))
    language: Mapped[Language]
    sms_opt_in: Mapped[bool] = mapped_column(default=True)
    status: Mapped[HouseholdStatus] = mapped_column(default=HouseholdStatus.ACTIVE)
    status_reason: Mapped[str | None] = mapped_column(String(500))
    enrolled_on: Mapped[date]
    # The last day of its last live coverage period (None: never covered, or every period reversed). Stored by
    # `models.coverage.periods.store_cover_ends` wherever periods are written or reversed; read by the renewals.
    cover_ends_on: Mapped[date | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    scheme: Mapped[Scheme] = relationship()
    mutuelle: Mapped[Mutuelle] = relationship()
    network: Mapped[Network | None] = relationship(back_populates="households")
    members: Mapped[list[Member]] = relationship(back_populates="household", order_by="Member.member_no")

    @property
    def head(self) -> Member | None:
        """Return the head of household, if recorded."""
        for member in self.members:
            if member.member_no == self.head_member_no:
                return member
        return None


class Member(Base):
    __tablename__ = "members"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_no: Mapped[str] = mapped_column(String(44), unique=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), index=True)
    last_name: Mapped[str] = mapped_column(String(120))
    first_name: Mapped[str] = mapped_column(String(120))
    sex: Mapped[Sex]
    date_of_birth: Mapped[date | None]
    relationship_to_head: Mapped[str] = mapped_column(String(40))
    phone: Mapped[str | None] = mapped_column(String(20), index=True)  # E.164
    status: Mapped[MemberStatus] = mapped_column(default=MemberStatus.ACTIVE)
    joined_on: Mapped[date]
    left_on: Mapped[date | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    household: Mapped[Household] = relationship(back_populates="members")


def is_active_member(status: MemberStatus, left_on: date | None, on: date) -> bool:
    """Return whether a member is active on a date: listed, covered and counted for the premium.

    Active status and not left by then (`left_on` is the first day away). `active_member_clause` is this rule
    in SQL, for the statements that count or list members (the ORM path, the allocator, the USSD reads).
    """
    return status == MemberStatus.ACTIVE and (left_on is None or left_on > on)


def phone_household_ids(phone: str | ColumnElement[Any], members: FromClause | None = None) -> Select[Any]:
    """Return the ids of the households a phone speaks for: those where it is an active member's (SMS, USSD).

    On the members table or an alias of it; `phone` a value or a bound parameter.
    """
    columns = (Member.__table__ if members is None else members).c
    return select(columns.household_id).where(columns.phone == phone, columns.status == MemberStatus.ACTIVE)


def active_member_clause(on: date | ColumnElement[Any], members: FromClause | None = None) -> ColumnElement[bool]:
    """Return `is_active_member` as a SQL condition on the members table (or an alias of it) on a date.

    `on` is a date or a date-typed SQL expression (a bound parameter of a statement built once).
    """
    columns = (Member.__table__ if members is None else members).c
    return and_(columns.status == MemberStatus.ACTIVE, or_(columns.left_on.is_(None), columns.left_on > on))


class Account(Base):
    """The ledger account of one household or one network; its row is the allocation lock."""

    __tablename__ = "accounts"
    __table_args__ = (CheckConstraint("(household_id IS NULL) <> (network_id IS NULL)", name="one_owner"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    scheme_id: Mapped[int] = mapped_column(ForeignKey("schemes.id"), index=True)
    household_id: Mapped[int | None] = mapped_column(ForeignKey("households.id"), unique=True)
    network_id: Mapped[int | None] = mapped_column(ForeignKey("networks.id"), unique=True)
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    household: Mapped[Household | None] = relationship()
    network: Mapped[Network | None] = relationship()


class HouseholdEvent(Base):
    """Audit log of a household's status: who suspended or reinstated it, when and why."""

    __tablename__ = "household_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), index=True)
    actor: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(24))
    before_status: Mapped[str] = mapped_column(String(24))
    after_status: Mapped[str] = mapped_column(String(24))
    note: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# Payment matching looks numbers and codes up case-insensitively (`upper(x) IN (…)` for a whole batch of account
# references): without these it scans every household and member.
Index("ix_households_upper_household_no", func.upper(Household.household_no))
Index("ix_members_upper_member_no", func.upper(Member.member_no))
Index("ix_networks_upper_code", func.upper(Network.code))
# The admin's households search finds names by prefix (`lower(name) LIKE 'fatou%'`); on PostgreSQL the pattern
# operator class lets LIKE use the index whatever the database's collation (the last name's: models.enrolment.tables).
Index(
    "ix_members_lower_first_name",
    func.lower(Member.first_name).label("lower_first_name"),
    postgresql_ops={"lower_first_name": "text_pattern_ops"},
)


def find_household(session: Session, number: str) -> Household | None:
    """Return the household a household or member number names (any case), or None."""
    number = number.upper()[:44]
    household = session.scalar(select(Household).where(func.upper(Household.household_no) == number))
    if household is not None:
        return household
    member = session.scalar(select(Member).where(func.upper(Member.member_no) == number))
    return member.household if member is not None else None
