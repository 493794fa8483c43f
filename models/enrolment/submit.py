"""A collector's enrolment submitted: every field checked (422 names each bad one), stored once per client id.

The pinned JSON (docs/enrolment.md): `client_id`, `network`?, `commune`, `plan`?, `language`?, `subsidy_category`,
`members` (exactly one head), `sms_opt_in`?. Errors are keyed like the JSON: `members[0].date_of_birth`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.base import Language, Sex
from models.enrolment.duplicates import Candidate, Person, find_duplicates, last_name_key
from models.enrolment.tables import (
    CLIENT_ID_MAX,
    ID_NUMBER_MAX,
    Collector,
    Enrolment,
    EnrolmentMember,
    EnrolmentStatus,
    record_event,
)
from models.inputs import MIN_DATE, InputError, check_text, squash
from models.members.household import Network
from models.members.phones import normalise_phone
from models.schemes.mutuelle import commune_key
from models.schemes.scheme import Scheme

MAX_MEMBERS = 30
RELATIONSHIPS = ("head", "spouse", "child", "other")
FIELDS = frozenset({"client_id", "network", "commune", "plan", "language", "subsidy_category", "members", "sms_opt_in"})
MEMBER_FIELDS = frozenset(
    {"first_name", "last_name", "sex", "date_of_birth", "relationship", "phone", "id_number", "card_number"}
)


@dataclass
class Submitted:
    """What a submission did: the enrolment (new, or the one its client id already made), or the errors."""

    enrolment: Enrolment | None = None
    created: bool = False
    duplicates: list[Candidate] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)


def submit_enrolment(session: Session, collector: Collector, payload: Any, today: date) -> Submitted:
    """Store a collector's enrolment once per client id, with its duplicate candidates; the caller commits."""
    if not isinstance(payload, dict):
        return Submitted(errors={"(body)": "must be a JSON object"})
    try:
        client_id = check_text(payload.get("client_id"), "client_id", CLIENT_ID_MAX, required=True)
    except InputError as exc:
        return Submitted(errors={"client_id": str(exc)})
    existing = _by_client_id(session, collector.id, client_id)
    if existing is not None:
        if existing.status is EnrolmentStatus.NEEDS_CHANGES:
            return _resubmit(session, collector, existing, payload, today)
        return Submitted(existing, created=False, duplicates=[])
    reader = _Reader(session, collector, today)
    enrolment = reader.read(payload, client_id)
    if reader.errors or enrolment is None:
        return Submitted(errors=reader.errors)
    candidates = _candidates(session, enrolment)
    record_event(enrolment, f"collector:{collector.id}", "submit", None)
    try:
        with session.begin_nested():
            session.add(enrolment)
    except IntegrityError:
        # The same form sent twice at once: the first one stored is the enrolment.
        winner = _by_client_id(session, collector.id, client_id)
        if winner is None:
            raise
        return Submitted(winner, created=False)
    return Submitted(enrolment, created=True, duplicates=candidates)


def _candidates(session: Session, enrolment: Enrolment) -> list[Candidate]:
    """Find the enrolment's duplicate candidates and keep them with it (as the API shows them)."""
    people = [
        Person(m.first_name, m.last_name, m.date_of_birth, m.phone, m.id_number, m.card_number)
        for m in enrolment.members
    ]
    candidates = find_duplicates(session, enrolment.scheme_id, people, exclude_enrolment=enrolment.id)
    enrolment.duplicates = [c.as_json() for c in candidates]
    return candidates


def _resubmit(
    session: Session, collector: Collector, existing: Enrolment, payload: dict[str, Any], today: date
) -> Submitted:
    """Replace a NEEDS_CHANGES enrolment's content with the corrected form: SUBMITTED again, duplicates anew."""
    locked = session.scalar(
        select(Enrolment).where(Enrolment.id == existing.id).with_for_update().execution_options(populate_existing=True)
    )
    if locked is None or locked.status is not EnrolmentStatus.NEEDS_CHANGES:
        return Submitted(locked or existing, created=False)  # sent again meanwhile, or decided: as it is
    reader = _Reader(session, collector, today)
    corrected = reader.read(payload, locked.client_id)
    if reader.errors or corrected is None:
        return Submitted(errors=reader.errors)
    for name in ("network_id", "commune", "plan", "language", "subsidy_category", "sms_opt_in"):
        setattr(locked, name, getattr(corrected, name))
    members = list(corrected.members)
    corrected.members = []
    # The old people go first: their positions are unique per enrolment and the corrected form reuses them.
    locked.members.clear()
    session.flush()
    locked.members.extend(members)
    before = locked.status
    locked.status = EnrolmentStatus.SUBMITTED
    locked.reason = None
    locked.decided_by = None
    locked.decided_at = None
    session.flush()
    candidates = _candidates(session, locked)
    record_event(locked, f"collector:{collector.id}", "resubmit", before)
    session.flush()
    return Submitted(locked, created=False, duplicates=candidates)


def _by_client_id(session: Session, collector_id: int, client_id: str) -> Enrolment | None:
    query = select(Enrolment).where(Enrolment.collector_id == collector_id, Enrolment.client_id == client_id)
    return session.scalar(query)


class _Reader:
    """Turn the JSON into an Enrolment, recording every problem under its field's name."""

    def __init__(self, session: Session, collector: Collector, today: date) -> None:
        self.session = session
        self.collector = collector
        self.mutuelle = collector.mutuelle
        self.scheme: Scheme = collector.mutuelle.scheme
        self.today = today
        self.errors: dict[str, str] = {}

    def fail(self, name: str, problem: str) -> None:
        self.errors.setdefault(name, problem)

    def text(self, data: dict[str, Any], name: str, key: str, limit: int, *, required: bool) -> str:
        try:
            return check_text(data.get(key), key, limit, required=required)
        except InputError as exc:
            self.fail(name, str(exc))
            return ""

    def read(self, payload: dict[str, Any], client_id: str) -> Enrolment | None:
        scheme = self.scheme
        for key in sorted(set(payload) - FIELDS):
            self.fail(str(key)[:60], "unknown field")
        network_id = self.network(payload)
        commune = self.commune(payload)
        plan = self.choice(payload, "plan", [p.code for p in scheme.plans], self._default_plan())
        languages = [str(lang) for lang in scheme.languages]
        language = self.choice(payload, "language", languages, str(scheme.default_language))
        subsidy = self.choice(payload, "subsidy_category", [c.code for c in scheme.subsidy_categories], None)
        opt_in = payload.get("sms_opt_in", True)
        if not isinstance(opt_in, bool):
            self.fail("sms_opt_in", "must be true or false")
        members = self.members(payload.get("members"), subsidy)
        if self.errors:
            return None
        return Enrolment(
            collector_id=self.collector.id,
            client_id=client_id,
            scheme_id=scheme.id,
            mutuelle_id=self.mutuelle.id,
            network_id=network_id,
            commune=commune,
            plan=plan,
            language=Language(language),
            subsidy_category=subsidy,
            sms_opt_in=bool(opt_in),
            status=EnrolmentStatus.SUBMITTED,
            members=members,
        )

    def _default_plan(self) -> str:
        plans = self.scheme.plans
        return next((p.code for p in plans if p.is_default), plans[0].code if plans else "")

    def network(self, payload: dict[str, Any]) -> int | None:
        name = self.text(payload, "network", "network", 255, required=False)
        if not name:
            return self.collector.network_id
        networks = self.session.scalars(select(Network).where(Network.mutuelle_id == self.mutuelle.id))
        key = squash(name)
        found = next((n for n in networks if key in n.match_keys), None)
        if found is None:
            self.fail("network", f"{name!r} is not a network of mutuelle {self.mutuelle.code}")
            return None
        return found.id

    def commune(self, payload: dict[str, Any]) -> str:
        commune = self.text(payload, "commune", "commune", 120, required=True)
        known = [str(c) for c in self.mutuelle.communes or []]
        if commune and known:
            spelled = next((c for c in known if commune_key(c) == commune_key(commune)), None)
            if spelled is None:
                self.fail("commune", f"{commune!r} is not a commune of {self.mutuelle.code} ({', '.join(known)})")
                return commune
            return spelled
        return commune

    def choice(self, payload: dict[str, Any], key: str, allowed: list[str], default: str | None) -> str:
        value = self.text(payload, key, key, 40, required=default is None).lower()
        if key in self.errors:
            return ""
        value = value or (default or "")
        if value not in allowed:
            self.fail(key, f"{value!r} is not one of {', '.join(allowed)}")
        return value

    def members(self, raw: Any, subsidy: str) -> list[EnrolmentMember]:
        if not isinstance(raw, list) or not raw:
            self.fail("members", "must list the household's members (at least the head)")
            return []
        if len(raw) > MAX_MEMBERS:
            self.fail("members", f"at most {MAX_MEMBERS} members")
            return []
        members = [self.member(index, item) for index, item in enumerate(raw)]
        heads = [i for i, m in enumerate(members) if m is not None and m.relationship_to_head == "head"]
        relationships = [item.get("relationship") for item in raw if isinstance(item, dict)]
        if relationships.count("head") != 1:
            self.fail("members", f'exactly one member must be the head (relationship "head"), not {len(heads)}')
        if len(heads) == 1:
            index = heads[0]
            head = members[index]
            assert head is not None
            for name in self.scheme.enrolment_required or []:
                if not getattr(head, str(name)):
                    self.fail(f"members[{index}].{name}", f"required for the head of household by {self.scheme.code}")
            if subsidy in (self.scheme.enrolment_card_categories or []) and not head.card_number:
                self.fail(f"members[{index}].card_number", f"required for the head of a {subsidy} household")
        return [m for m in members if m is not None]

    def member(self, index: int, item: Any, at: str | None = None) -> EnrolmentMember | None:
        at = at or f"members[{index}]"  # a household change's added member is `changes[i].member`
        if not isinstance(item, dict):
            self.fail(at, "must be an object")
            return None
        before = len(self.errors)
        for key in sorted(set(item) - MEMBER_FIELDS):
            self.fail(f"{at}.{str(key)[:60]}", "unknown field")
        first = self.text(item, f"{at}.first_name", "first_name", 120, required=True)
        last = self.text(item, f"{at}.last_name", "last_name", 120, required=True)
        sex = item.get("sex")
        if sex not in ("F", "M"):
            self.fail(f"{at}.sex", 'must be "F" or "M"')
        born = self.birth(item, at)
        relationship = item.get("relationship")
        if relationship not in RELATIONSHIPS:
            self.fail(f"{at}.relationship", f"must be one of {', '.join(RELATIONSHIPS)}")
        phone = self.phone(item, at)
        id_number = self.number(item, at, "id_number")
        card_number = self.number(item, at, "card_number")
        if len(self.errors) > before or born is None:
            return None
        return EnrolmentMember(
            position=index,
            first_name=first,
            last_name=last,
            sex=Sex(str(sex)),
            date_of_birth=born,
            relationship_to_head=str(relationship),
            phone=phone,
            id_number=id_number,
            card_number=card_number,
            last_name_key=last_name_key(last),
        )

    def past_day(self, raw: Any, name: str) -> date | None:
        """Return a `YYYY-MM-DD` field not after today, or None with the field's error recorded."""
        if not isinstance(raw, str) or len(raw) != 10 or not raw.isascii():
            self.fail(name, "required, a date YYYY-MM-DD")
            return None
        try:
            day = date.fromisoformat(raw)
        except ValueError:
            self.fail(name, f"not a date YYYY-MM-DD: {raw!r}")
            return None
        if day > self.today:
            self.fail(name, "is in the future")
            return None
        return day

    def birth(self, item: dict[str, Any], at: str) -> date | None:
        name = f"{at}.date_of_birth"
        born = self.past_day(item.get("date_of_birth"), name)
        if born is None:
            return None
        if born < MIN_DATE:
            self.fail(name, f"is before {MIN_DATE.isoformat()}")
        return born

    def phone(self, item: dict[str, Any], at: str) -> str | None:
        text = self.text(item, f"{at}.phone", "phone", 40, required=False)
        if not text:
            return None
        try:
            return normalise_phone(text, self.scheme.country)
        except ValueError as exc:
            self.fail(f"{at}.phone", str(exc))
            return None

    def number(self, item: dict[str, Any], at: str, key: str) -> str | None:
        text = self.text(item, f"{at}.{key}", key, ID_NUMBER_MAX, required=False)
        if not text:
            return None
        number = squash(text)
        if not number:
            self.fail(f"{at}.{key}", "needs letters or digits")
            return None
        return number
