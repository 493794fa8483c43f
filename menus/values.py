"""What the menus read and what their effects answer, as typed records, and the JSON form a session keeps.

`menus.data` builds these records and the screens (`menus.member`, `menus.checks`) read them from `state.data`.
Between hops the session keeps `state.data` as JSON in Redis (`menus.session_store`), and a check's outcome is
kept in `effect_keys.result` for a replayed hop: `to_json` writes, and `decode` reads back, the keys those
values have always had (`"o"` is an outcome, `"no"` a number), so a session or an outcome stored by an earlier
version reads the same (an optional key it lacks takes its default).

Keys of `state.data`: `households`, `caller`, `coverage:<household id>`, `payments:<household id>`, and the
outcomes `request:<hop>` (a payment request: `PaymentReference`, or `OtherPayment` for another household) and
`check:<hop>` (`CheckOutcome`); the other keys hold plain values (`pay:custom`, `check:last`, …).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any, NamedTuple, TypeVar

_Record = TypeVar("_Record")


def _day(value: Any) -> date | None:
    return date.fromisoformat(value) if value else None


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _channels(values: Sequence[Sequence[str]] | None) -> tuple[tuple[str, str], ...]:
    return tuple((str(label), str(account)) for label, account in values or ())


class SchemeInfo(NamedTuple):
    """What the screens show of a household's scheme."""

    name: str
    languages: tuple[str, ...]
    currency: str
    exponent: int
    timezone: str

    def to_json(self) -> dict[str, Any]:
        """Return the scheme as the session keeps it."""
        return {
            "name": self.name,
            "languages": list(self.languages),
            "currency": self.currency,
            "exponent": self.exponent,
            "timezone": self.timezone,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> SchemeInfo:
        """Return the scheme `to_json` wrote."""
        return cls(
            str(value["name"]),
            tuple(value["languages"]),
            str(value["currency"]),
            int(value["exponent"]),
            str(value["timezone"]),
        )


class ListedMember(NamedTuple):
    """An active member as `My household` lists them: first name and the last part of the member number."""

    first: str
    no: str

    def to_json(self) -> dict[str, Any]:
        """Return the member as the session keeps it."""
        return {"first": self.first, "no": self.no}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> ListedMember:
        """Return the member `to_json` wrote."""
        return cls(str(value["first"]), str(value["no"]))


class HouseholdInfo(NamedTuple):
    """One of the phone's households: number, language, plan, network, head, active members and scheme."""

    id: int
    no: str
    lang: str
    plan: str
    network: str | None
    head: str
    members: tuple[ListedMember, ...]
    scheme: SchemeInfo

    def to_json(self) -> dict[str, Any]:
        """Return the household as the session keeps it."""
        return {
            "id": self.id,
            "no": self.no,
            "lang": self.lang,
            "plan": self.plan,
            "network": self.network,
            "head": self.head,
            "members": [member.to_json() for member in self.members],
            "scheme": self.scheme.to_json(),
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> HouseholdInfo:
        """Return the household `to_json` wrote."""
        return cls(
            int(value["id"]),
            str(value["no"]),
            str(value["lang"]),
            str(value["plan"]),
            value.get("network"),
            str(value.get("head") or ""),
            tuple(ListedMember.from_json(member) for member in value.get("members") or ()),
            SchemeInfo.from_json(value["scheme"]),
        )


class AgentInfo(NamedTuple):
    """The facility agent a phone belongs to."""

    id: int
    facility: str

    def to_json(self) -> dict[str, Any]:
        """Return the agent as the session keeps it."""
        return {"id": self.id, "facility": self.facility}


class CallerInfo(NamedTuple):
    """Whether the phone is an active agent's, and its country's language (None when it has a household)."""

    agent: AgentInfo | None
    lang: str | None

    def to_json(self) -> dict[str, Any]:
        """Return the caller as the session keeps it."""
        return {"agent": self.agent.to_json() if self.agent is not None else None, "lang": self.lang}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> CallerInfo:
        """Return the caller `to_json` wrote."""
        agent = value.get("agent")
        found = AgentInfo(int(agent["id"]), str(agent.get("facility") or "")) if agent else None
        return cls(found, value.get("lang") or None)


class PaymentOption(NamedTuple):
    """An amount Pay offers: so many periods of the plan, the months they cover, and the amount."""

    periods: int
    months: int
    amount: int


class Coverage(NamedTuple):
    """A household's cover on its scheme's today, the amounts it may pay, and its active members.

    Every active member's cover is the household's (`models.coverage.eligibility.member_eligibility` differs only for
    members who left, who are not listed): the session keeps one line per member all the same.
    """

    on: date
    due: int  # to pay now (0 while covered or waiting on a funded period)
    period: int  # the household's share of one period
    choices: tuple[PaymentOption, ...]  # the first one is one period; none beyond the advance cap
    covered: bool
    until: date | None  # the last covered day, when covered
    status: str  # an `EligibilityStatus` value
    ends: date | None  # the last day of the cover held (covered or waiting)
    waiting: date | None
    next_amount: int
    next_due: date | None
    credit: int
    refusal: str | None  # a `PayRefusal` value: Pay is not offered
    valid_until: date | None  # the last day of the current run of periods, or of the last one (lapsed)
    members: tuple[str, ...]  # the active members' first names

    def to_json(self) -> dict[str, Any]:
        """Return the coverage as the session keeps it."""
        return {
            "on": self.on.isoformat(),
            "due": self.due,
            "period": self.period,
            "choices": [[choice.periods, choice.months, choice.amount] for choice in self.choices],
            "covered": self.covered,
            "until": _iso(self.until),
            "status": self.status,
            "ends": _iso(self.ends),
            "waiting": _iso(self.waiting),
            "next": self.next_amount,
            "next_due": _iso(self.next_due),
            "credit": self.credit,
            "refusal": self.refusal,
            "members": [
                {
                    "covered": self.covered,
                    "status": self.status,
                    "until": _iso(self.valid_until),
                    "waiting": _iso(self.waiting),
                    "first": first,
                }
                for first in self.members
            ],
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Coverage:
        """Return the coverage `to_json` wrote."""
        members = value.get("members") or ()
        return cls(
            on=date.fromisoformat(value["on"]),
            due=int(value["due"]),
            period=int(value.get("period") or 0),
            choices=tuple(PaymentOption(int(p), int(m), int(a)) for p, m, a in value["choices"]),
            covered=bool(value.get("covered")),
            until=_day(value.get("until")),
            status=str(value.get("status") or ""),
            ends=_day(value.get("ends")),
            waiting=_day(value.get("waiting")),
            next_amount=int(value.get("next") or 0),
            next_due=_day(value.get("next_due")),
            credit=int(value.get("credit") or 0),
            refusal=value.get("refusal") or None,
            valid_until=_day(members[0].get("until")) if members else None,
            members=tuple(member["first"] for member in members),
        )


class PaymentLine(NamedTuple):
    """One of the household's last payments."""

    paid_on: date
    amount: int
    status: str  # a `PaymentStatus` value

    def to_json(self) -> dict[str, Any]:
        """Return the payment as the session keeps it."""
        return {"date": self.paid_on.isoformat(), "amount": self.amount, "status": self.status}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> PaymentLine:
        """Return the payment `to_json` wrote."""
        return cls(date.fromisoformat(value["date"]), int(value["amount"]), str(value["status"]))


class PaymentReference(NamedTuple):
    """The outcome of the household's payment request: its reference, amount and the scheme's channels."""

    reference: str
    amount: int
    channels: tuple[tuple[str, str], ...]  # (label, account)

    def to_json(self) -> dict[str, Any]:
        """Return the outcome as the session keeps it."""
        return {"reference": self.reference, "amount": self.amount, "channels": [list(c) for c in self.channels]}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> PaymentReference:
        """Return the outcome `to_json` wrote."""
        return cls(str(value["reference"]), int(value["amount"]), _channels(value.get("channels")))


class OtherPayment(NamedTuple):
    """The outcome of a request to pay for another household: refused (`outcome`), or its reference."""

    outcome: str  # OK, LIMITED, NOT_FOUND or NOTHING (`menus.checks`)
    household_no: str
    head: str = ""
    reference: str = ""
    amount: int = 0
    currency: str = ""
    exponent: int = 0
    channels: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Return the outcome as the session keeps it (a refusal: its outcome and number only)."""
        value: dict[str, Any] = {"o": self.outcome, "no": self.household_no}
        if self.reference:
            value.update(
                head=self.head,
                reference=self.reference,
                amount=self.amount,
                currency=self.currency,
                exponent=self.exponent,
                channels=[list(c) for c in self.channels],
            )
        return value

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> OtherPayment:
        """Return the outcome `to_json` wrote."""
        return cls(
            outcome=str(value["o"]),
            household_no=str(value.get("no") or ""),
            head=str(value.get("head") or ""),
            reference=str(value.get("reference") or ""),
            amount=int(value.get("amount") or 0),
            currency=str(value.get("currency") or ""),
            exponent=int(value.get("exponent") or 0),
            channels=_channels(value.get("channels")),
        )


class CheckOutcome(NamedTuple):
    """The outcome of a member check (an agent's with a PIN, an unknown phone's with a date of birth)."""

    outcome: str  # OK, WRONG, LOCKED, INACTIVE (a `PinOutcome`), LIMITED or NOT_FOUND (`menus.checks`)
    found: bool = False
    member_no: str = ""
    first: str = ""
    year: int | None = None  # of birth, for an agent
    covered: bool = False
    status: str = ""  # an `EligibilityStatus` value
    until: date | None = None
    left: int = 0  # PIN attempts left after a wrong one
    minutes: int | None = None  # until a locked agent may try again

    def to_json(self) -> dict[str, Any]:
        """Return the outcome as it is stored (session and `effect_keys`): the keys that say something."""
        value: dict[str, Any] = {"o": self.outcome}
        if self.outcome in {"OK", "NOT_FOUND"}:
            value["found"] = self.found
        if self.member_no:
            value["no"] = self.member_no
        if self.found:
            value.update(first=self.first, covered=self.covered, status=self.status, until=_iso(self.until))
            if self.year is not None:
                value["year"] = self.year
        if self.outcome == "WRONG":
            value["left"] = self.left
        if self.minutes is not None:
            value["minutes"] = self.minutes
        return value

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> CheckOutcome:
        """Return the outcome `to_json` wrote."""
        year = value.get("year")
        minutes = value.get("minutes")
        return cls(
            outcome=str(value.get("o") or ""),
            found=bool(value.get("found")),
            member_no=str(value.get("no") or ""),
            first=str(value.get("first") or ""),
            year=int(year) if year is not None else None,
            covered=bool(value.get("covered")),
            status=str(value.get("status") or ""),
            until=_day(value.get("until")),
            left=int(value.get("left") or 0),
            minutes=int(minutes) if minutes is not None else None,
        )


def decode(key: str, value: Any) -> Any:
    """Return the record(s) a `state.data` key holds, from its JSON form (other keys' values as they are)."""
    kind, _, arg = key.partition(":")
    if kind == "households":
        return [HouseholdInfo.from_json(household) for household in value or ()]
    if kind == "caller":
        return CallerInfo.from_json(value or {})
    if kind == "coverage":
        return Coverage.from_json(value)
    if kind == "payments":
        return [PaymentLine.from_json(payment) for payment in value or ()]
    if kind == "request" and arg.isdigit() and isinstance(value, Mapping):
        return OtherPayment.from_json(value) if "o" in value else PaymentReference.from_json(value)
    if kind == "check" and arg.isdigit() and isinstance(value, Mapping):
        return CheckOutcome.from_json(value)
    return value


def record_list(kind: type[_Record], key: str, value: Any) -> list[_Record]:
    """Return a `state.data` list as the records it holds, decoding those still in their JSON form."""
    items = list(value or ())
    if all(isinstance(item, kind) for item in items):
        return items
    decoded = decode(key, items)
    if not isinstance(decoded, list) or not all(isinstance(item, kind) for item in decoded):
        raise TypeError(f"{key!r} holds no list of {kind.__name__}")
    return decoded


def record(kind: type[_Record], key: str, value: Any) -> _Record:
    """Return a `state.data` value as the record it holds, decoding it if it is still in its JSON form."""
    if isinstance(value, kind):
        return value
    decoded = decode(key, value)
    if not isinstance(decoded, kind):
        raise TypeError(f"{key!r} holds no {kind.__name__}")
    return decoded
