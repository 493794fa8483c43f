"""Outbound SMS jobs: one RQ job per committed group of messages, one per message on retry, and the sweeper.

The messages a transaction queued (a reconciliation batch's receipts, say) are sent by one job, in one process:
RQ forks a work horse per job, so a job per message would cost a fork each. The workers serve the reconcile queue
first, but only between jobs: a group job that sees a drain waiting hands the rest of its messages on to a job at
the front of its queue and ends, so a payment waits for one send at most, not a whole group's. Each message is
still claimed on its own before it is sent, so a message is never sent twice whatever runs the jobs; one whose send
failed in a way that proves nothing left gets a job of its own, retried by RQ with longer intervals.

A send is not idempotent at the provider, so a message is *claimed* before it is sent: one UPDATE moves
it from QUEUED (with no provider id) to UNKNOWN and commits. Only the job that made that change sends;
a second run of the job, or a concurrent one, finds nothing to claim. If the process dies mid-send the
message stays UNKNOWN (it may have left) until a delivery report settles it — it is never resent blindly.
Errors that prove nothing left (connection refused, HTTP 5xx) put it back to QUEUED and are retried,
first in the job with a short backoff, then by RQ with longer intervals.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import timedelta

from redis.exceptions import RedisError
from rq import Queue, get_current_job
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from logs import mask_phone
from models.base import MessageDirection, MessageStatus, utcnow
from models.members.household import Household
from models.messaging.message import Message
from models.schemes.mutuelle import Mutuelle
from workers import runtime
from workers.queue_health import queue_depth
from workers.sms_queue import enqueue_messages, enqueue_new_messages
from workers.sms_transport import (
    SendResult,
    SmsTransport,
    TransientSendError,
    UncertainSendError,
    transport_from_settings,
)

log = logging.getLogger(__name__)

# In-job retries of errors that prove nothing was sent, then RQ's (`workers.sms_queue.RQ_RETRY_INTERVALS`).
IN_JOB_BACKOFF_SECONDS: tuple[float, ...] = (0.5, 2.0)
# A message still QUEUED this long after it was written lost its job (Redis down at commit time…).
STUCK_AFTER = timedelta(minutes=10)
SWEEP_LIMIT = 5000  # messages one outbox sweep enqueues again at most


def send_message(message_id: int) -> str:
    """Send one queued outbound SMS with the configured transport (the RQ job)."""
    settings = runtime.settings()
    transport = transport_from_settings(settings)
    try:
        with runtime.job_session() as session:
            message = deliver(session, message_id, transport, default_sender=settings.AT_SENDER_ID or None)
            return message.status.value if message is not None else "missing"
    except TransientSendError as exc:
        job = get_current_job()
        if job is None or not job.retries_left:
            with runtime.job_session() as session:
                give_up(session, message_id, f"gave up: {exc}")
        raise


def send_messages(message_ids: list[int]) -> dict[str, int]:
    """Send a group of queued outbound SMS in this one job; a message whose send failed retries in its own job."""
    settings = runtime.settings()
    transport = transport_from_settings(settings)
    counts: dict[str, int] = {}
    again: list[int] = []
    for index, message_id in enumerate(message_ids):
        if index and _reconciliation_waiting(settings.RECONCILE_QUEUE):
            # A drain waits for a worker and this one serves the reconcile queue first: hand the rest of the
            # group on to a job at the front of this queue and end, so a payment never waits for a group's sends.
            rest = message_ids[index:]
            enqueue_new_messages(runtime.queue(), rest, at_front=True)
            counts["handed on"] = len(rest)
            break
        try:
            with runtime.job_session() as session:
                message = deliver(session, message_id, transport, default_sender=settings.AT_SENDER_ID or None)
                status = message.status.value if message is not None else "missing"
        except TransientSendError:
            again.append(message_id)  # back to QUEUED: its own job retries it
            status = "retry"
        counts[status] = counts.get(status, 0) + 1
    if again:
        enqueue_messages(runtime.queue(), again)
    log.info("sms group of %s: %s", len(message_ids), counts)
    return counts


def _reconciliation_waiting(queue_name: str) -> bool:
    """Return whether a job waits on the reconciliation queue (no worker has taken it yet)."""
    try:
        return queue_depth(runtime.redis(), queue_name) > 0
    except RedisError:
        return False


def deliver(
    session: Session,
    message_id: int,
    transport: SmsTransport,
    default_sender: str | None = None,
    backoff: Sequence[float] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Message | None:
    """Claim the message, send it once and store the provider's answer (commits as it goes)."""
    claimed = _claim(session, message_id, transport.name)
    message = session.get(Message, message_id, populate_existing=True)
    if message is None:
        log.warning("sms %s: no such message", message_id)
        return None
    if not claimed:
        log.info("sms %s: already %s; not sending again", message_id, message.status.value)
        return message
    sender = _sender_for(session, message, default_sender)
    delays = [*(IN_JOB_BACKOFF_SECONDS if backoff is None else backoff), None]
    for delay in delays:
        message.attempts += 1
        try:
            result = transport.send(message.body, message.phone, sender)
        except TransientSendError as exc:
            if delay is None:
                message.status = MessageStatus.QUEUED
                message.failure_reason = str(exc)[:200]
                session.commit()
                log.warning("sms %s: %s; back to QUEUED for a later retry", message_id, exc)
                raise
            log.info("sms %s: %s; retrying in %ss", message_id, exc, delay)
            sleep(delay)
            continue
        except UncertainSendError as exc:
            message.failure_reason = str(exc)[:200]
            session.commit()
            log.warning("sms %s: %s; left UNKNOWN for the delivery report", message_id, exc)
            return message
        _apply(message, result)
        session.commit()
        log.info(
            "sms %s to %s: %s %s",
            message_id,
            mask_phone(message.phone),
            result.status.value,
            result.failure_reason or "",
        )
        return message
    raise AssertionError("unreachable")  # pragma: no cover


def give_up(session: Session, message_id: int, reason: str) -> None:
    """Mark a message that could not be sent after every retry as Failed."""
    session.execute(
        update(Message)
        .where(Message.id == message_id, Message.status == MessageStatus.QUEUED)
        .values(status=MessageStatus.FAILED, failure_reason=reason[:200], updated_at=utcnow())
    )


def requeue_stuck(
    session: Session, queue: Queue, older_than: timedelta = STUCK_AFTER, limit: int = SWEEP_LIMIT
) -> list[str]:
    """Enqueue a job again for outbound messages QUEUED for too long, the oldest `limit`; return the job ids enqueued.

    Bounded: after a long outage of the SMS provider the next runs (every 5 minutes) take the rest.
    """
    ids = session.scalars(
        select(Message.id)
        .where(
            Message.direction == MessageDirection.OUTBOUND,
            Message.status == MessageStatus.QUEUED,
            Message.created_at < utcnow() - older_than,
        )
        .order_by(Message.id)
        .limit(limit)
    ).all()
    return enqueue_messages(queue, ids)


def sweep_outbox() -> int:
    """Re-enqueue stuck outbound messages (the clock's periodic job)."""
    with runtime.job_session() as session:
        return len(requeue_stuck(session, runtime.queue()))


def _claim(session: Session, message_id: int, transport_name: str) -> bool:
    """Move the message from QUEUED to UNKNOWN in its own committed transaction; return whether we did."""
    result = session.execute(
        update(Message)
        .where(
            Message.id == message_id,
            Message.direction == MessageDirection.OUTBOUND,
            Message.status == MessageStatus.QUEUED,
            Message.provider_message_id.is_(None),
        )
        .values(status=MessageStatus.UNKNOWN, transport=transport_name, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return bool(getattr(result, "rowcount", 0))


def _sender_for(session: Session, message: Message, default_sender: str | None) -> str | None:
    """Return the sender id of a household's text (or of one sent for a mutuelle, as a collector's): the mutuelle's,
    else its scheme's, else the default."""
    if message.household_id is not None:
        household = session.get(Household, message.household_id)
        if household is not None:
            return household.mutuelle.sms_sender_id or household.scheme.sms_sender_id or default_sender
    if message.mutuelle_id is not None:
        mutuelle = session.get(Mutuelle, message.mutuelle_id)
        if mutuelle is not None:
            return mutuelle.sms_sender_id or mutuelle.scheme.sms_sender_id or default_sender
    return default_sender


def _apply(message: Message, result: SendResult) -> None:
    message.status = result.status
    message.provider_message_id = result.provider_message_id
    message.provider_status_code = result.status_code
    message.cost = result.cost
    message.failure_reason = result.failure_reason
    if result.status is MessageStatus.SENT:
        message.sent_at = utcnow()
