"""The enrolment tables: collectors and their keys, enrolments with their members, and the audit trail."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint, func, true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, Language, Sex, utcnow
from models.members.household import Household, Member, Network
from models.schemes.mutuelle import Mutuelle

CLIENT_ID_MAX = 64
ID_NUMBER_MAX = 40


class EnrolmentStatus(enum.StrEnum):
    """Where an enrolment stands: submitted by a collector, then validated, rejected or sent back for changes."""

    SUBMITTED = "SUBMITTED"
    VALIDATED = "VALIDATED"
    REJECTED = "REJECTED"
    NEEDS_CHANGES = "NEEDS_CHANGES"


class Collector(Base):
    """A collection officer who enrols households for one mutuelle (and maybe one network) with a bearer key."""

    __tablename__ = "collectors"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    phone: Mapped[str | None] = mapped_column(String(20))  # E.164
    mutuelle_id: Mapped[int] = mapped_column(ForeignKey("mutuelles.id"), index=True)
    network_id: Mapped[int | None] = mapped_column(ForeignKey("networks.id"), index=True)
    # Its key (`Authorization: Bearer <key>` on /api/enrolments), shown once, kept as a SHA-256.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_prefix: Mapped[str] = mapped_column(String(12))
    active: Mapped[bool] = mapped_column(default=True)
    # The evening summary of their day by SMS (models.enrolment.collector_sms): off after STOP or `collectors sms off`.
    sms_opt_in: Mapped[bool] = mapped_column(default=True, server_default=true())
    language: Mapped[Language | None]  # of their texts; None: the scheme's default language
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    mutuelle: Mapped[Mutuelle] = relationship()
    network: Mapped[Network | None] = relationship()


class Enrolment(Base):
    """A household as a collector captured it, until staff validate it into a household (or refuse it)."""

    __tablename__ = "enrolments"
    __table_args__ = (UniqueConstraint("collector_id", "client_id"), UniqueConstraint("mutuelle_id", "serial"))

    id: Mapped[int] = mapped_column(primary_key=True)
    collector_id: Mapped[int] = mapped_column(ForeignKey("collectors.id"), index=True)
    client_id: Mapped[str] = mapped_column(String(CLIENT_ID_MAX))  # the form's own id: a form sent twice is one
    scheme_id: Mapped[int] = mapped_column(ForeignKey("schemes.id"), index=True)
    mutuelle_id: Mapped[int] = mapped_column(ForeignKey("mutuelles.id"), index=True)
    network_id: Mapped[int | None] = mapped_column(ForeignKey("networks.id"), index=True)
    commune: Mapped[str] = mapped_column(String(120))
    plan: Mapped[str] = mapped_column(String(40))
    language: Mapped[Language]
    subsidy_category: Mapped[str] = mapped_column(String(40))
    sms_opt_in: Mapped[bool] = mapped_column(default=True)
    status: Mapped[EnrolmentStatus] = mapped_column(default=EnrolmentStatus.SUBMITTED, index=True)
    reason: Mapped[str | None] = mapped_column(String(1000))  # why rejected, or what to change
    # The candidates found when it was submitted ({"member_no" | "enrolment_id", "score", "why", "member"}).
    duplicates: Mapped[list[Any]] = mapped_column(default=list)
    # Once validated: the serial of its household number (per mutuelle) and the household.
    serial: Mapped[int | None] = mapped_column(Integer)
    household_id: Mapped[int | None] = mapped_column(ForeignKey("households.id"), unique=True)
    decided_by: Mapped[str | None] = mapped_column(String(80))
    decided_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    collector: Mapped[Collector] = relationship()
    mutuelle: Mapped[Mutuelle] = relationship()
    network: Mapped[Network | None] = relationship()
    household: Mapped[Household | None] = relationship()
    members: Mapped[list[EnrolmentMember]] = relationship(
        back_populates="enrolment", cascade="all, delete-orphan", order_by="EnrolmentMember.position"
    )
    events: Mapped[list[EnrolmentEvent]] = relationship(
        back_populates="enrolment", cascade="all, delete-orphan", order_by="EnrolmentEvent.id"
    )
    # Set for an enrolment of kind `change`: the existing household it changes and how (models.enrolment.changes).
    change: Mapped[HouseholdChange | None] = relationship(back_populates="enrolment", cascade="all, delete-orphan")

    @property
    def kind(self) -> str:
        """Return `household` for a new household, `change` for a change to an existing one."""
        return "household" if self.change is None else "change"

    @property
    def head(self) -> EnrolmentMember:
        """Return the head of the household (submission checks there is exactly one)."""
        return next(m for m in self.members if m.relationship_to_head == "head")


class EnrolmentMember(Base):
    """One person of an enrolment, with the ID numbers the scheme asks for and the keys duplicates are found by."""

    __tablename__ = "enrolment_members"
    __table_args__ = (UniqueConstraint("enrolment_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    enrolment_id: Mapped[int] = mapped_column(ForeignKey("enrolments.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)  # its index in the submitted `members` list
    first_name: Mapped[str] = mapped_column(String(120))
    last_name: Mapped[str] = mapped_column(String(120))
    sex: Mapped[Sex]
    date_of_birth: Mapped[date] = mapped_column(index=True)
    relationship_to_head: Mapped[str] = mapped_column(String(40))
    phone: Mapped[str | None] = mapped_column(String(20), index=True)
    id_number: Mapped[str | None] = mapped_column(String(ID_NUMBER_MAX), index=True)  # squashed
    card_number: Mapped[str | None] = mapped_column(String(ID_NUMBER_MAX), index=True)  # squashed
    last_name_key: Mapped[str] = mapped_column(String(120), index=True)  # `name_key` of the last name
    member_no: Mapped[str | None] = mapped_column(String(44))  # once validated

    enrolment: Mapped[Enrolment] = relationship(back_populates="members")


class EnrolmentEvent(Base):
    """The audit trail of an enrolment: who did what, the status before and after, and the note."""

    __tablename__ = "enrolment_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    enrolment_id: Mapped[int] = mapped_column(ForeignKey("enrolments.id", ondelete="CASCADE"), index=True)
    actor: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(24))
    before_status: Mapped[str | None] = mapped_column(String(24))
    after_status: Mapped[str] = mapped_column(String(24))
    note: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    enrolment: Mapped[Enrolment] = relationship(back_populates="events")


class ChangeAction(enum.StrEnum):
    """What a household change does, in the words of the API."""

    ADD_MEMBER = "add_member"
    MEMBER_LEFT = "member_left"
    MEMBER_DECEASED = "member_deceased"
    PHONE = "phone"


class HouseholdChange(Base):
    """The household an enrolment of kind `change` changes, and the changes as checked, in the submitted order.

    Each change is `{"action", "position"}` and, by action: `member_no` and `on` (ISO date: the last day in the
    household) to mark a member left or deceased; `member_no` and `phone` (E.164) for a new phone; an added
    member is the enrolment's member at `position` (its index in `changes`), numbered when validated.
    """

    __tablename__ = "household_changes"

    enrolment_id: Mapped[int] = mapped_column(ForeignKey("enrolments.id", ondelete="CASCADE"), primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), index=True)
    changes: Mapped[list[Any]] = mapped_column(default=list)

    enrolment: Mapped[Enrolment] = relationship(back_populates="change")
    household: Mapped[Household] = relationship()


def record_event(
    enrolment: Enrolment, actor: str, action: str, before: EnrolmentStatus | None, note: str | None = None
) -> EnrolmentEvent:
    """Append an event to the enrolment's audit trail (its status now is the `after`)."""
    event = EnrolmentEvent(
        actor=actor[:80],
        action=action,
        before_status=before.value if before is not None else None,
        after_status=enrolment.status.value,
        note=note[:1000] if note else None,
    )
    enrolment.events.append(event)
    return event


# Duplicate detection looks members up by date of birth (also day/month swapped) and by last name (lower case):
# indexed, so an enrolment's candidates come from a few rows, not a scan of every member.
Index("ix_members_date_of_birth", Member.date_of_birth)
# The admin's households search reads it for name prefixes too (`LIKE 'diop%'`): on PostgreSQL with the pattern
# operator class, which serves equality and LIKE prefixes whatever the database's collation.
Index(
    "ix_members_lower_last_name",
    func.lower(Member.last_name).label("lower_last_name"),
    postgresql_ops={"lower_last_name": "text_pattern_ops"},
)
