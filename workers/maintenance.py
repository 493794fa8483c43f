"""Housekeeping jobs run by the clock."""

from __future__ import annotations

import time

import keyspace
from workers import runtime

CLOCK_HEARTBEAT_KEY = "clock:heartbeat"


def record_heartbeat() -> float:
    """Record that the clock and a worker are alive (read by the queue-health page)."""
    now = time.time()
    runtime.redis().set(keyspace.key(CLOCK_HEARTBEAT_KEY), now, ex=3600)
    return now
