"""Redis connections and RQ queues, shared per process and fork-safe."""

from __future__ import annotations

import os

from redis import Redis
from rq import Queue

_clients: dict[str, tuple[int, Redis]] = {}


def get_redis(url: str) -> Redis:
    """Return this process's Redis client for the URL (a new one after a fork)."""
    pid = os.getpid()
    cached = _clients.get(url)
    if cached is not None and cached[0] == pid:
        return cached[1]
    client = Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=2.0, health_check_interval=30)
    _clients[url] = (pid, client)
    return client


def get_queue(url: str, name: str = "default") -> Queue:
    """Return the RQ queue of this name on the Redis at the URL."""
    return Queue(name, connection=get_redis(url))
