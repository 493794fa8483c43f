"""The outbound SMS log: queue a templated SMS, and settle messages from delivery reports.

`send_sms` only adds a QUEUED `Message` row (`queue_messages`: many, as plain rows, for a batch). The
session hands the ids of the messages it queued to its *dispatch* function after its transaction
commits (`models.db.enqueue_after_commit`, one call for all of them), so a worker never looks for a
row that is not committed, and a rolled-back transaction sends nothing. `extensions.db()` (web) and
`workers.runtime.job_session()` (jobs) attach the RQ dispatch; a session without one refuses to queue.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from logs import mask_phone
from models.base import MessageDirection, MessageStatus, utcnow
from models.bulk import insert_rows, table_of
from models.db import enqueue_after_commit
from models.members.household import Household
from models.messaging.message import DeliveryReport, Message
from models.texts.i18n import render, resolve_language
from models.texts.sms_text import measure

log = logging.getLogger(__name__)

Dispatch = Callable[[list[int]], None]

DISPATCH_KEY = "sms_outbox_dispatch"

# Once a message reaches one of these, a late report of an earlier stage does not move it back.
FINAL_STATUSES = frozenset({MessageStatus.SUCCESS, MessageStatus.FAILED, MessageStatus.REJECTED})
REPORT_STATUSES = {
    status.value: status
    for status in (
        MessageStatus.SENT,
        MessageStatus.SUBMITTED,
        MessageStatus.BUFFERED,
        MessageStatus.REJECTED,
        MessageStatus.SUCCESS,
        MessageStatus.FAILED,
    )
}
# A report whose id we never learnt (read timeout) is matched by phone within this window.
UNKNOWN_MATCH_WINDOW = timedelta(days=3)


class OutboxNotAttached(RuntimeError):
    """The session has no dispatch: queued messages would never be sent."""


def attach_dispatch(target: Session | sessionmaker[Session], dispatch: Dispatch) -> None:
    """Hand the ids of messages a session (or each session of a factory) queued to `dispatch` after commit."""
    info = target.kw.setdefault("info", {}) if isinstance(target, sessionmaker) else target.info
    info[DISPATCH_KEY] = dispatch


@dataclass(frozen=True)
class _Committed:
    """The enqueue of a session's queued messages: their ids, once committed, to its dispatch."""

    dispatch: Dispatch

    def __call__(self, messages: list[Message | int]) -> None:
        # A message added inside a savepoint that rolled back is transient again: it has no row to send. (An id is
        # that of a row inserted outside any savepoint: `queue_messages`.)
        ids = [m if isinstance(m, int) else m.id for m in messages if isinstance(m, int) or inspect(m).has_identity]
        if ids:
            self.dispatch(ids)


def _send_after_commit(session: Session, messages: list[Message | int]) -> None:
    enqueue_after_commit(session, _Committed(session.info[DISPATCH_KEY]), messages)


@dataclass(frozen=True)
class Composed:
    """A templated SMS rendered once in its language, to be queued to one phone or several."""

    template: str
    language: str
    body: str
    encoding: str
    segments: int
    household_id: int | None

    def row(self, to: str, dedupe_key: str | None = None) -> dict[str, Any]:
        """Return the QUEUED outbound message of this text to a phone, as a row for `queue_messages`."""
        return {
            "direction": MessageDirection.OUTBOUND,
            "phone": to,
            "household_id": self.household_id,
            "body": self.body,
            "template": self.template,
            "language": self.language,
            "encoding": self.encoding,
            "segments": self.segments,
            "status": MessageStatus.QUEUED,
            "dedupe_key": dedupe_key,
        }


def compose(template: str, language: str | None = None, household: Household | None = None, **values: Any) -> Composed:
    """Render a template in the recipient's language: the one asked for, the household's, else its scheme's."""
    scheme_language = household.scheme.default_language if household is not None else None
    lang = resolve_language(language, household.language if household is not None else None, scheme_language)
    body = render(template, lang, values)
    shape = measure(body)
    household_id = household.id if household is not None else None
    return Composed(template, lang, body, shape.encoding, shape.segments, household_id)


def send_sms(
    session: Session,
    to: str,
    template: str,
    language: str | None = None,
    household: Household | None = None,
    dedupe_key: str | None = None,
    dedupe_checked: bool = False,
    mutuelle_id: int | None = None,
    **values: Any,
) -> Message:
    """Queue a templated SMS in the recipient's language; it is sent after the caller commits.

    `mutuelle_id`: for a text to no household (a collector's), the mutuelle whose sender id it goes out with.

    `dedupe_checked`: the caller has already looked for `dedupe_key` under a lock that serialises every writer of
    that key (the reconcile job holds the payment row), so the lookup and the race savepoint are skipped.
    """
    if DISPATCH_KEY not in session.info:
        raise OutboxNotAttached("attach_dispatch(session, …) first (extensions.db() and job_session() do)")
    if dedupe_key is not None and not dedupe_checked:
        existing = session.scalar(select(Message).where(Message.dedupe_key == dedupe_key))
        if existing is not None:
            return existing
    if household is not None and household.id is None:
        session.flush()
    text = compose(template, language, household, **values)
    message = Message(**text.row(to, dedupe_key), mutuelle_id=mutuelle_id)
    if dedupe_checked:
        session.add(message)
        _send_after_commit(session, [message])
        return message
    try:
        with session.begin_nested():
            session.add(message)
    except IntegrityError:
        # A concurrent transaction queued the same dedupe key first: that one is the message.
        if dedupe_key is None:
            raise
        winner = session.scalar(select(Message).where(Message.dedupe_key == dedupe_key))
        if winner is None:
            raise
        return winner
    _send_after_commit(session, [message])
    shape = f"{text.language}, {text.segments} segment(s)"
    log.info("sms %s queued: %s to %s (%s)", message.id, template, mask_phone(to), shape)
    return message


def queue_messages(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert QUEUED outbound messages (`Composed.row`s) in one statement; they are sent after the caller commits.

    For a batch whose dedupe keys were looked for under a lock that serialises every writer of them (a reconcile
    batch holds its payments' rows): no lookup, no savepoint. Written as plain rows, not ORM objects; inside a
    savepoint, which may roll back on its own, they are added as `Message`s so that their ids are never handed on.
    """
    if DISPATCH_KEY not in session.info:
        raise OutboxNotAttached("attach_dispatch(session, …) first (extensions.db() and job_session() do)")
    if not rows:
        return
    if session.in_nested_transaction():
        messages: list[Message | int] = [Message(**row) for row in rows]
        session.add_all(messages)
        _send_after_commit(session, messages)
        return
    _send_after_commit(session, [*insert_rows(session, table_of(Message), rows)])


def record_delivery_report(
    session: Session,
    provider_message_id: str,
    status: str,
    phone: str | None = None,
    network_code: str | None = None,
    failure_reason: str | None = None,
    retry_count: int | None = None,
) -> DeliveryReport:
    """Store a provider delivery report and update the outbound message it is about, if known."""
    message = session.scalar(select(Message).where(Message.provider_message_id == provider_message_id))
    if message is None and phone:
        message = _unknown_message_for(session, phone)
        if message is not None:
            message.provider_message_id = provider_message_id
    report = DeliveryReport(
        provider_message_id=provider_message_id,
        message_id=message.id if message is not None else None,
        status=status[:20],
        failure_reason=failure_reason[:200] if failure_reason else None,
        retry_count=retry_count,
        network_code=network_code[:10] if network_code else None,
    )
    session.add(report)
    new_status = REPORT_STATUSES.get(status)
    if message is not None and new_status is not None:
        if message.status not in FINAL_STATUSES or new_status in FINAL_STATUSES:
            message.status = new_status
        if failure_reason:
            message.failure_reason = failure_reason[:200]
        message.retry_count = retry_count
    if message is None:
        log.info("delivery report for unknown message %s (%s) stored", provider_message_id, status)
    session.flush()
    return report


def _unknown_message_for(session: Session, phone: str) -> Message | None:
    """Return the only UNKNOWN outbound message to the phone without a provider id, if exactly one."""
    candidates = session.scalars(
        select(Message)
        .where(
            Message.direction == MessageDirection.OUTBOUND,
            Message.phone == phone,
            Message.status == MessageStatus.UNKNOWN,
            Message.provider_message_id.is_(None),
            Message.created_at >= utcnow() - UNKNOWN_MATCH_WINDOW,
        )
        .limit(2)
    ).all()
    return candidates[0] if len(candidates) == 1 else None
