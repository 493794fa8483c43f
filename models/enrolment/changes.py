"""Household changes through the enrolment flow: add a member, mark one left or deceased, change a phone.

A change is an enrolment of kind `change` (a `HouseholdChange` row beside it): the same status machine
(`SUBMITTED → VALIDATED | REJECTED | NEEDS_CHANGES`), audit trail, idempotency by client id, 422 field errors and
duplicate candidates (for an added member) as a new household's enrolment. The pinned JSON (docs/enrolment.md):
`{"client_id", "household_no", "changes": [{"action": "add_member", "member": {…}} | {"action": "member_left" |
"member_deceased", "member_no", "on"} | {"action": "phone", "member_no", "phone"}]}`.

Validating applies every change in the caller's transaction and queues the head's confirmation SMS. The premium
follows from the next period: periods already bought are never charged again nor refunded, and the next period's
price counts the members active then (`models.coverage.premiums.period_price`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.base import HouseholdStatus, MemberStatus, utcnow
from models.coverage.premiums import is_fully_subsidised, period_price
from models.enrolment.collectors import hash_collector_key
from models.enrolment.duplicates import Candidate, Person, find_duplicates
from models.enrolment.numbering import member_number
from models.enrolment.submit import Submitted, _Reader, submit_enrolment
from models.enrolment.tables import (
    CLIENT_ID_MAX,
    ChangeAction,
    Collector,
    Enrolment,
    EnrolmentMember,
    EnrolmentStatus,
    HouseholdChange,
    record_event,
)
from models.inputs import InputError, check_text
from models.members.household import Household, Member, is_active_member
from models.messaging.outbox import send_sms
from models.schemes.amounts import Amount
from models.schemes.mutuelle import Mutuelle

MAX_CHANGES = 30
CHANGE_FIELDS = frozenset({"client_id", "household_no", "changes"})
ACTION_FIELDS: dict[ChangeAction, frozenset[str]] = {
    ChangeAction.ADD_MEMBER: frozenset({"action", "member"}),
    ChangeAction.MEMBER_LEFT: frozenset({"action", "member_no", "on"}),
    ChangeAction.MEMBER_DECEASED: frozenset({"action", "member_no", "on"}),
    ChangeAction.PHONE: frozenset({"action", "member_no", "phone"}),
}
GONE = {ChangeAction.MEMBER_LEFT: MemberStatus.LEFT, ChangeAction.MEMBER_DECEASED: MemberStatus.DECEASED}
STAFF_COLLECTOR = "staff"  # the collector a mutuelle's changes submitted by staff (CLI) are filed under


class ChangeError(ValueError):
    """A household change can no longer be applied as submitted (the household changed since); says why."""


@dataclass(frozen=True)
class Applied:
    """A validated change: the household changed, the numbers of its new members, and whether the head was told."""

    household: Household
    added: list[str]
    confirmed: bool


def submit_form(session: Session, collector: Collector, payload: Any, today: date) -> Submitted:
    """Store a collector's form: a change when it names a `household_no`, else a new household's enrolment."""
    if isinstance(payload, dict) and "household_no" in payload:
        return submit_change(session, collector, payload, today)
    return submit_enrolment(session, collector, payload, today)


def submit_change(
    session: Session, collector: Collector, payload: Any, today: date, actor: str | None = None
) -> Submitted:
    """Store a change to one of the collector's mutuelle's households once per client id; the caller commits.

    `actor`: who submitted it for the audit trail (default the collector).
    """
    if not isinstance(payload, dict):
        return Submitted(errors={"(body)": "must be a JSON object"})
    try:
        client_id = check_text(payload.get("client_id"), "client_id", CLIENT_ID_MAX, required=True)
    except InputError as exc:
        return Submitted(errors={"client_id": str(exc)})
    existing = _by_client_id(session, collector.id, client_id)
    if existing is not None:
        if existing.status is EnrolmentStatus.NEEDS_CHANGES and existing.change is not None:
            return _resubmit_change(session, collector, existing, payload, today, actor)
        return Submitted(existing, created=False)
    reader = _ChangeReader(session, collector, today)
    enrolment = reader.read_change(payload, client_id)
    if reader.errors or enrolment is None:
        return Submitted(errors=reader.errors)
    candidates = _change_candidates(session, enrolment)
    assert enrolment.change is not None
    household_no = enrolment.change.household.household_no
    record_event(enrolment, actor or f"collector:{collector.id}", "submit", None, f"change of {household_no}")
    try:
        with session.begin_nested():
            session.add(enrolment)
    except IntegrityError:
        winner = _by_client_id(session, collector.id, client_id)
        if winner is None:
            raise
        return Submitted(winner, created=False)
    return Submitted(enrolment, created=True, duplicates=candidates)


def _change_candidates(session: Session, enrolment: Enrolment, exclude: int | None = None) -> list[Candidate]:
    """Find the duplicate candidates of a change's added members and keep them with it (as the API shows them)."""
    people = [
        Person(m.first_name, m.last_name, m.date_of_birth, m.phone, m.id_number, m.card_number)
        for m in enrolment.members
    ]
    candidates = find_duplicates(session, enrolment.scheme_id, people, exclude_enrolment=exclude) if people else []
    positions = [m.position for m in enrolment.members]
    enrolment.duplicates = [change_candidate_json(c, positions) for c in candidates]
    return candidates


def _resubmit_change(
    session: Session,
    collector: Collector,
    existing: Enrolment,
    payload: dict[str, Any],
    today: date,
    actor: str | None,
) -> Submitted:
    """Replace a NEEDS_CHANGES change's content with the corrected form: SUBMITTED again, candidates anew."""
    locked = session.scalar(
        select(Enrolment).where(Enrolment.id == existing.id).with_for_update().execution_options(populate_existing=True)
    )
    if locked is None or locked.status is not EnrolmentStatus.NEEDS_CHANGES or locked.change is None:
        return Submitted(locked or existing, created=False)  # sent again meanwhile, or decided: as it is
    reader = _ChangeReader(session, collector, today)
    corrected = reader.read_change(payload, locked.client_id)
    if reader.errors or corrected is None or corrected.change is None:
        return Submitted(errors=reader.errors)
    locked.change.household_id = corrected.change.household.id
    locked.change.changes = corrected.change.changes
    members = list(corrected.members)
    corrected.members = []
    corrected.change = None
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
    candidates = _change_candidates(session, locked, exclude=locked.id)
    record_event(locked, actor or f"collector:{collector.id}", "resubmit", before)
    session.flush()
    return Submitted(locked, created=False, duplicates=candidates)


def change_candidate_json(candidate: Candidate, positions: list[int]) -> dict[str, Any]:
    """Return a duplicate candidate as the API shows it for a change: `member` names the added member's change."""
    return {**candidate.as_json(), "member": f"changes[{positions[candidate.member]}].member"}


def member_label(enrolment: Enrolment, person: EnrolmentMember) -> str:
    """Return where an enrolled person was in the submitted JSON: `members[i]`, or `changes[i].member`."""
    return f"changes[{person.position}].member" if enrolment.change is not None else f"members[{person.position}]"


def changed_household(enrolment: Enrolment) -> Household | None:
    """Return the household an enrolment made (once validated) or changes (kind `change`)."""
    return enrolment.change.household if enrolment.change is not None else enrolment.household


def describe_change(item: dict[str, Any], enrolment: Enrolment) -> str:
    """Return one change in a line staff read: `add_member Awa Sow (child, 2026-11-02) → SN-…-04`."""
    action = ChangeAction(item["action"])
    if action is ChangeAction.ADD_MEMBER:
        person = next(m for m in enrolment.members if m.position == item["position"])
        number = f" → {person.member_no}" if person.member_no else ""
        return (
            f"{action.value} {person.first_name} {person.last_name} ({person.relationship_to_head}, "
            f"{person.date_of_birth.isoformat()}){number}"
        )
    if action is ChangeAction.PHONE:
        return f"{action.value} {item['member_no']} {item['phone']}"
    return f"{action.value} {item['member_no']} on {item['on']}"


def staff_collector(session: Session, mutuelle: Mutuelle) -> Collector:
    """Return the mutuelle's staff collector, created on first use: inactive, its key never shown, so never used."""
    found = session.scalar(
        select(Collector).where(
            Collector.mutuelle_id == mutuelle.id, Collector.name == STAFF_COLLECTOR, Collector.active.is_(False)
        )
    )
    if found is not None:
        return found
    unusable = secrets.token_urlsafe(32)
    collector = Collector(
        name=STAFF_COLLECTOR,
        mutuelle_id=mutuelle.id,
        key_hash=hash_collector_key(unusable),
        key_prefix="staff",
        active=False,
    )
    session.add(collector)
    session.flush()
    return collector


def find_household_no(session: Session, number: str) -> Household | None:
    """Return the household of a household number (any case), or None."""
    return session.scalar(select(Household).where(func.upper(Household.household_no) == number.strip().upper()))


def _by_client_id(session: Session, collector_id: int, client_id: str) -> Enrolment | None:
    query = select(Enrolment).where(Enrolment.collector_id == collector_id, Enrolment.client_id == client_id)
    return session.scalar(query)


class _ChangeReader(_Reader):
    """Turn a change's JSON into an enrolment of kind `change`, naming every problem by its field."""

    def read_change(self, payload: dict[str, Any], client_id: str) -> Enrolment | None:
        for key in sorted(set(payload) - CHANGE_FIELDS):
            self.fail(str(key)[:60], "unknown field")
        household = self.household(payload)
        raw = payload.get("changes")
        if not isinstance(raw, list) or not raw:
            self.fail("changes", "must list the changes (at least one)")
            raw = []
        elif len(raw) > MAX_CHANGES:
            self.fail("changes", f"at most {MAX_CHANGES} changes")
            raw = []
        members: list[EnrolmentMember] = []
        items: list[dict[str, Any]] = []
        seen: dict[str, int] = {}
        for index, item in enumerate(raw):
            read = self.change(index, item, household, seen)
            if isinstance(read, EnrolmentMember):
                members.append(read)
                items.append({"action": ChangeAction.ADD_MEMBER.value, "position": index})
            elif read is not None:
                items.append(read)
        if self.errors or household is None:
            return None
        return Enrolment(
            collector_id=self.collector.id,
            client_id=client_id,
            scheme_id=household.scheme_id,
            mutuelle_id=household.mutuelle_id,
            network_id=household.network_id,
            commune=household.commune or "",
            plan=household.plan,
            language=household.language,
            subsidy_category=household.subsidy_category,
            sms_opt_in=household.sms_opt_in,
            status=EnrolmentStatus.SUBMITTED,
            members=members,
            change=HouseholdChange(household=household, changes=items),
        )

    def household(self, payload: dict[str, Any]) -> Household | None:
        number = self.text(payload, "household_no", "household_no", 40, required=True)
        if not number:
            return None
        household = find_household_no(self.session, number)
        # Another mutuelle's household reads exactly like no household: its existence is not the collector's.
        if household is None or household.mutuelle_id != self.mutuelle.id:
            self.fail("household_no", f"no household {number!r} in mutuelle {self.mutuelle.code}")
            return None
        if household.status is HouseholdStatus.CLOSED:
            self.fail("household_no", f"household {household.household_no} is closed")
            return None
        return household

    def change(
        self, index: int, item: Any, household: Household | None, seen: dict[str, int]
    ) -> EnrolmentMember | dict[str, Any] | None:
        at = f"changes[{index}]"
        if not isinstance(item, dict):
            self.fail(at, "must be an object")
            return None
        try:
            action = ChangeAction(str(item.get("action")))
        except ValueError:
            self.fail(f"{at}.action", f"must be one of {', '.join(a.value for a in ChangeAction)}")
            return None
        for key in sorted(set(item) - ACTION_FIELDS[action]):
            self.fail(f"{at}.{str(key)[:60]}", "unknown field")
        if action is ChangeAction.ADD_MEMBER:
            member = self.member(index, item.get("member"), f"{at}.member")
            if member is not None and member.relationship_to_head == "head":
                self.fail(f"{at}.member.relationship", "the household has a head: spouse, child or other")
                return None
            return member
        target = self.target(item, at, household, seen, index)
        if action is ChangeAction.PHONE:
            phone = self.phone(item, at)
            if phone is None and f"{at}.phone" not in self.errors:
                self.fail(f"{at}.phone", "required, the member's new phone")
            if target is None or phone is None:
                return None
            return {"action": action.value, "position": index, "member_no": target.member_no, "phone": phone}
        on = self.day(item, f"{at}.on", target)
        if target is None or on is None:
            return None
        return {"action": action.value, "position": index, "member_no": target.member_no, "on": on.isoformat()}

    def target(
        self, item: dict[str, Any], at: str, household: Household | None, seen: dict[str, int], index: int
    ) -> Member | None:
        name = f"{at}.member_no"
        number = self.text(item, name, "member_no", 44, required=True).upper()
        if not number or household is None:
            return None
        member = next((m for m in household.members if m.member_no.upper() == number), None)
        if member is None:
            self.fail(name, f"{number!r} is not a member of household {household.household_no}")
            return None
        if not is_active_member(member.status, member.left_on, self.today):
            self.fail(name, f"{member.member_no} is no longer in the household ({member.status.value})")
            return None
        if number in seen:
            self.fail(name, f"{member.member_no} is already changed by changes[{seen[number]}]: one change a member")
            return None
        seen[number] = index
        return member

    def day(self, item: dict[str, Any], name: str, member: Member | None) -> date | None:
        on = self.past_day(item.get("on"), name)
        if on is None:
            return None
        if member is not None and on < member.joined_on:
            self.fail(name, f"is before {member.member_no} joined ({member.joined_on.isoformat()})")
            return None
        return on


def apply_change(session: Session, enrolment: Enrolment, actor: str, today: date, ussd_code: str) -> Applied:
    """Apply a submitted change to its household, mark it validated and queue the head's confirmation SMS.

    Every change is checked against the household as it is now before any is applied (ChangeError: nothing
    written). The caller holds the enrolment's lock and commits.
    """
    change = enrolment.change
    assert change is not None
    household = change.household
    members = {m.member_no.upper(): m for m in household.members}
    for item in change.changes:
        if item["action"] == ChangeAction.ADD_MEMBER.value:
            continue
        member = members.get(str(item["member_no"]).upper())
        if member is None or not is_active_member(member.status, member.left_on, today):
            raise ChangeError(f"{item['member_no']} is no longer in household {household.household_no}")
    added: list[str] = []
    index = next_member_index(household)
    people = {m.position: m for m in enrolment.members}
    for item in change.changes:
        action = ChangeAction(item["action"])
        if action is ChangeAction.ADD_MEMBER:
            person = people[int(item["position"])]
            number, index = _free_member_number(session, household.household_no, index)
            person.member_no = number
            session.add(
                Member(
                    member_no=number,
                    household_id=household.id,
                    last_name=person.last_name,
                    first_name=person.first_name,
                    sex=person.sex,
                    date_of_birth=person.date_of_birth,
                    relationship_to_head=person.relationship_to_head,
                    phone=person.phone,
                    status=MemberStatus.ACTIVE,
                    joined_on=today,
                )
            )
            added.append(number)
            index += 1
            continue
        member = members[str(item["member_no"]).upper()]
        if action is ChangeAction.PHONE:
            member.phone = str(item["phone"])
        else:
            member.status = GONE[action]
            # `on` is the member's last day in the household; `left_on` is the first day away.
            member.left_on = date.fromisoformat(str(item["on"])) + timedelta(days=1)
    session.flush()
    session.expire(household, ["members"])
    before = enrolment.status
    enrolment.status = EnrolmentStatus.VALIDATED
    enrolment.reason = None
    enrolment.decided_by = actor[:80]
    enrolment.decided_at = utcnow()
    record_event(enrolment, actor, "validate", before, f"change of {household.household_no}")
    confirmed = queue_change_confirmation(session, enrolment, household, today, ussd_code)
    session.flush()
    return Applied(household, added, confirmed)


def next_member_index(household: Household) -> int:
    """Return the `NN` after the household's highest member number `<household_no>-NN`."""
    prefix = f"{household.household_no.upper()}-"
    taken = [
        int(m.member_no[len(prefix) :])
        for m in household.members
        if m.member_no.upper().startswith(prefix) and m.member_no[len(prefix) :].isdigit()
    ]
    return max(taken, default=0) + 1


def _free_member_number(session: Session, household_no: str, index: int) -> tuple[str, int]:
    """Return the first member number from `index` no member has (numbers are unique across households)."""
    while True:
        number = member_number(household_no, index)
        if session.scalar(select(Member.id).where(func.upper(Member.member_no) == number.upper())) is None:
            return number, index
        index += 1


def queue_change_confirmation(
    session: Session, enrolment: Enrolment, household: Household, today: date, ussd_code: str
) -> bool:
    """Queue the head's SMS confirming the change and the next period's price; False when there is no one to tell."""
    head = household.head
    if head is None or not head.phone or not household.sms_opt_in:
        return False
    if not is_active_member(head.status, head.left_on, today):
        return False
    key = f"change:{enrolment.id}"
    if is_fully_subsidised(household):
        send_sms(
            session,
            head.phone,
            "household_changed_subsidised",
            household=household,
            dedupe_key=key,
            household_no=household.household_no,
            ussd_code=ussd_code,
        )
        return True
    scheme = household.scheme
    price = period_price(session, household, today)
    send_sms(
        session,
        head.phone,
        "household_changed",
        household=household,
        dedupe_key=key,
        household_no=household.household_no,
        ussd_code=ussd_code,
        next=Amount(price.household_share, scheme.currency, scheme.currency_exponent),
    )
    return True
