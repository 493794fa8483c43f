"""What the queue-health page shows: RQ queues, their registries, failed jobs, workers and the clock heartbeat."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from redis import Redis
from rq import Queue, Worker
from rq.job import Job

from redis_keys import clock_heartbeat_key

FAILED_JOBS_SHOWN = 20
# The clock records a heartbeat every minute; older than this and the page says it is late.
HEARTBEAT_LATE_SECONDS = 180


@dataclass(frozen=True)
class QueueCounts:
    """Job counts of one RQ queue."""

    name: str
    queued: int
    started: int
    failed: int
    scheduled: int
    deferred: int


@dataclass(frozen=True)
class FailedJob:
    """A failed job with the last line of its exception."""

    queue: str
    job_id: str
    func_name: str
    ended_at: datetime | None
    error: str


@dataclass(frozen=True)
class QueueHealth:
    """Queues, failed jobs, workers and the clock's heartbeat age (None: never seen)."""

    queues: list[QueueCounts]
    failed_jobs: list[FailedJob]
    workers: list[tuple[str, str, list[str]]]  # (name, state, queues)
    heartbeat_age_seconds: float | None

    @property
    def clock_late(self) -> bool:
        """Return whether the clock's heartbeat is missing or late."""
        return self.heartbeat_age_seconds is None or self.heartbeat_age_seconds > HEARTBEAT_LATE_SECONDS


def queue_depth(connection: Redis, name: str) -> int:
    """Return how many jobs wait in the named queue."""
    return Queue(name, connection=connection).count


def exception_summary(text: str | None) -> str:
    """Return the last non-empty line of a traceback (the exception and its message)."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def queue_health(connection: Redis, configured: Iterable[str], now: float | None = None) -> QueueHealth:
    """Return the state of every RQ queue on this Redis (the configured ones always listed)."""
    queues = {q.name: q for q in Queue.all(connection=connection)}
    for name in configured:
        queues.setdefault(name, Queue(name, connection=connection))
    counts: list[QueueCounts] = []
    failed: list[FailedJob] = []
    for name in sorted(queues):
        queue = queues[name]
        counts.append(
            QueueCounts(
                name=name,
                queued=queue.count,
                started=queue.started_job_registry.count,
                failed=queue.failed_job_registry.count,
                scheduled=queue.scheduled_job_registry.count,
                deferred=queue.deferred_job_registry.count,
            )
        )
        room = FAILED_JOBS_SHOWN - len(failed)
        if room <= 0:
            continue
        ids = queue.failed_job_registry.get_job_ids(0, room - 1, desc=True)
        for job in Job.fetch_many(ids, connection=connection):
            if job is None:
                continue
            result = job.latest_result()
            failed.append(
                FailedJob(
                    queue=name,
                    job_id=job.id,
                    func_name=job.func_name or "",
                    ended_at=job.ended_at,
                    error=exception_summary(result.exc_string if result is not None else None),
                )
            )
    workers = [
        (worker.name, str(worker.get_state()), [q.name for q in worker.queues])
        for worker in Worker.all(connection=connection)
    ]
    raw = connection.get(clock_heartbeat_key())
    now = time.time() if now is None else now
    age = max(0.0, now - float(raw)) if raw is not None else None
    return QueueHealth(counts, failed, workers, age)


def heartbeat_time(age_seconds: float | None, now: float | None = None) -> datetime | None:
    """Return the UTC time of a heartbeat of this age."""
    if age_seconds is None:
        return None
    return datetime.fromtimestamp((time.time() if now is None else now) - age_seconds, UTC)
