"""The reconciliation jobs: every route asks for a *drain*, and a drain reconciles what waits in batches.

A route that stored or changed a payment adds its id to a Redis set of payments waiting for reconciliation and
asks for a drain job on the `reconcile` queue. Drain jobs coalesce: their id carries a *generation* that each
drain bumps as it starts, so

- under light load a payment's request starts a drain at once, which takes that payment alone;
- while a drain runs, the next request enqueues the next generation's drain (one for any number of requests),
  which takes every payment that arrived meanwhile as one batch — two workers run two drains side by side, each
  popping distinct ids from the set;
- a request that read the generation just before a drain bumped it finds that drain's id taken (duplicate): the
  drain reads the set after the bump, so after the request's payment was committed and added — nothing is left
  behind;
- a drain that takes a full batch asks for the next generation's drain itself, so a backlog that arrived at once
  (workers restarted, a statement, the sweeper) is shared by two workers, not left to the first.

A drain moves ids from the waiting set to a set of its own in one atomic step (each id goes to one drain) and
reconciles them with `reconcile_batch`. If its process dies, RQ's retry of the same job puts its own set back
first; whatever else is lost is still RECEIVED in the database, and the sweeper (every minute) adds it again.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from redis import Redis
from rq import Queue, Retry, Worker
from rq.exceptions import DuplicateJobError, InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus, get_current_job
from sqlalchemy.orm import Session

from config import Settings
from models.base import utcnow
from models.db import enqueue_after_commit
from models.reconciliation.batch import reconcile_batch, waiting_payments_query
from redis_keys import drain_job_id, reconcile_generation_key, reconcile_taken_key, reconcile_waiting_key
from workers import runtime
from workers.connections import get_redis

log = logging.getLogger(__name__)

DRAIN_FUNC = "workers.reconcile.drain"
# Move up to ARGV[1] ids from the waiting set to a drain's own set, atomically; return them.
_TAKE = """
local ids = redis.call('SPOP', KEYS[1], ARGV[1])
if #ids > 0 then redis.call('SADD', KEYS[2], unpack(ids)) end
return ids
"""
RECONCILE_RETRIES = 3
RECONCILE_RETRY_INTERVALS = [10, 60, 300]
# A worker running a job heartbeats every 30 s: four missed beats and it is dead.
WORKER_HEARTBEAT_STALE_SECONDS = 120
# A payment still short of a final state this long after its last change lost its drain (a killed worker).
SWEEP_AFTER_SECONDS = 60
_PENDING = {JobStatus.QUEUED, JobStatus.STARTED, JobStatus.DEFERRED, JobStatus.SCHEDULED}


def request_reconcile(connection: Redis, payment_ids: Iterable[int], queue_name: str) -> bool:
    """Mark payments as waiting for reconciliation and make sure a drain will take them; return whether one was added.

    Call only after the transaction that created or changed the payments has committed.
    """
    ids = sorted(set(payment_ids))
    if ids:
        connection.sadd(reconcile_waiting_key(), *ids)
    queue = Queue(queue_name, connection=connection)
    for _attempt in range(2):
        job_id = drain_job_id(int(connection.get(reconcile_generation_key()) or 0))
        try:
            queue.enqueue(
                DRAIN_FUNC,
                job_id=job_id,
                unique=True,
                retry=Retry(max=RECONCILE_RETRIES, interval=RECONCILE_RETRY_INTERVALS),
                # No result kept, so the id is free again as soon as the drain ends.
                result_ttl=0,
                failure_ttl=7 * 86400,
                description="reconcile the waiting payments",
            )
            return True
        except DuplicateJobError:
            try:
                job = Job.fetch(job_id, connection=connection)
                status = job.get_status(refresh=True)
                if status == JobStatus.STARTED and not job_worker_alive(job):
                    # Its worker died mid-job (SIGKILL, OOM, lost machine): the job will never finish.
                    log.warning("drain %s started by a dead worker %s: enqueued again", job_id, job.worker_name)
                    job.delete()
                    continue
                if status in _PENDING:
                    return False
                job.delete()  # a failed drain of this generation (or one ending now): replace it
            except (NoSuchJobError, InvalidJobOperation):
                continue  # it ended in between (no result is kept): try again (the generation may have moved on)
    return False


@dataclass(frozen=True)
class _Request:
    """A drain request for payments on one Redis and queue (equal requests of a transaction are joined)."""

    redis_url: str
    queue_name: str

    def __call__(self, payment_ids: list[int]) -> None:
        request_reconcile(get_redis(self.redis_url), payment_ids, self.queue_name)


def reconcile_after_commit(session: Session, payment_ids: Iterable[int], settings: Settings) -> None:
    """Ask for the reconciliation of payments once the session's transaction has committed.

    Every route that stores or changes a payment calls this before its commit. Redis away: logged; the
    payments stay short of a final state and the sweeper asks for them within minutes.
    """
    ids = list(payment_ids)
    if ids:
        enqueue_after_commit(session, _Request(settings.REDIS_URL, settings.RECONCILE_QUEUE), ids)


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


def drain() -> dict[str, int]:
    """Reconcile every payment waiting in the set, a batch at a time, until none is left (the RQ job)."""
    connection = runtime.redis()
    batch_size = runtime.settings().RECONCILE_BATCH_SIZE
    waiting = reconcile_waiting_key()
    connection.incr(reconcile_generation_key())  # from now on a request enqueues the next drain, not this one
    job = get_current_job()
    taken = reconcile_taken_key(job.id if job is not None else "inline")
    if connection.exists(taken):  # a run of this job died with payments in hand: they wait again
        connection.sunionstore(waiting, [waiting, taken])
        connection.delete(taken)
    take = connection.register_script(_TAKE)
    totals: Counter[str] = Counter()
    while True:
        ids = sorted(int(raw) for raw in take(keys=[waiting, taken], args=[batch_size]))
        if not ids:
            break
        if job is not None and len(ids) == batch_size:
            # A full batch: more may wait (a backlog, an import). Ask for the next drain, so an idle worker takes
            # batches side by side with this one instead of leaving the whole backlog to it.
            request_reconcile(connection, [], job.origin)
        try:
            totals.update(reconcile_batch(ids, runtime.job_session))
        except Exception:
            connection.sadd(waiting, *ids)  # RQ retries this drain; the ids wait for it
            raise
        finally:
            connection.delete(taken)
    if totals:
        log.info("drain: %s", dict(totals))
    return dict(totals)


def sweep_stuck_payments(older_than_seconds: int = SWEEP_AFTER_SECONDS, limit: int = 5000) -> int:
    """Ask a drain for payments left short of a final state (a lost request, a killed worker); return how many."""
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    with runtime.job_session() as session:
        ids = list(session.scalars(waiting_payments_query(cutoff, limit)))
    if ids:
        request_reconcile(runtime.redis(), ids, runtime.settings().RECONCILE_QUEUE)
        log.info("sweeper: %s payment(s) waiting since before %s: drain requested", len(ids), cutoff)
    return len(ids)
