"""Payments as operators report them, their evidence, payment requests and the reconciliation log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, EvidenceSource, Money, PaymentStatus, RequestStatus, utcnow
from models.members.household import Household, Network
from models.schemes.mutuelle import ACCOUNT_MAX

PAYER_MAX = 128
TXN_ID_MAX = 80
REFERENCE_MAX = 120


class PaymentRequest(Base):
    """A reference (6 digits + check digit) handed to a payer so the payment matches exactly."""

    __tablename__ = "payment_requests"
    __table_args__ = (
        # A reference is unique while open; expired ones can be reused.
        Index(
            "uq_payment_requests_open_reference",
            "reference",
            unique=True,
            postgresql_where=text("status = 'OPEN'"),
            sqlite_where=text("status = 'OPEN'"),
        ),
        Index("ix_payment_requests_reference", "reference"),
        # The clock's expiry finds the open requests past their time without reading the others.
        Index(
            "ix_payment_requests_open_expires_at",
            "expires_at",
            postgresql_where=text("status = 'OPEN'"),
            sqlite_where=text("status = 'OPEN'"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(7))
    scheme_id: Mapped[int] = mapped_column(ForeignKey("schemes.id"), index=True)
    household_id: Mapped[int | None] = mapped_column(ForeignKey("households.id"), index=True)
    network_id: Mapped[int | None] = mapped_column(ForeignKey("networks.id"), index=True)
    amount: Mapped[int] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    periods: Mapped[int] = mapped_column(Integer, default=1)
    payer_phone: Mapped[str | None] = mapped_column(String(20), index=True)
    channel: Mapped[str] = mapped_column(String(20))
    caller_key: Mapped[str | None] = mapped_column(String(160), unique=True)
    status: Mapped[RequestStatus] = mapped_column(default=RequestStatus.OPEN)
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    paid_at: Mapped[datetime | None]

    household: Mapped[Household | None] = relationship()
    network: Mapped[Network | None] = relationship()


class Payment(Base):
    """One operator transaction, whatever route reported it."""

    __tablename__ = "payments"
    __table_args__ = (
        UniqueConstraint("provider", "provider_txn_id"),
        Index("ix_payments_status_created_at", "status", "created_at"),
        # The admin payments list and overview read payments newest first.
        Index("ix_payments_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[str] = mapped_column(String(40))
    provider_txn_id: Mapped[str] = mapped_column(String(TXN_ID_MAX))
    amount: Mapped[int] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    # A phone, or whatever identifies the payer as the operator sends it (Safaricom: a 64-hex SHA-256 MSISDN).
    payer_phone: Mapped[str | None] = mapped_column(String(PAYER_MAX), index=True)
    account_reference: Mapped[str | None] = mapped_column(String(REFERENCE_MAX))
    paid_at: Mapped[datetime] = mapped_column(index=True)
    fields_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[PaymentStatus] = mapped_column(default=PaymentStatus.RECEIVED)
    status_reason: Mapped[str | None] = mapped_column(String(500))
    confirmed: Mapped[bool] = mapped_column(default=True)
    match_rule: Mapped[str | None] = mapped_column(String(40))
    match_confidence: Mapped[int | None] = mapped_column(Integer)
    scheme_id: Mapped[int | None] = mapped_column(ForeignKey("schemes.id"), index=True)
    # The account the payer paid (a Wave merchant, an Orange Money code, a Daraja shortcode…), as reported.
    account: Mapped[str | None] = mapped_column(String(ACCOUNT_MAX))
    # The mutuelle the payment belongs to: its account's (when that account serves one mutuelle), else the
    # matched household's or network's; None while a payment to a shared or unnamed account waits in suspense.
    mutuelle_id: Mapped[int | None] = mapped_column(ForeignKey("mutuelles.id"), index=True)
    household_id: Mapped[int | None] = mapped_column(ForeignKey("households.id"), index=True)
    network_id: Mapped[int | None] = mapped_column(ForeignKey("networks.id"), index=True)
    payment_request_id: Mapped[int | None] = mapped_column(ForeignKey("payment_requests.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    household: Mapped[Household | None] = relationship()
    network: Mapped[Network | None] = relationship()
    payment_request: Mapped[PaymentRequest | None] = relationship()
    evidence: Mapped[list[PaymentEvidence]] = relationship(back_populates="payment", order_by="PaymentEvidence.id")
    events: Mapped[list[ReconciliationEvent]] = relationship(
        back_populates="payment", order_by="ReconciliationEvent.id"
    )


class PaymentEvidence(Base):
    """One report of a payment by one source, with its raw payload; a repeated identical report is stored once."""

    __tablename__ = "payment_evidence"
    __table_args__ = (UniqueConstraint("payment_id", "source", "route", "raw_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    source: Mapped[EvidenceSource]
    route: Mapped[str] = mapped_column(String(40))
    fields_hash: Mapped[str] = mapped_column(String(64))
    raw: Mapped[str] = mapped_column(Text)
    raw_hash: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[int | None] = mapped_column(ForeignKey("collection_devices.id"))
    statement_line_id: Mapped[int | None] = mapped_column(ForeignKey("statement_lines.id"))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)

    payment: Mapped[Payment] = relationship(back_populates="evidence")


class ReconciliationEvent(Base):
    """Audit log: who moved a payment from one state to another, by which rule, and why."""

    __tablename__ = "reconciliation_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    payment_id: Mapped[int | None] = mapped_column(ForeignKey("payments.id"), index=True)
    actor: Mapped[str] = mapped_column(String(80))
    rule: Mapped[str | None] = mapped_column(String(40))
    before_status: Mapped[str | None] = mapped_column(String(24))
    after_status: Mapped[str | None] = mapped_column(String(24))
    note: Mapped[str | None] = mapped_column(String(1000))
    details: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    payment: Mapped[Payment | None] = relationship(back_populates="events")


class UnparsedForward(Base):
    """A forwarded operator text that did not parse as a payment, kept for review."""

    __tablename__ = "unparsed_forwards"

    id: Mapped[int] = mapped_column(primary_key=True)
    # sha256 of device, sender and text: a forwarding app's retry is stored once.
    dedupe_key: Mapped[str] = mapped_column(String(64), unique=True)
    device_id: Mapped[int | None] = mapped_column(ForeignKey("collection_devices.id"))
    sender: Mapped[str | None] = mapped_column(String(40))
    text: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(String(200))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    reviewed_at: Mapped[datetime | None]
