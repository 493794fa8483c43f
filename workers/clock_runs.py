"""How the clock's long jobs run at any size: short batches, a cursor, a time budget and a continuation.

A batched job walks its rows in id order, a batch at a time (`CLOCK_BATCH_SIZE`), each batch one short committed
transaction, so the locks it takes are held for a moment and payments keep flowing. After each batch the last id
done is kept in Redis (`clock:cursor:<job>`); after `CLOCK_RUN_SECONDS` the run stops, logs where, and enqueues its
continuation, which carries on from the cursor. A pass that reaches the end deletes the cursor: the next run starts
from the first row again.

One part runs at a time: a run holds `clock:lease:<job>` (expiring `LEASE_MARGIN_SECONDS` after its budget), and a
run that finds it held does nothing (a second clock, the next hourly run while a long pass is still going). A part
killed halfway (a worker lost) leaves its cursor: once its lease has expired, the next run or continuation resumes
there. Every batch is idempotent on its own (each job's keys: one subsidy per household and start, one reminder
per household, kind and period, expiry only of open requests), so a batch done twice — committed, and killed before
its cursor was written — writes nothing twice.
"""

from __future__ import annotations

import logging
import resource
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from rq import get_current_job
from sqlalchemy.orm import Session

from redis_keys import clock_cursor_key, clock_lease_key
from workers import runtime

log = logging.getLogger(__name__)

LEASE_MARGIN_SECONDS = 120  # a batch that started just before the budget ran out has this long to finish
CURSOR_TTL_SECONDS = 2 * 24 * 3600  # a pass left unfinished this long starts again from the first row
# Release the lease only if it is still ours (it may have expired and been taken by another run).
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"

# One batch: given the session and the last id done (0 at the start of a pass), do the next batch in the session's
# transaction (the runner commits it) and return how many rows it did and the last id it covered, None at the end.
Batch = Callable[[Session, int], tuple[int, int | None]]


@dataclass
class RunReport:
    """What one run (one part of a pass) of a batched job did."""

    job: str
    done: int = 0  # rows the job did (periods booked, reminders queued, requests expired…)
    batches: int = 0
    longest_batch_seconds: float = 0.0  # the longest single transaction
    seconds: float = 0.0
    started_after: int = 0  # the cursor it started from
    cursor: int | None = None  # where it stopped; None when the pass reached the end
    skipped: bool = False  # another part held the lease: nothing done
    peak_rss_mb: float = 0.0  # this process's peak resident memory (a work horse: with what it shares with its worker)

    def as_dict(self) -> dict[str, Any]:
        """Return the report as a plain dict (the RQ job's result)."""
        return asdict(self)


def job_timeout() -> int:
    """Return the RQ timeout of a batched clock job: its budget, the margin of its last batch, and some more."""
    return runtime.settings().CLOCK_RUN_SECONDS + 2 * LEASE_MARGIN_SECONDS


def run_batched(job: str, batch: Batch, continuation: Callable[..., Any]) -> RunReport:
    """Run `batch` from the job's cursor until the end of the pass or the time budget; enqueue `continuation` if cut.

    `job` names the cursor and lease keys; `continuation` is the RQ job function to enqueue (the job itself).
    """
    settings = runtime.settings()
    redis = runtime.redis()
    token = uuid.uuid4().hex
    lease = clock_lease_key(job)
    if not redis.set(lease, token, nx=True, ex=settings.CLOCK_RUN_SECONDS + LEASE_MARGIN_SECONDS):
        log.info("clock: %s is running elsewhere: this run does nothing", job)
        return RunReport(job, skipped=True)
    report = RunReport(job)
    began = time.monotonic()
    deadline = began + settings.CLOCK_RUN_SECONDS
    try:
        cursor_key = clock_cursor_key(job)
        stored = redis.get(cursor_key)
        after = int(stored) if stored is not None else 0
        report.started_after = after
        with runtime.job_session() as session:
            while True:
                started = time.monotonic()
                done, last = batch(session, after)
                session.commit()
                report.longest_batch_seconds = max(report.longest_batch_seconds, time.monotonic() - started)
                report.batches += 1
                report.done += done
                if last is None:
                    redis.delete(cursor_key)
                    report.cursor = None
                    break
                after = report.cursor = last
                redis.set(cursor_key, last, ex=CURSOR_TTL_SECONDS)
                if time.monotonic() >= deadline:
                    break
    finally:
        redis.eval(_RELEASE, 1, lease, token)
        report.seconds = time.monotonic() - began
        report.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if report.cursor is None:
        log.info(
            "clock: %s pass done: %s row(s) in %s batch(es), %.1f s", job, report.done, report.batches, report.seconds
        )
    else:
        log.info(
            "clock: %s stopped after %.1f s at id %s (%s row(s) done): continuation enqueued",
            job,
            report.seconds,
            report.cursor,
            report.done,
        )
        # On the queue this part came from (the clock's, else the configured one).
        current = get_current_job()
        runtime.queue(current.origin if current is not None else None).enqueue(continuation, job_timeout=job_timeout())
    return report
