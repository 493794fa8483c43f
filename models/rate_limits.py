"""Rate limits kept in Redis, their keys built here from templates (fixed windows, one INCR round trip)."""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis

# A check by member number + date of birth, from any phone (USSD or SMS `STATUT <no> <DDMMYYYY>`).
DOB_CHECK_KEY = "ratelimit:dob-check:{}"
DOB_CHECKS_PER_WINDOW = 5
DOB_CHECK_WINDOW_SECONDS = 3600


@dataclass(frozen=True)
class Limit:
    """A limit: so many hits per window, counted under a key template."""

    key: str
    hits: int
    window_seconds: int


DOB_CHECK = Limit(DOB_CHECK_KEY, DOB_CHECKS_PER_WINDOW, DOB_CHECK_WINDOW_SECONDS)


def limit_key(limit: Limit, subject: str) -> str:
    """Return the Redis key counting a subject's hits (e.g. a phone's checks)."""
    return limit.key.format(subject)


def hit(client: Redis, limit: Limit, subject: str) -> bool:
    """Count one hit for the subject and return whether it is within the limit.

    The window starts at the first hit (`EXPIRE … NX`), in the same round trip as the count.
    """
    key = limit_key(limit, subject)
    pipe = client.pipeline(transaction=True)
    pipe.incr(key)
    pipe.expire(key, limit.window_seconds, nx=True)
    count, _ = pipe.execute()
    return int(count) <= limit.hits
