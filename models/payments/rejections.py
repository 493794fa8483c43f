"""Callbacks refused for their content: kept for review (raw body, source, reason), once per raw body.

A provider that gets a 4xx may send the same body again (Africa's Talking retries a non-200 for hours): the
row is keyed on the source and the sha256 of the raw bytes, so a retry only counts one more attempt.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text, UniqueConstraint, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, utcnow
from models.db import begin_write

MAX_REASON = 300


class RejectedCallback(Base):
    """A callback body refused with a 4xx, kept for staff review."""

    __tablename__ = "rejected_callbacks"
    __table_args__ = (UniqueConstraint("source", "raw_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(40))  # the route: sms_inbound, wave, daraja_confirm, sms_forward…
    reason: Mapped[str] = mapped_column(String(MAX_REASON))
    status_code: Mapped[int] = mapped_column(Integer)
    raw: Mapped[str] = mapped_column(Text)  # the body as received, undecodable bytes and NULs escaped
    raw_hash: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str | None] = mapped_column(String(120))
    device_id: Mapped[int | None] = mapped_column(ForeignKey("collection_devices.id"), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    reviewed_at: Mapped[datetime | None]


def printable_body(body: bytes) -> str:
    """Return raw bytes as text any database stores: undecodable bytes and NULs escaped as `\\xNN`."""
    return body.decode("utf-8", errors="backslashreplace").replace("\x00", "\\x00")


def keep_rejected(
    session: Session,
    source: str,
    body: bytes,
    reason: str,
    status_code: int,
    *,
    content_type: str | None = None,
    device_id: int | None = None,
) -> int:
    """Keep a refused callback for review (or count one more attempt of the same body); commit; return its id."""
    session.rollback()  # whatever the request did before it refused the body is not kept
    begin_write(session)
    raw_hash = hashlib.sha256(body).hexdigest()
    now = utcnow()
    found = session.scalar(
        select(RejectedCallback.id).where(RejectedCallback.source == source, RejectedCallback.raw_hash == raw_hash)
    )
    if found is None:
        row = RejectedCallback(
            source=source,
            reason=printable_body(reason.encode("utf-8", "backslashreplace"))[:MAX_REASON],
            status_code=status_code,
            raw=printable_body(body),
            raw_hash=raw_hash,
            content_type=printable_body((content_type or "").encode("utf-8", "backslashreplace"))[:120] or None,
            device_id=device_id,
            first_seen_at=now,
            last_seen_at=now,
        )
        try:
            with session.begin_nested():
                session.add(row)
        except IntegrityError:
            found = session.scalar(
                select(RejectedCallback.id).where(
                    RejectedCallback.source == source, RejectedCallback.raw_hash == raw_hash
                )
            )
        else:
            session.commit()
            return row.id
    assert found is not None
    session.execute(
        update(RejectedCallback)
        .where(RejectedCallback.id == found)
        .values(attempts=RejectedCallback.attempts + 1, last_seen_at=now)
    )
    session.commit()
    return found


def rejected_counts_by_device(session: Session) -> dict[int, int]:
    """Return, per collection device, how many of its refused forwards are waiting for review."""
    rows = session.execute(
        select(RejectedCallback.device_id, func.count())
        .where(RejectedCallback.device_id.is_not(None), RejectedCallback.reviewed_at.is_(None))
        .group_by(RejectedCallback.device_id)
    ).tuples()
    return {int(device_id): int(count) for device_id, count in rows if device_id is not None}
