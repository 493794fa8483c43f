"""Housekeeping jobs run by the clock."""

from __future__ import annotations

import time

from redis_keys import clock_heartbeat_key
from workers import runtime


def record_heartbeat() -> float:
    """Record that the clock and a worker are alive (read by the queue-health page)."""
    now = time.time()
    runtime.redis().set(clock_heartbeat_key(), now, ex=3600)
    return now
