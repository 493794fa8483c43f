"""The start of every Redis key and RQ job id this process writes: `REDIS_KEY_PREFIX` ("" unless configured).

Two deployments, or a test run beside someone's data, can share one Redis database when each has its own
prefix and its own queue names (`RQ_QUEUE`, `RECONCILE_QUEUE`). RQ's per-queue and per-job keys
(`rq:queue:<name>`, `rq:wip:<name>`, `rq:job:<id>`, `rq:results:<id>`…) then carry the prefix inside them; RQ's
shared sets `rq:queues` and `rq:workers` only gain members of ours, and `rq cron` registers under its own name
(`rq:cron_scheduler:<name>`, a member of `rq:cron_schedulers`). docs/testing.md lists every key.

The prefix is process-wide, like the logging set-up: `create_app` and the workers' settings set it once from
the settings, before any key is built.
"""

from __future__ import annotations

import re

# RQ accepts only these characters in a job id, and job ids start with the prefix too.
PREFIX_PATTERN = re.compile(r"[A-Za-z0-9_-]*")

_prefix = ""


def use_prefix(prefix: str) -> None:
    """Make `prefix` the start of every Redis key and job id this process builds from now on."""
    if not PREFIX_PATTERN.fullmatch(prefix):
        raise ValueError(f"a Redis key prefix may hold only letters, digits, '_' and '-', not {prefix!r}")
    global _prefix
    _prefix = prefix


def key_prefix() -> str:
    """Return the prefix of this process's Redis keys and job ids."""
    return _prefix


def key(name: str) -> str:
    """Return the Redis key (or RQ job id) `name` under this process's prefix."""
    return _prefix + name
