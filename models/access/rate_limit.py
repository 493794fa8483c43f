"""Sliding-window rate limits in Redis, shared by every channel (USSD and SMS member checks).

Each attempt is recorded under its own event id (an AT SMS id, a USSD session + hop), so a replayed request or
a retried job is counted once. One sorted set per limit and subject: members are event ids, scores are times.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis import Redis

from redis_keys import rate_limit_key


@dataclass(frozen=True)
class RateLimit:
    """At most `limit` attempts per `window_seconds` for one subject (a phone, a member number)."""

    name: str
    limit: int
    window_seconds: int


# A member check by member number + date of birth from any phone (SMS `STATUS <no> <DDMMYYYY>`, the USSD
# check of an unknown phone): a few per phone, and a few per member number whatever the phone, so a date of
# birth cannot be guessed by trying every day of a year from many phones.
MEMBER_CHECK_PER_PHONE = RateLimit("member-check-phone", limit=5, window_seconds=3600)
MEMBER_CHECK_PER_MEMBER = RateLimit("member-check-member", limit=10, window_seconds=86400)


def allow(redis: Redis, rule: RateLimit, subject: str, event_id: str, now: float | None = None) -> bool:
    """Record the attempt `event_id` and return whether it is within the limit (a replayed id counts once)."""
    moment = time.time() if now is None else now
    key = rate_limit_key(rule.name, subject)
    pipe = redis.pipeline(transaction=True)
    pipe.zremrangebyscore(key, "-inf", moment - rule.window_seconds)
    pipe.zadd(key, {event_id: moment}, nx=True)
    pipe.zrank(key, event_id)
    pipe.expire(key, rule.window_seconds)
    _removed, _added, rank, _ttl = pipe.execute()
    # Ranked by time: the attempt is allowed when fewer than `limit` attempts came before it in the window.
    return rank is not None and int(rank) < rule.limit


def allow_member_check(redis: Redis, phone: str, member_no: str, event_id: str) -> bool:
    """Record a member check by number + date of birth (any channel) and return whether both limits allow it."""
    return allow(redis, MEMBER_CHECK_PER_PHONE, phone, event_id) and allow(
        redis, MEMBER_CHECK_PER_MEMBER, member_no.upper(), event_id
    )
