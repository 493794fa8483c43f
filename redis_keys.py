"""Every Redis key and RQ job id of the project, built here from templates under one prefix (as rq builds `rq:job:…`).

A key is `<prefix>:<area>:…`. A job id is the same prefix joined with dashes, `<prefix>-<kind>-…`: RQ ≥ 2 accepts
only letters, digits, `_` and `-` in job ids (it refuses `sms:1`); RQ keeps each job under `rq:job:<job id>`.
Nothing else in the code writes a key or a job id. The prefix is `mutuelle` unless `REDIS_KEY_PREFIX` says
otherwise: `create_app` and the workers' settings set it once per process (`use_prefix`), before any key is
built. Two deployments, or a test run beside someone's data, can then share one Redis database, each with its
own prefix and its own queue names (`RQ_QUEUE`, `RECONCILE_QUEUE`): RQ's per-queue and per-job keys
(`rq:queue:<name>`, `rq:wip:<name>`, `rq:job:<id>`, `rq:results:<id>`…) carry the prefix inside them, RQ's
shared sets `rq:queues` and `rq:workers` only gain members of ours. `rq cron` (the clock) keeps its registry
without a prefix: `rq:cron_scheduler:<name>`, `rq:cron_schedulers`, `rq:cron_jobs` and `rq:cron_job:<function>:jobs`
(the tests never run it). docs/testing.md lists every key a test run writes.

Rows in the database have keys of their own (receipt and reminder dedupe keys, allocation references, USSD effect
keys): they are stored for good and compared with later ones, so they are not Redis keys and do not live here.
"""

from __future__ import annotations

import re

DEFAULT_PREFIX = "mutuelle"
# What a prefix may hold: it starts RQ job ids too.
PREFIX_PATTERN = re.compile(r"[A-Za-z0-9_-]+")

_prefix = DEFAULT_PREFIX


def use_prefix(prefix: str) -> None:
    """Make `prefix` the start of every key and job id this process builds from now on (REDIS_KEY_PREFIX)."""
    if not PREFIX_PATTERN.fullmatch(prefix):
        raise ValueError(f"a Redis key prefix holds only letters, digits, '_' and '-', not {prefix!r}")
    global _prefix
    _prefix = prefix


def key_prefix() -> str:
    """Return the prefix of this process's keys and job ids."""
    return _prefix


# ---------------------------------------------------------------- keys


def ussd_session_key(session_id: str) -> str:
    """Return the key of a USSD session's stored state (`menus.session_store`)."""
    return f"{_prefix}:ussd:session:{session_id}"


def rate_limit_key(rule: str, subject: str) -> str:
    """Return the key of a sliding-window rate limit for one subject (`models.access.rate_limit`)."""
    return f"{_prefix}:ratelimit:{rule}:{subject}"


def limiter_storage_prefix() -> str:
    """Return the prefix of the admin's Flask-Limiter counters (the `limits` storage puts its keys under it)."""
    return f"{_prefix}:limits"


def inbound_text_key(message_id: int) -> str:
    """Return the key holding an inbound SMS's text as sent until its job has answered it (`workers.inbound`)."""
    return f"{_prefix}:sms:inbound:text:{message_id}"


def clock_heartbeat_key() -> str:
    """Return the key of the clock's last heartbeat (read by the queue-health page)."""
    return f"{_prefix}:clock:heartbeat"


def clock_cursor_key(job: str) -> str:
    """Return the key of the last id a batched clock job has done in its current pass (`workers.clock_runs`)."""
    return f"{_prefix}:clock:cursor:{job}"


def clock_lease_key(job: str) -> str:
    """Return the key a batched clock job's running part holds, so that two parts never work at once."""
    return f"{_prefix}:clock:lease:{job}"


def reconcile_waiting_key() -> str:
    """Return the key of the set of payment ids waiting for a drain (`workers.reconcile`)."""
    return f"{_prefix}:reconcile:waiting"


def reconcile_generation_key() -> str:
    """Return the key of the drain generation counter: the number in the next drain's job id."""
    return f"{_prefix}:reconcile:generation"


def reconcile_taken_key(job_id: str) -> str:
    """Return the key of the set of payment ids a drain job has taken and not yet reconciled."""
    return f"{_prefix}:reconcile:taken:{job_id}"


# ---------------------------------------------------------------- RQ job ids


def sms_job_id(message_id: int) -> str:
    """Return the job id that sends one outbound SMS."""
    return f"{_prefix}-sms-{message_id}"


def sms_group_job_id(first_message_id: int, count: int) -> str:
    """Return the job id that sends a committed group of outbound SMS, named by its first id and its count."""
    return f"{_prefix}-sms-group-{first_message_id}-{count}"


def inbound_job_id(message_id: int) -> str:
    """Return the job id that answers one inbound SMS."""
    return f"{_prefix}-sms-in-{message_id}"


def drain_job_id(generation: int) -> str:
    """Return the job id of the reconciliation drain of a generation."""
    return f"{_prefix}-reconcile-drain-{generation}"
