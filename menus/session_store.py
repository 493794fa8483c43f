"""USSD sessions in Redis: one JSON value per AT session id, with a TTL, read (and its TTL renewed) once per hop.

The value holds the engine state (with the cached phone → household data), the language, the `text` it was
saved at and that hop's reply, so a duplicate hop is answered from it and a normal hop needs no database at
all. It is written only when it must be (see `menus.conversation`): a navigation hop replays its input over
the stored state instead, so it costs one Redis round trip, the `GETEX` that reads the value and renews its TTL.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.retry import Retry

from menus.engine import State

USSD_SESSION_KEY = "ussd:session:{}"
DEFAULT_TTL_SECONDS = 300
# A hop must answer (an apology at worst) well within a second when Redis is away: no retries, short waits.
DEFAULT_TIMEOUT_SECONDS = 0.3

_clients: dict[tuple[str, float], tuple[int, Redis]] = {}


def session_key(session_id: str) -> str:
    """Return the Redis key of a USSD session."""
    return USSD_SESSION_KEY.format(session_id)


def connect(url: str, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> Redis:
    """Return this process's fail-fast Redis client for USSD hops (a new one after a fork).

    One dedicated connection (`single_connection_client`; redis-py serialises its commands with a lock)
    rather than a pool: a hop sends one command, and taking a connection from a pool and giving it back cost
    a third of that command's CPU. The pool would also notice a connection that Redis closed (a restart)
    before using it; this client finds out by failing, so a command that fails to connect or send is tried
    once more on a new connection (not one that timed out: that keeps a hop's worst case at one timeout).
    Such a client connects when it is made: while Redis is away, a pooled client is returned instead (not
    kept), so the hop fails on its first command and apologises in its usual way, and the next hop tries again.
    """
    pid = os.getpid()
    cached = _clients.get((url, timeout))
    if cached is not None and cached[0] == pid:
        return cached[1]
    options: dict[str, Any] = {
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 30,
    }
    try:
        retry_once = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
        client = Redis.from_url(url, single_connection_client=True, **(options | {"retry": retry_once}))
    except RedisError:
        return Redis.from_url(url, **options)
    _clients[(url, timeout)] = (pid, client)
    return client


@dataclass
class StoredSession:
    """What a session keeps between hops."""

    state: State
    text: str
    reply: str

    @property
    def language(self) -> str:
        """Return the session's language."""
        return self.state.lang

    def dumps(self) -> str:
        """Return the session as compact JSON."""
        value = {"state": self.state.to_dict(), "lang": self.state.lang, "text": self.text, "reply": self.reply}
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def loads(cls, raw: bytes | str) -> StoredSession:
        """Return the session stored by `dumps`."""
        value: dict[str, Any] = json.loads(raw)
        return cls(State.from_dict(value["state"]), str(value["text"]), str(value["reply"]))


class SessionStore:
    """Load (renewing the TTL), save and clear USSD sessions; each call is one Redis round trip."""

    def __init__(self, client: Redis, ttl: int = DEFAULT_TTL_SECONDS) -> None:
        self.client = client
        self.ttl = ttl

    def load(self, session_id: str) -> StoredSession | None:
        """Return the stored session, or None when there is none (never started, expired, or lost).

        `GETEX … EX ttl` renews the TTL in the same round trip, so a hop that does not write still keeps
        the session alive for another TTL.
        """
        raw = self.client.getex(session_key(session_id), ex=self.ttl)
        if raw is None:
            return None
        try:
            return StoredSession.loads(raw)  # type: ignore[arg-type]
        except (ValueError, KeyError, TypeError):
            return None  # unreadable (older format): rebuilt from `text` like a lost key

    def save(self, session_id: str, session: StoredSession) -> None:
        """Store the session with the TTL renewed."""
        self.client.set(session_key(session_id), session.dumps(), ex=self.ttl)

    def pop(self, session_id: str) -> StoredSession | None:
        """Delete the session and return what it held."""
        raw = self.client.getdel(session_key(session_id))
        if raw is None:
            return None
        try:
            return StoredSession.loads(raw)  # type: ignore[arg-type]
        except (ValueError, KeyError, TypeError):
            return None
