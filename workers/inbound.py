"""The inbound SMS job: answer one stored command (one job per message), enqueued after the web commit.

The text as sent (with a PIN or a date of birth, masked in the database) travels in a short-lived Redis key
beside the job, never in the job's arguments (RQ logs and keeps those), and is deleted once answered.
"""

from __future__ import annotations

import logging

from rq import Queue, Retry
from rq.exceptions import DuplicateJobError

from models.base import utcnow
from models.messaging.inbound import CommandContext, answer_inbound
from models.payments.sources import operator_patterns
from redis_keys import inbound_job_id, inbound_text_key
from workers import runtime
from workers.reconcile import reconcile_after_commit

log = logging.getLogger(__name__)

INBOUND_FUNC = "workers.inbound.handle_inbound"
# Long enough for a worker restart; after it a command needing its PIN is answered with its usage.
INBOUND_TEXT_TTL_SECONDS = 3600
INBOUND_RETRY_INTERVALS = [10, 60, 300]


def enqueue_inbound(queue: Queue, message_id: int, secret_text: str | None = None) -> bool:
    """Keep the unmasked text (if any) beside the job, then enqueue the job once; return whether it was added."""
    if secret_text is not None:
        queue.connection.set(inbound_text_key(message_id), secret_text, ex=INBOUND_TEXT_TTL_SECONDS)
    try:
        queue.enqueue(
            INBOUND_FUNC,
            message_id,
            job_id=inbound_job_id(message_id),
            unique=True,
            retry=Retry(max=len(INBOUND_RETRY_INTERVALS), interval=INBOUND_RETRY_INTERVALS),
            description=f"answer inbound SMS {message_id}",
            failure_ttl=7 * 86400,
        )
    except DuplicateJobError:
        return False
    return True


def handle_inbound(message_id: int) -> str:
    """Answer one inbound SMS (the RQ job); exceptions reach RQ for retries."""
    settings = runtime.settings()
    redis = runtime.redis()
    key = inbound_text_key(message_id)
    raw = redis.get(key)
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    context = CommandContext(
        now=utcnow(),
        ussd_code=settings.USSD_SERVICE_CODE,
        redis=redis,
        patterns=operator_patterns(settings.OPERATOR_SMS_FILE),
        default_scheme=settings.DEFAULT_SCHEME,
    )
    with runtime.job_session() as session:
        outcome = answer_inbound(session, message_id, text, context)
        if outcome.reconcile_payment_id is not None:
            reconcile_after_commit(session, [outcome.reconcile_payment_id], settings)
    redis.delete(key)
    log.info("inbound sms %s: %s → %s", message_id, outcome.kind, outcome.reply)
    return outcome.kind
