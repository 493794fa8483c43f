"""Outbound SMS onto RQ: the send jobs (by name, their ids from `redis_keys`) and the outbox's dispatch.

Below the jobs of `workers.sms` and the process plumbing of `workers.runtime`, which both enqueue sends:
the jobs are named by their dotted path, as RQ stores them, so this module imports neither.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from rq import Queue, Retry
from rq.exceptions import DuplicateJobError

from models.messaging.outbox import Dispatch
from redis_keys import sms_group_job_id, sms_job_id
from workers.connections import get_queue

log = logging.getLogger(__name__)

SEND_MESSAGE_FUNC = "workers.sms.send_message"
SEND_MESSAGES_FUNC = "workers.sms.send_messages"
# RQ's retries (the worker runs --with-scheduler), after the job's own short in-job backoff.
RQ_RETRY_INTERVALS = [30, 120, 600, 1800]


def _retry() -> Retry:
    return Retry(max=len(RQ_RETRY_INTERVALS), interval=RQ_RETRY_INTERVALS)


def enqueue_messages(queue: Queue, message_ids: Iterable[int]) -> list[str]:
    """Enqueue one send job per message id (an existing job with the same id is left alone)."""
    job_ids = []
    for message_id in message_ids:
        job_id = sms_job_id(message_id)
        try:
            queue.enqueue(
                SEND_MESSAGE_FUNC,
                message_id,
                job_id=job_id,
                unique=True,
                retry=_retry(),
                description=f"send SMS {message_id}",
            )
        except DuplicateJobError:
            log.info("job %s already exists; not enqueued again", job_id)
            continue
        job_ids.append(job_id)
    return job_ids


def enqueue_new_messages(queue: Queue, message_ids: Sequence[int], at_front: bool = False) -> list[str]:
    """Enqueue one job that sends the messages a transaction has just committed (or the rest of a group's).

    Their ids are new, so no job can have them yet; the job id names the first id and the count.
    """
    ids = sorted(message_ids)
    if not ids:
        return []
    if len(ids) == 1:
        job = queue.enqueue(SEND_MESSAGE_FUNC, ids[0], job_id=sms_job_id(ids[0]), retry=_retry(), at_front=at_front)
    else:
        job_id = sms_group_job_id(ids[0], len(ids))
        job = queue.enqueue(SEND_MESSAGES_FUNC, ids, job_id=job_id, retry=_retry(), at_front=at_front)
    return [job.id]


def rq_dispatch(redis_url: str, queue_name: str) -> Dispatch:
    """Return the outbox dispatch that enqueues the send jobs of newly committed messages on the named queue."""

    def dispatch(message_ids: list[int]) -> None:
        enqueue_new_messages(get_queue(redis_url, queue_name), message_ids)

    return dispatch
