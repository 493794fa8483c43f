"""Collection officers: created for a mutuelle (and maybe a network), each with a bearer key shown once."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.base import Language
from models.enrolment.tables import Collector
from models.members.household import Network
from models.members.phones import normalise_phone
from models.schemes.mutuelle import find_mutuelle

KEY_PREFIX = "ck_"
KEY_BYTES = 32
SHOWN_PREFIX = 11  # "ck_" + 8 characters: tells keys apart in a listing, useless to guess
MAX_PRESENTED_KEY = 256


class CollectorError(ValueError):
    """A collector cannot be created as asked; the message says why."""


def hash_collector_key(key: str) -> str:
    """Return the hex SHA-256 of a collector key."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def create_collector(
    session: Session,
    *,
    name: str,
    mutuelle_code: str,
    network_code: str | None = None,
    phone: str | None = None,
    language: str | None = None,
) -> tuple[Collector, str]:
    """Create a collector of a mutuelle (and network) and return it with its key, of which only the hash is kept."""
    name = name.strip()
    if not name or len(name) > 120:
        raise CollectorError("the name must be 1 to 120 characters")
    mutuelle = find_mutuelle(session, mutuelle_code)
    if mutuelle is None:
        raise CollectorError(f"no mutuelle {mutuelle_code!r} (flask --app app mutuelles list)")
    network_id = None
    if network_code:
        network = session.scalar(
            select(Network).where(
                Network.mutuelle_id == mutuelle.id, func.upper(Network.code) == network_code.strip().upper()
            )
        )
        if network is None:
            raise CollectorError(f"no network {network_code!r} in mutuelle {mutuelle.code}")
        network_id = network.id
    e164 = None
    if phone:
        try:
            e164 = normalise_phone(phone, mutuelle.scheme.country)
        except ValueError as exc:
            raise CollectorError(f"phone {phone!r}: {exc}") from exc
    plain = KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)
    collector = Collector(
        name=name,
        phone=e164,
        mutuelle_id=mutuelle.id,
        network_id=network_id,
        key_hash=hash_collector_key(plain),
        key_prefix=plain[:SHOWN_PREFIX],
        language=Language(language) if language else None,
    )
    session.add(collector)
    session.flush()
    return collector, plain


def set_collector_sms(session: Session, collector_id: int, on: bool) -> Collector:
    """Turn a collector's evening summary on or off (as their START and STOP do)."""
    collector = session.get(Collector, collector_id)
    if collector is None:
        raise CollectorError(f"no collector {collector_id}")
    collector.sms_opt_in = on
    session.flush()
    return collector


def authenticate_collector(session: Session, presented: str | None) -> Collector | None:
    """Return the active collector whose key was presented, or None."""
    if not presented or len(presented) > MAX_PRESENTED_KEY:
        return None
    digest = hash_collector_key(presented)
    collector = session.scalar(select(Collector).where(Collector.key_hash == digest))
    if collector is None or not hmac.compare_digest(collector.key_hash, digest) or not collector.active:
        return None
    return collector
