"""Collection devices: the scheme phones allowed to forward operators' confirmation texts."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.access import CollectionDevice

_SENDER = re.compile(r"^[A-Za-z0-9+ ._-]{2,40}$")


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
    session: Session, *, device_key: str, label: str, senders: list[str], scheme_id: int | None, trusted: bool
) -> CollectionDevice:
    """Register a collection device under a unique key; the caller commits."""
    device_key, label = device_key.strip(), label.strip()
    if not device_key or len(device_key) > 80:
        raise DeviceError("the device key must be 1 to 80 characters")
    if not label or len(label) > 120:
        raise DeviceError("the label must be 1 to 120 characters")
    if session.scalar(select(CollectionDevice.id).where(CollectionDevice.device_key == device_key)) is not None:
        raise DeviceError(f"a device {device_key!r} is already registered")
    device = CollectionDevice(
        device_key=device_key, label=label, scheme_id=scheme_id, operator_senders=senders, trusted=trusted
    )
    session.add(device)
    session.flush()
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
