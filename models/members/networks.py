"""What staff edit on a network for matching: its contact phone (the treasurer) and the other names payers type."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.inputs import squash
from models.members.household import Network
from models.members.phones import normalise_phone

MAX_ALIASES = 20
MAX_ALIAS_LENGTH = 120


@dataclass(frozen=True)
class NetworkEdit:
    """A network's matching details as staff typed them (aliases one per line or separated by semicolons)."""

    contact_phone: str
    aliases: str


def parse_aliases(text: str) -> list[str]:
    """Return the aliases typed one per line (or separated by semicolons), trimmed and without duplicates."""
    found: dict[str, str] = {}
    for part in text.replace(";", "\n").splitlines():
        alias = " ".join(part.split())
        if alias and squash(alias) not in found:
            found[squash(alias)] = alias
    return list(found.values())


def update_network(session: Session, network: Network, edit: NetworkEdit) -> Network:
    """Set a network's contact phone and aliases after checking them; the caller commits. Raises ValueError."""
    phone = edit.contact_phone.strip()
    try:
        contact = normalise_phone(phone, network.scheme.country) if phone else None
    except ValueError as exc:
        raise ValueError(f"contact phone {phone!r}: {exc}") from exc
    aliases = parse_aliases(edit.aliases)
    if len(aliases) > MAX_ALIASES:
        raise ValueError(f"at most {MAX_ALIASES} aliases")
    for alias in aliases:
        if len(alias) > MAX_ALIAS_LENGTH:
            raise ValueError(f"alias too long (at most {MAX_ALIAS_LENGTH} characters): {alias[:40]}…")
        if len(squash(alias)) < 4:
            raise ValueError(f"alias {alias!r} is too short to tell networks apart (4 letters or digits at least)")
    # A name payers type must name one network only: refuse an alias another network of the scheme answers to.
    others = session.scalars(select(Network).where(Network.scheme_id == network.scheme_id, Network.id != network.id))
    taken = {key: other.code for other in others for key in other.match_keys}
    for alias in aliases:
        if squash(alias) in taken:
            raise ValueError(f"alias {alias!r} already names network {taken[squash(alias)]}")
    network.contact_phone = contact
    network.aliases = aliases or None
    return network
