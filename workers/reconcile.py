"""The `reconcile` RQ jobs: thin wrappers around `workers.matching`, one payment per job or a batch of them."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from rq import Queue, Retry, Worker
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job, JobStatus, get_current_job
from sqlalchemy import select

from models.base import PaymentStatus, utcnow
from models.payment import Payment
from workers import runtime

log = logging.getLogger(__name__)

# RQ ≥ 2.x accepts only letters, digits, "_" and "-" in job ids, so not "reconcile:{id}".
RECONCILE_JOB_ID = "reconcile-{}"
RECONCILE_FUNC = "workers.reconcile.reconcile"
RECONCILE_BATCH_JOB_ID = "reconcile-batch-{}-{}-{}"
RECONCILE_BATCH_FUNC = "workers.reconcile.reconcile_batch"
RECONCILE_RETRIES = 3
RECONCILE_RETRY_INTERVALS = [10, 60, 300]
# A worker running a job heartbeats every 30 s: four missed beats and it is dead.
WORKER_HEARTBEAT_STALE_SECONDS = 120
_PENDING = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED}


def enqueue_reconcile(queue: Queue, payment_id: int) -> bool:
    """Enqueue `reconcile` for the payment unless a run is already pending; return whether one was added.

    Call only after the transaction that created or changed the payment has committed.
    """
    job_id = RECONCILE_JOB_ID.format(payment_id)
    for _attempt in range(2):
        try:
            queue.enqueue(
                RECONCILE_FUNC,
                payment_id,
                job_id=job_id,
                unique=True,
                retry=Retry(max=RECONCILE_RETRIES, interval=RECONCILE_RETRY_INTERVALS),
                # No result kept, so a later state change can enqueue the same id again at once.
                result_ttl=0,
                failure_ttl=7 * 86400,
            )
            return True
        except DuplicateJobError:
            try:
                job = Job.fetch(job_id, connection=queue.connection)
            except NoSuchJobError:
                continue
            status = job.get_status(refresh=True)
            if status == JobStatus.STARTED and not job_worker_alive(job):
                # Its worker died mid-job (SIGKILL, OOM, lost machine): the job will never finish.
                log.warning("reconcile job %s started by a dead worker %s: enqueued again", job_id, job.worker_name)
                job.delete()
                continue
            if status in _PENDING:
                return False
            # A finished or failed run of an earlier state: replace it so the new state is considered.
            job.delete()
    return False


def job_worker_alive(job: Job, now: datetime | None = None) -> bool:
    """Return whether the worker that started a job is still working on it (its heartbeat is recent).

    RQ only notices a dead worker's started job when the job's timeout and the worker's key expire (minutes);
    a live worker heartbeats every `job_monitoring_interval` (30 s) while it runs a job.
    """
    if not job.worker_name:
        return False
    worker = Worker.find_by_key(Worker.redis_worker_namespace_prefix + job.worker_name, connection=job.connection)
    if worker is None or worker.last_heartbeat is None or worker.get_current_job_id() != job.id:
        return False
    moment = now or datetime.now(UTC)
    return (moment - worker.last_heartbeat).total_seconds() < WORKER_HEARTBEAT_STALE_SECONDS


def reconcile(payment_id: int) -> str:
    """Match (and when possible allocate) one payment; exceptions reach RQ for retries."""
    from workers.matching import reconcile_payment

    with runtime.job_session() as session:
        outcome = reconcile_payment(session, payment_id)
    log.info("reconcile payment %s: %s", payment_id, outcome)
    return outcome


def enqueue_reconcile_batch(queue: Queue, payment_ids: list[int]) -> bool:
    """Enqueue one `reconcile_batch` job for these payments (deterministic id); return whether it was added.

    Call only after the transaction that created the payments has committed.
    """
    ids = sorted(set(payment_ids))
    if not ids:
        return False
    try:
        queue.enqueue(
            RECONCILE_BATCH_FUNC,
            ids,
            job_id=RECONCILE_BATCH_JOB_ID.format(ids[0], ids[-1], len(ids)),
            unique=True,
            retry=Retry(max=RECONCILE_RETRIES, interval=RECONCILE_RETRY_INTERVALS),
            result_ttl=0,
            failure_ttl=7 * 86400,
        )
    except DuplicateJobError:
        return False
    return True


def reconcile_batch(payment_ids: list[int]) -> dict[str, int]:
    """Reconcile a batch of payments; return how many had each outcome.

    The batch does not wait for accounts another worker's batch holds: once it has committed, the payments it
    deferred are run again in a second transaction that waits for those accounts (at most one other batch's
    length), so a busy account delays a payment once and never loops. After a database error each payment of
    the batch gets its own job.
    """
    from workers.matching import reconcile_payments

    with runtime.job_session() as session:
        outcomes = reconcile_payments(session, payment_ids)
    deferred = [payment_id for payment_id, outcome in outcomes.items() if outcome == "deferred"]
    if deferred:
        with runtime.job_session() as session:
            outcomes.update(reconcile_payments(session, deferred, wait_for_locks=True))
    retry = [payment_id for payment_id, outcome in outcomes.items() if outcome == "retry"]
    if retry:
        job = get_current_job()
        queue = runtime.queue(job.origin if job is not None else None)
        for payment_id in retry:
            enqueue_reconcile(queue, payment_id)
    counts: dict[str, int] = {}
    for outcome in outcomes.values():
        key = outcome.split(" ")[0]
        counts[key] = counts.get(key, 0) + 1
    log.info("reconcile batch of %s payment(s): %s (%s deferred once)", len(payment_ids), counts, len(deferred))
    return counts


def sweep_stuck_payments(older_than_seconds: int = 120, limit: int = 5000) -> int:
    """Re-enqueue `reconcile` for payments left in RECEIVED (a lost enqueue, a crashed worker); return how many."""
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    with runtime.job_session() as session:
        ids = list(
            session.scalars(
                select(Payment.id)
                .where(Payment.status == PaymentStatus.RECEIVED, Payment.updated_at < cutoff)
                .order_by(Payment.id)
                .limit(limit)
            )
        )
    queue = runtime.queue()
    added = sum(1 for payment_id in ids if enqueue_reconcile(queue, payment_id))
    if ids:
        log.info("sweeper: %s payment(s) stuck in RECEIVED, %s re-enqueued", len(ids), added)
    return added
