"""Duplicate detection: the members and pending enrolments an enrolled person may already be, ranked, with why.

Candidates come from SQL first, by what a duplicate shares exactly — the date of birth (also with day and month
swapped), the phone, an ID or card number, the last name — within the scheme, so the cost is that of a few index
lookups, never a scan of every member. Names are then compared fuzzily (rapidfuzz) once folded: no accents, case,
punctuation or doubled letters, and the common spellings of the same sound written alike (Ndiaye / N'Diaye /
Ndiay, Mamadou / Mamadu, Cheikh / Cheick).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from rapidfuzz import fuzz
from sqlalchemy import ColumnElement, false, func, or_, select
from sqlalchemy.orm import Session

from models.enrolment.tables import Enrolment, EnrolmentMember, EnrolmentStatus
from models.members.household import Household, Member

MAX_CANDIDATES = 10
SQL_ROWS = 500  # candidates read per source: far more than any real household's look-alikes
SHOWN_FROM = 60  # a candidate scoring less is not shown (an identical name alone scores 45)
NAME_WEIGHT = 0.45
SIGNALS = {"card": 40, "id": 40, "dob": 25, "dob_swapped": 20, "phone": 15}
# Spellings of one sound, folded to one (applied in order, on upper-case ASCII).
_FOLDS = (
    ("TCH", "C"),
    ("OU", "U"),
    ("PH", "F"),
    ("CK", "K"),
    ("KH", "K"),
    ("Q", "K"),
    ("DJ", "J"),
    ("SH", "S"),
    ("CH", "S"),
    ("EE", "E"),
    ("Y", "I"),
)
_DOUBLED = re.compile(r"([A-Z])\1+")
_NON_WORD = re.compile(r"[^A-Z0-9 ]+")


def name_key(text: str) -> str:
    """Return a name folded for comparison: words in upper-case ASCII, common spellings alike, no doubled letters."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).upper()
    plain = plain.replace("'", "").replace("\u2019", "")
    words = []
    for word in _NON_WORD.sub(" ", plain).split():
        for old, new in _FOLDS:
            word = word.replace(old, new)
        words.append(_DOUBLED.sub(r"\1", word))
    return " ".join(words)


def last_name_key(last_name: str) -> str:
    """Return the folded last name, without spaces, as enrolments store it to find look-alikes by."""
    return name_key(last_name).replace(" ", "")[:120]


def swapped(day: date) -> date | None:
    """Return the date with day and month swapped (a common typing slip), or None when that is no other date."""
    if day.day == day.month or day.day > 12:
        return None
    return day.replace(month=day.day, day=day.month)


@dataclass(frozen=True)
class Person:
    """What duplicates are looked for by: an enrolled person's name, date of birth, phone and numbers."""

    first_name: str
    last_name: str
    date_of_birth: date | None
    phone: str | None = None
    id_number: str | None = None
    card_number: str | None = None


@dataclass(frozen=True)
class Candidate:
    """Someone an enrolled person may already be: a member (by number) or a pending enrolment, scored, with why."""

    member: int  # the position of the enrolled person it resembles
    score: int
    why: str
    member_no: str | None = None
    enrolment_id: int | None = None

    def as_json(self) -> dict[str, Any]:
        """Return the candidate as the API shows it."""
        found: dict[str, Any] = (
            {"member_no": self.member_no} if self.member_no is not None else {"enrolment_id": self.enrolment_id}
        )
        return {**found, "score": self.score, "why": self.why, "member": f"members[{self.member}]"}


def compare(person: Person, other: Person) -> tuple[int, list[str]]:
    """Return how much two people look like one (0-100) and the reasons, strongest first."""
    reasons: list[tuple[int, str]] = []
    if person.card_number and person.card_number == other.card_number:
        reasons.append((SIGNALS["card"], "same card number"))
    if person.id_number and person.id_number == other.id_number:
        reasons.append((SIGNALS["id"], "same ID number"))
    if person.date_of_birth and other.date_of_birth:
        if person.date_of_birth == other.date_of_birth:
            reasons.append((SIGNALS["dob"], "same date of birth"))
        elif swapped(person.date_of_birth) == other.date_of_birth:
            reasons.append((SIGNALS["dob_swapped"], "date of birth with day and month swapped"))
    if person.phone and person.phone == other.phone:
        reasons.append((SIGNALS["phone"], "same phone"))
    mine = name_key(f"{person.first_name} {person.last_name}")
    theirs = name_key(f"{other.first_name} {other.last_name}")
    alike = max(fuzz.token_sort_ratio(mine, theirs), fuzz.ratio(mine.replace(" ", ""), theirs.replace(" ", "")))
    score = round(NAME_WEIGHT * alike) + sum(points for points, _ in reasons)
    why = [f"name {round(alike)}% alike", *(text for _, text in sorted(reasons, key=lambda r: -r[0]))]
    return min(score, 100), why


def find_duplicates(
    session: Session, scheme_id: int, people: Sequence[Person], exclude_enrolment: int | None = None
) -> list[Candidate]:
    """Return the members and pending enrolments of the scheme the people may already be, best first."""
    dates = {d for p in people if p.date_of_birth for d in (p.date_of_birth, swapped(p.date_of_birth)) if d}
    phones = {p.phone for p in people if p.phone}
    lowered = {p.last_name.lower() for p in people} | {_ascii(p.last_name).lower() for p in people}
    keys = {last_name_key(p.last_name) for p in people}
    ids = {p.id_number for p in people if p.id_number}
    cards = {p.card_number for p in people if p.card_number}

    found: dict[tuple[str, Any], Candidate] = {}

    def consider(key: tuple[str, Any], other: Person, member_no: str | None, enrolment_id: int | None) -> None:
        for index, person in enumerate(people):
            score, why = compare(person, other)
            strong = ("same card number" in why) or ("same ID number" in why)
            if score < SHOWN_FROM and not strong:
                continue
            best = found.get(key)
            if best is None or score > best.score:
                found[key] = Candidate(index, score, "; ".join(why), member_no, enrolment_id)

    members = session.execute(
        select(Member.member_no, Member.first_name, Member.last_name, Member.date_of_birth, Member.phone)
        .join(Household, Household.id == Member.household_id)
        .where(
            Household.scheme_id == scheme_id,
            or_(
                _among(Member.date_of_birth, dates),
                _among(Member.phone, phones),
                _among(func.lower(Member.last_name), lowered),
            ),
        )
        .limit(SQL_ROWS)
    )
    for member_no, first, last, born, phone in members:
        consider(("member", member_no), Person(first, last, born, phone), member_no, None)

    # Enrolments: pending ones by anything they share; validated ones by their ID and card numbers, which members
    # do not keep (the candidate is then the member the enrolment became).
    pending = Enrolment.status.in_((EnrolmentStatus.SUBMITTED, EnrolmentStatus.NEEDS_CHANGES))
    enrolled = session.execute(
        select(
            Enrolment.id,
            Enrolment.status,
            EnrolmentMember.member_no,
            EnrolmentMember.first_name,
            EnrolmentMember.last_name,
            EnrolmentMember.date_of_birth,
            EnrolmentMember.phone,
            EnrolmentMember.id_number,
            EnrolmentMember.card_number,
        )
        .join(Enrolment, Enrolment.id == EnrolmentMember.enrolment_id)
        .where(
            Enrolment.scheme_id == scheme_id,
            Enrolment.id != (exclude_enrolment or 0),
            or_(
                _among(EnrolmentMember.id_number, ids),
                _among(EnrolmentMember.card_number, cards),
                pending
                & or_(
                    _among(EnrolmentMember.date_of_birth, dates),
                    _among(EnrolmentMember.phone, phones),
                    _among(EnrolmentMember.last_name_key, keys),
                ),
            ),
        )
        .limit(SQL_ROWS)
    )
    for enrolment_id, status, member_no, first, last, born, phone, id_number, card in enrolled:
        other = Person(first, last, born, phone, id_number, card)
        if status == EnrolmentStatus.VALIDATED and member_no:
            consider(("member", member_no), other, member_no, None)
        elif status != EnrolmentStatus.REJECTED:
            consider(("enrolment", enrolment_id), other, None, enrolment_id)
    ranked = sorted(found.values(), key=lambda c: (-c.score, c.member_no or "", c.enrolment_id or 0))
    return ranked[:MAX_CANDIDATES]


def _among(column: Any, values: set[Any]) -> ColumnElement[bool]:
    return column.in_(sorted(values)) if values else false()


def _ascii(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
