"""SMS in and out, delivery reports, and USSD session records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, MessageDirection, MessageStatus, utcnow


class Message(Base):
    """One SMS, inbound or outbound; bodies are stored with PINs and dates of birth masked."""

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_direction_created_at", "direction", "created_at"),
        # The admin SMS log filters by status (failures) newest first.
        Index("ix_messages_status_created_at", "status", "created_at"),
        # …and unfiltered, newest first.
        Index("ix_messages_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    direction: Mapped[MessageDirection]
    phone: Mapped[str] = mapped_column(String(20), index=True)
    household_id: Mapped[int | None] = mapped_column(ForeignKey("households.id"), index=True)
    # The mutuelle a text with no household speaks for (a collector's summary): its sender id is used.
    mutuelle_id: Mapped[int | None] = mapped_column(ForeignKey("mutuelles.id"))
    body: Mapped[str] = mapped_column(Text)
    template: Mapped[str | None] = mapped_column(String(60))
    language: Mapped[str | None] = mapped_column(String(5))
    encoding: Mapped[str] = mapped_column(String(8), default="GSM-7")
    segments: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[MessageStatus] = mapped_column(default=MessageStatus.QUEUED)
    transport: Mapped[str | None] = mapped_column(String(20))
    provider_message_id: Mapped[str | None] = mapped_column(String(80), index=True)
    provider_status_code: Mapped[int | None] = mapped_column(Integer)
    cost: Mapped[str | None] = mapped_column(String(32))
    failure_reason: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    retry_count: Mapped[int | None] = mapped_column(Integer)
    # Idempotency of side effects: an AT inbound id, "receipt:<payment>:<outcome>", "reminder:…".
    dedupe_key: Mapped[str | None] = mapped_column(String(160), unique=True)
    link_id: Mapped[str | None] = mapped_column(String(80))
    short_code: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DeliveryReport(Base):
    """An AT delivery report as received, matched or not to an outbound message."""

    __tablename__ = "delivery_reports"

    id: Mapped[int] = mapped_column(primary_key=True)
    provider_message_id: Mapped[str] = mapped_column(String(80), index=True)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"), index=True)
    status: Mapped[str] = mapped_column(String(20))
    failure_reason: Mapped[str | None] = mapped_column(String(200))
    retry_count: Mapped[int | None] = mapped_column(Integer)
    network_code: Mapped[str | None] = mapped_column(String(10))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class UssdSessionRecord(Base):
    """An AT end-of-session notification, with PIN and date-of-birth inputs masked."""

    __tablename__ = "ussd_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    session_id: Mapped[str] = mapped_column(String(80), unique=True)
    phone: Mapped[str] = mapped_column(String(20), index=True)
    service_code: Mapped[str | None] = mapped_column(String(40))
    network_code: Mapped[str | None] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(20))
    cost: Mapped[str | None] = mapped_column(String(32))
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    hops_count: Mapped[int | None] = mapped_column(Integer)
    input: Mapped[str | None] = mapped_column(Text)
    last_app_response: Mapped[str | None] = mapped_column(Text)
    last_screen: Mapped[str | None] = mapped_column(String(60))
    error_message: Mapped[str | None] = mapped_column(String(500))
    raw: Mapped[dict[str, Any] | None]
    ended_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
