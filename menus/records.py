"""End-of-session records: AT's notification stored for drop-off analysis, PINs and dates of birth masked."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from menus.conversation import state_at
from menus.session_store import SessionStore, StoredSession
from models.messaging.message import UssdSessionRecord

log = logging.getLogger(__name__)

SECRET_RUN_RE = re.compile(r"(?<!\d)\d{4,8}(?!\d)")
SEPARATORS_RE = re.compile(r"[\s./\-]")
# Not "*": that is AT's separator of inputs.
MASK = "xxxx"
EVENT_FIELDS = (
    "date",
    "sessionId",
    "serviceCode",
    "networkCode",
    "phoneNumber",
    "status",
    "cost",
    "durationInMillis",
    "hopsCount",
    "input",
    "lastAppResponse",
    "errorMessage",
)


def mask_input(text: str, secret_hops: Iterable[int] | None) -> str:
    """Return AT's `input` with the PIN and date-of-birth entries masked.

    With the session state, the hops typed on secret screens are masked (hop 1 is the first input). Without
    it, every run of 4 to 8 digits is masked: the menus' own choices are one or two digits.
    """
    if not text:
        return text
    parts = text.split("*")
    if secret_hops is not None:
        secret = set(secret_hops)
        return "*".join(MASK if index in secret and part else part for index, part in enumerate(parts, start=1))
    return "*".join(MASK if _spaced_secret(part) else SECRET_RUN_RE.sub(MASK, part) for part in parts)


def _spaced_secret(part: str) -> bool:
    """Return whether an input is 4 to 8 digits once spaces and date separators are removed ("4 8 2 1")."""
    digits = SEPARATORS_RE.sub("", part)
    return 4 <= len(digits) <= 8 and digits.isdigit() and digits != part


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def _when(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def record_session_end(session: Session, store: SessionStore | None, form: Mapping[str, str]) -> UssdSessionRecord:
    """Store AT's end-of-session notification (masked) and clear the session state; return the record."""
    session_id = form.get("sessionId", "")[:80]
    stored: StoredSession | None = None
    if store is not None and session_id:
        try:
            stored = store.pop(session_id)
        except Exception as exc:  # noqa: BLE001 - Redis away: the record still matters more
            log.warning("ussd events: could not clear session %s: %s", session_id, type(exc).__name__)
    raw_input = form.get("input", "")
    # The stored state may be a few inputs behind (navigation hops are not saved): catch up without data.
    state = state_at(stored, raw_input, store.key) if stored is not None and store is not None else None
    secret_hops = state.secret_hops if state is not None else None
    masked = mask_input(raw_input, secret_hops)
    raw: dict[str, Any] = {name: form.get(name, "") for name in EVENT_FIELDS}
    raw["input"] = masked
    record = session.scalar(select(UssdSessionRecord).where(UssdSessionRecord.session_id == session_id))
    if record is None:
        record = UssdSessionRecord(session_id=session_id)
        session.add(record)
    record.phone = form.get("phoneNumber", "")[:20]
    record.service_code = form.get("serviceCode", "")[:40] or None
    record.network_code = form.get("networkCode", "")[:10] or None
    record.status = form.get("status", "")[:20] or "Unknown"
    record.cost = form.get("cost", "")[:32] or None
    record.duration_ms = _int(form.get("durationInMillis"))
    record.hops_count = _int(form.get("hopsCount"))
    record.input = masked
    record.last_app_response = form.get("lastAppResponse") or None
    last = state or (stored.state if stored is not None else None)
    record.last_screen = last.screen[:60] if last is not None else None
    record.error_message = (form.get("errorMessage") or "")[:500] or None
    record.raw = raw
    record.ended_at = _when(form.get("date"))
    session.commit()
    return record
