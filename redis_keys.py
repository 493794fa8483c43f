"""Every Redis key and RQ job id of the project, built here from templates under one prefix (as rq builds `rq:job:…`).

A key is `mutuelle:<area>:…`. A job id is the same prefix joined with dashes, `mutuelle-<kind>-…`: RQ ≥ 2 accepts
only letters, digits, `_` and `-` in job ids (it refuses `sms:1`); RQ keeps each job under `rq:job:<job id>`.
Nothing else in the code writes a key or a job id, so the prefix is set here, once, for every process.

Rows in the database have keys of their own (receipt and reminder dedupe keys, allocation references, USSD effect
keys): they are stored for good and compared with later ones, so they are not Redis keys and do not live here.
"""

from __future__ import annotations

PREFIX = "mutuelle"


# ---------------------------------------------------------------- keys


def ussd_session_key(session_id: str) -> str:
    """Return the key of a USSD session's stored state (`menus.session_store`)."""
    return f"{PREFIX}:ussd:session:{session_id}"


def rate_limit_key(rule: str, subject: str) -> str:
    """Return the key of a sliding-window rate limit for one subject (`models.rate_limit`)."""
    return f"{PREFIX}:ratelimit:{rule}:{subject}"


def limiter_storage_prefix() -> str:
    """Return the prefix of the admin's Flask-Limiter counters (the `limits` storage puts its keys under it)."""
    return f"{PREFIX}:limits"


def inbound_text_key(message_id: int) -> str:
    """Return the key holding an inbound SMS's text as sent until its job has answered it (`workers.inbound`)."""
    return f"{PREFIX}:sms:inbound:text:{message_id}"


def clock_heartbeat_key() -> str:
    """Return the key of the clock's last heartbeat (read by the queue-health page)."""
    return f"{PREFIX}:clock:heartbeat"


def reconcile_waiting_key() -> str:
    """Return the key of the set of payment ids waiting for a drain (`workers.reconcile`)."""
    return f"{PREFIX}:reconcile:waiting"


def reconcile_generation_key() -> str:
    """Return the key of the drain generation counter: the number in the next drain's job id."""
    return f"{PREFIX}:reconcile:generation"


def reconcile_taken_key(job_id: str) -> str:
    """Return the key of the set of payment ids a drain job has taken and not yet reconciled."""
    return f"{PREFIX}:reconcile:taken:{job_id}"


# ---------------------------------------------------------------- RQ job ids


def sms_job_id(message_id: int) -> str:
    """Return the job id that sends one outbound SMS."""
    return f"{PREFIX}-sms-{message_id}"


def sms_group_job_id(first_message_id: int, count: int) -> str:
    """Return the job id that sends a committed group of outbound SMS, named by its first id and its count."""
    return f"{PREFIX}-sms-group-{first_message_id}-{count}"


def inbound_job_id(message_id: int) -> str:
    """Return the job id that answers one inbound SMS."""
    return f"{PREFIX}-sms-in-{message_id}"


def drain_job_id(generation: int) -> str:
    """Return the job id of the reconciliation drain of a generation."""
    return f"{PREFIX}-reconcile-drain-{generation}"
