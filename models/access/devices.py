"""Collection devices: the scheme phones allowed to forward operators' confirmation texts, and their keys.

Each device has its own secret key, shown once when it is issued (registration, rotation), kept as a SHA-256
and presented as `Authorization: Bearer <key>` on `POST /payments/sms-forward`. Rotating or revoking one
device's key touches no other device. A forward that names a registered device without its current key is
refused (403) and kept for review; the key it carried, when it is the one the device had before, is "an old
key" (a phone still configured with a rotated key, or one of the plaintext device ids of the first release).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.access.tables import CollectionDevice
from models.base import utcnow
from models.db import every_mutuelle

_SENDER = re.compile(r"^[A-Za-z0-9+ ._-]{2,40}$")
_DEVICE_ID = re.compile(r"^[A-Za-z0-9+._:-]+$")
KEY_PREFIX = "dk_"
KEY_BYTES = 32
SHOWN_PREFIX = 11  # "dk_" + 8 characters: enough to tell keys apart on the admin page, useless to guess
MAX_PRESENTED_KEY = 256


class KeyVerdict(enum.StrEnum):
    """How a forward's credentials compare with the registered devices."""

    OK = "ok"
    OLD_KEY = "device on an old key"
    WRONG_KEY = "wrong device key"
    NO_KEY = "no device key"
    REVOKED = "device key revoked"
    UNKNOWN = "unknown device"
    INACTIVE = "device deactivated"
    MISMATCH = "the key belongs to another device"


@dataclass(frozen=True)
class DeviceAuth:
    """The device a forward authenticates as (verdict OK), or the known device it claims and why it is refused."""

    verdict: KeyVerdict
    device: CollectionDevice | None


def hash_device_key(key: str) -> str:
    """Return the hex SHA-256 of a device key."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def issue_device_key(session: Session, device: CollectionDevice) -> str:
    """Give the device a new key (the old one stops working at once) and return it; only its hash is kept."""
    plain = KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)
    if device.key_hash:
        device.previous_key_hash = device.key_hash
    device.key_hash = hash_device_key(plain)
    device.key_prefix = plain[:SHOWN_PREFIX]
    device.key_issued_at = utcnow()
    device.key_revoked_at = None
    session.flush()
    return plain


def revoke_device_key(session: Session, device: CollectionDevice) -> None:
    """Revoke the device's key: its forwards are refused (and kept for review) until a new key is issued."""
    if device.key_hash:
        device.previous_key_hash = device.key_hash
    device.key_hash = None
    device.key_revoked_at = utcnow()
    session.flush()


def find_device_by_ref(session: Session, ref: str) -> CollectionDevice | None:
    """Return the device registered under this id or phone (its `device_key`), active or not."""
    return session.scalar(select(CollectionDevice).where(CollectionDevice.device_key == ref.strip()))


def bearer_key(authorization: str | None) -> str | None:
    """Return the key of an `Authorization: Bearer <key>` header, or None."""
    scheme, _, presented = (authorization or "").partition(" ")
    presented = presented.strip()
    if scheme.lower() != "bearer" or not presented or len(presented) > MAX_PRESENTED_KEY:
        return None
    return presented


def authenticate_device(session: Session, presented: str | None, claimed: str | None) -> DeviceAuth:
    """Return which device a forward's key (and the `device` it names) authenticates, or why it is refused."""
    if presented:
        digest = hash_device_key(presented)
        device = session.scalar(select(CollectionDevice).where(CollectionDevice.key_hash == digest))
        if device is not None and hmac.compare_digest(device.key_hash or "", digest):
            if claimed and claimed.strip() != device.device_key:
                return DeviceAuth(KeyVerdict.MISMATCH, find_device_by_ref(session, claimed))
            if not device.active:
                return DeviceAuth(KeyVerdict.INACTIVE, device)
            return DeviceAuth(KeyVerdict.OK, device)
        old = session.scalar(select(CollectionDevice).where(CollectionDevice.previous_key_hash == digest).limit(1))
        if old is not None:
            return DeviceAuth(KeyVerdict.OLD_KEY, old)
    known = find_device_by_ref(session, claimed) if claimed else None
    if known is None and presented:
        known = find_device_by_ref(session, presented)  # the first release's plaintext key: the device id itself
    if known is None:
        return DeviceAuth(KeyVerdict.UNKNOWN, None)
    if presented is not None and presented.strip() == known.device_key:
        return DeviceAuth(KeyVerdict.OLD_KEY, known)
    if known.key_hash is None:
        # Revoked, or never re-keyed since the migration: the phone still forwards as the first release did.
        return DeviceAuth(KeyVerdict.OLD_KEY if presented is None else KeyVerdict.REVOKED, known)
    return DeviceAuth(KeyVerdict.NO_KEY if presented is None else KeyVerdict.WRONG_KEY, known)


class DeviceError(ValueError):
    """A device cannot be registered or changed as asked; the message says why."""


def parse_senders(text: str) -> list[str]:
    """Return the operator sender names of a comma- or line-separated list; DeviceError on a malformed one."""
    senders = [part.strip() for part in re.split(r"[,\n]", text) if part.strip()]
    for sender in senders:
        if not _SENDER.match(sender):
            raise DeviceError(f"sender {sender[:40]!r}: 2-40 letters, digits, '+', '.', '_', '-' or spaces")
    if not senders:
        raise DeviceError("name at least one operator sender (e.g. OrangeMoney, Wave)")
    return list(dict.fromkeys(senders))


def register_device(
    session: Session,
    *,
    device_key: str,
    label: str,
    senders: list[str],
    scheme_id: int | None,
    trusted: bool,
    mutuelle_id: int | None = None,
) -> tuple[CollectionDevice, str]:
    """Register a collection device under a unique id or phone; return it and its secret key; the caller commits."""
    device_key, label = device_key.strip(), label.strip()
    if not device_key or len(device_key) > 80 or not _DEVICE_ID.match(device_key):
        raise DeviceError("the device id must be 1 to 80 letters, digits, '+', '.', '_', ':' or '-'")
    if not label or len(label) > 120:
        raise DeviceError("the label must be 1 to 120 characters")
    taken = every_mutuelle(select(CollectionDevice.id).where(CollectionDevice.device_key == device_key))
    if session.scalar(taken) is not None:
        raise DeviceError(f"a device {device_key!r} is already registered")
    device = CollectionDevice(
        device_key=device_key,
        label=label,
        scheme_id=scheme_id,
        mutuelle_id=mutuelle_id,
        operator_senders=senders,
        trusted=trusted,
    )
    session.add(device)
    session.flush()
    return device, issue_device_key(session, device)


def get_device(session: Session, ref: str | int) -> CollectionDevice:
    """Return the device of an id number or a device id / phone; DeviceError when there is none."""
    device = session.get(CollectionDevice, ref) if isinstance(ref, int) else find_device_by_ref(session, ref)
    if device is None:
        raise DeviceError(f"no device {ref}")
    return device


def set_device_trust(session: Session, device_id: int, trusted: bool) -> CollectionDevice:
    """Trust (texts confirm payments) or untrust (texts only make them provisional) a device; the caller commits."""
    device = session.get(CollectionDevice, device_id)
    if device is None:
        raise DeviceError(f"no device {device_id}")
    device.trusted = trusted
    session.flush()
    return device


def list_devices(session: Session) -> list[CollectionDevice]:
    """Return every collection device by key."""
    return list(session.scalars(select(CollectionDevice).order_by(CollectionDevice.device_key)))
