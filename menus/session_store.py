"""USSD sessions in Redis: one JSON value per AT session id, with a TTL, read (and its TTL renewed) once per hop.

The value holds the engine state (with the cached phone → household data), the language, the `text` it was
saved at and that hop's reply, so a duplicate hop is answered from it and a normal hop needs no database at
all. The `text` is kept with the inputs typed on secret screens (PINs, dates of birth) masked, beside a keyed
digest (HMAC-SHA256 with the app's secret key) of the text as typed: a later hop is recognised as the same text
or its extension by that digest, so no PIN or date of birth is ever written to Redis, and a 4-digit PIN cannot
be found by hashing the 10,000 candidates without the key. It is written only when it must be (see
`menus.conversation`): a navigation hop replays its input over the stored state instead, so it costs one Redis
round trip, the `GETEX` that reads the value and renews its TTL.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.retry import Retry

from menus.engine import State
from redis_keys import ussd_session_key

DEFAULT_TTL_SECONDS = 300
# A hop must answer (an apology at worst) well within a second when Redis is away: no retries, short waits.
DEFAULT_TIMEOUT_SECONDS = 0.3

_clients: dict[tuple[str, float], tuple[int, Redis]] = {}


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


SECRET_MASK = "x"  # not "*": that is AT's separator of inputs


def mask_inputs(path: str, secret_hops: Iterable[int]) -> str:
    """Return the inputs with those typed on secret hops (1 is the first input) replaced by a mask."""
    secret = set(secret_hops)
    if not secret or not path:
        return path
    return "*".join(SECRET_MASK if index in secret else part for index, part in enumerate(path.split("*"), start=1))


def text_digest(key: bytes, text: str) -> str:
    """Return the keyed digest of an AT `text` as typed."""
    return hmac.new(key, text.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:32]


def _inputs(text: str) -> list[str]:
    return text.split("*") if text else []


@dataclass
class StoredSession:
    """What a session keeps between hops: the state, the text (secrets masked) and its keyed digest, the reply."""

    state: State
    text: str
    reply: str
    digest: str = ""

    @classmethod
    def at(cls, state: State, text: str, reply: str, key: bytes) -> StoredSession:
        """Return the session as it is stored after the hop whose AT `text` this is."""
        return cls(state, mask_inputs(text, state.secret_hops), reply, text_digest(key, text))

    @property
    def language(self) -> str:
        """Return the session's language."""
        return self.state.lang

    def added_inputs(self, text: str, key: bytes) -> list[str] | None:
        """Return the inputs `text` adds to the stored one ([] for the same text), None when it does not extend it."""
        stored_count = len(_inputs(self.text))
        typed = _inputs(text)
        if len(typed) < stored_count:
            return None
        if not hmac.compare_digest(text_digest(key, "*".join(typed[:stored_count])), self.digest):
            return None
        return typed[stored_count:]

    def dumps(self) -> str:
        """Return the session as compact JSON."""
        value = {
            "state": self.state.to_dict(),
            "lang": self.state.lang,
            "text": self.text,
            "digest": self.digest,
            "reply": self.reply,
        }
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def loads(cls, raw: bytes | str) -> StoredSession:
        """Return the session stored by `dumps` (one without a digest never matches a later hop)."""
        value: dict[str, Any] = json.loads(raw)
        return cls(State.from_dict(value["state"]), str(value["text"]), str(value["reply"]), str(value["digest"]))


class SessionStore:
    """Load (renewing the TTL), save and clear USSD sessions; each call is one Redis round trip."""

    def __init__(self, client: Redis, ttl: int = DEFAULT_TTL_SECONDS, key: bytes = b"") -> None:
        self.client = client
        self.ttl = ttl
        self.key = key  # of the text digests (the app's secret key)

    def load(self, session_id: str) -> StoredSession | None:
        """Return the stored session, or None when there is none (never started, expired, or lost).

        `GETEX … EX ttl` renews the TTL in the same round trip, so a hop that does not write still keeps
        the session alive for another TTL.
        """
        raw = self.client.getex(ussd_session_key(session_id), ex=self.ttl)
        if raw is None:
            return None
        try:
            return StoredSession.loads(raw)
        except (ValueError, KeyError, TypeError):
            return None  # unreadable (older format): rebuilt from `text` like a lost key

    def save(self, session_id: str, session: StoredSession) -> None:
        """Store the session with the TTL renewed."""
        self.client.set(ussd_session_key(session_id), session.dumps(), ex=self.ttl)

    def pop(self, session_id: str) -> StoredSession | None:
        """Delete the session and return what it held."""
        raw = self.client.getdel(ussd_session_key(session_id))
        if raw is None:
            return None
        try:
            return StoredSession.loads(raw)
        except (ValueError, KeyError, TypeError):
            return None
