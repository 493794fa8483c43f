"""What staff edit on a network: for matching, its contact phone (the treasurer) and the other names payers type;
for its savings, the grant it received."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.inputs import squash
from models.members.household import Network
from models.members.phones import normalise_phone
from models.schemes.scheme import Scheme

MAX_ALIASES = 20
MAX_ALIAS_LENGTH = 120
MAX_GRANT = 10**15  # far above any grant, well inside a BIGINT


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


def set_grant(network: Network, amount: int | None, on: date | None, today: date) -> Network:
    """Record the grant a network received (amount in the scheme's currency, and the day), or clear it with None.

    The caller commits. Raises ValueError for an amount not above 0 or a day after today.
    """
    if amount is None:
        network.grant_amount, network.grant_on = None, None
        return network
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise ValueError("the grant must be a whole amount above 0")
    if amount > MAX_GRANT:
        raise ValueError(f"the grant must be at most {MAX_GRANT}")
    day = on or today
    if day > today:
        raise ValueError(f"the grant's day {day} is after today")
    network.grant_amount, network.grant_on = amount, day
    return network


def find_network(session: Session, code: str, scheme_code: str | None = None) -> Network:
    """Return the network of this code (any case), in this scheme if given. Raises LookupError naming the problem."""
    query = select(Network).where(func.upper(Network.code) == code.strip().upper())
    if scheme_code:
        query = query.join(Scheme, Scheme.id == Network.scheme_id).where(Scheme.code == scheme_code)
    found = list(session.scalars(query))
    if len(found) != 1:
        raise LookupError(f"no network {code}" if not found else f"{code} is in several schemes: --scheme")
    return found[0]
