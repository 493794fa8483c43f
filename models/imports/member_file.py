"""Read an enrolment export in two streaming passes, so an import's memory does not grow with the file.

Pass 1 (`check_file`) checks every line and keeps, per household, only compact keys for the checks that span lines:
its first line, a hash of its household columns, its scheme, its head's and its members' two-digit numbers (bits).
The last few thousand households also keep their first row and member lines, so a file written household by
household names a differing column or a duplicate's first line at once; anything older is looked up by reading the
file once more, only when there is such an error. Pass 2 (`households_of`) reads the file again and yields the
households, each whole, in the order they first appear: straight from the file when each household's lines are
together (an export's usual shape), else through bucket files that each hold a bounded share of the households.
"""

from __future__ import annotations

import csv
import re
import tempfile
import unicodedata
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, TextIO

from models.base import MemberStatus, Sex
from models.members.phones import normalise_phone
from models.schemes.mutuelle import Mutuelle, mutuelle_for_commune

if TYPE_CHECKING:
    from _csv import Reader, Writer

REQUIRED_COLUMNS = (
    "household_no",
    "scheme",
    "commune",
    "network",
    "subsidy_category",
    "language",
    "head_member_no",
    "member_no",
    "last_name",
    "first_name",
    "sex",
    "date_of_birth",
    "relationship",
    "phone",
    "joined_on",
    "sms_opt_in",
)
OPTIONAL_COLUMNS = ("status", "plan", "paid_until", "network_phone", "mutuelle")
# Columns describing the household: every row of a household must agree on them.
HOUSEHOLD_COLUMNS = (
    "scheme",
    "mutuelle",
    "commune",
    "network",
    "subsidy_category",
    "language",
    "head_member_no",
    "sms_opt_in",
)
_AGREEING_COLUMNS = (*HOUSEHOLD_COLUMNS, "plan")
PROGRESS_EVERY_ROWS = 50_000
MAX_KEPT_ERRORS = 10_000  # errors kept with their text; beyond, only counted
RECENT_HOUSEHOLDS = 4_096  # households whose first row and member lines stay at hand
PHONE_CACHE = 4_096  # phones (a household's lines often repeat the head's) and communes looked up once
BUCKET_ROWS = 50_000  # rows per bucket file when a file's households are scattered

_HOUSEHOLD_NO = re.compile(r"[A-Z0-9][A-Z0-9/_.-]{0,39}")
_MEMBER_SUFFIX = re.compile(r"-\d{2}")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_YES = {"yes", "y", "true", "1", "oui", "o", "waaw"}
_NO = {"no", "n", "false", "0", "non", "deedeet"}
_MASK_BYTES = 13  # one bit per member number 00…99
_NO_HEAD, _ODD_HEAD = 0, 255
_UNKNOWN_LINE = 0  # a first occurrence older than the recent households: read the file again

Progress = Callable[[str, int, int | None], None]


class ImportFileError(ValueError):
    """The file cannot be imported at all (unreadable, unknown scheme); the message says why."""


@dataclass(frozen=True)
class RowError:
    """One problem in the file: line (the header is line 1), column and reason."""

    line: int
    column: str
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}, {self.column}: {self.reason}"


@dataclass
class ImportReport:
    """What an import did, or would do (dry run), or why it did nothing (errors)."""

    rows: int = 0
    members_created: int = 0
    members_updated: int = 0
    members_unchanged: int = 0
    households_created: int = 0
    households_updated: int = 0
    households_unchanged: int = 0
    networks_created: int = 0
    accounts_created: int = 0
    subsidised_periods_booked: int = 0
    prior_cover_booked: int = 0
    dry_run: bool = False
    errors: list[RowError] = field(default_factory=list)  # the first MAX_KEPT_ERRORS, by line
    more_errors: int = 0  # found beyond those kept

    @property
    def ok(self) -> bool:
        """Return whether the file had no errors."""
        return not self.errors and not self.more_errors

    @property
    def error_count(self) -> int:
        """Return how many errors were found, kept or not."""
        return len(self.errors) + self.more_errors

    def add_error(self, error: RowError) -> bool:
        """Keep an error (or only count it past MAX_KEPT_ERRORS); return whether it was kept."""
        if len(self.errors) < MAX_KEPT_ERRORS:
            self.errors.append(error)
            return True
        self.more_errors += 1
        return False

    def summary(self) -> str:
        """Return the one-line member count summary ("N created, N updated, N unchanged")."""
        return f"{self.members_created} created, {self.members_updated} updated, {self.members_unchanged} unchanged"

    def details(self) -> str:
        """Return the household, network and account counts."""
        return (
            f"households: {self.households_created} created, {self.households_updated} updated, "
            f"{self.households_unchanged} unchanged; networks: {self.networks_created} created; "
            f"accounts: {self.accounts_created} created; "
            f"funder-paid periods booked from enrolment: {self.subsidised_periods_booked}; "
            f"prior cover booked (paid_until): {self.prior_cover_booked}"
        )


@dataclass(frozen=True)
class SchemeInfo:
    """What the import needs of a scheme, read once."""

    id: int
    code: str
    country: str
    currency: str
    languages: frozenset[str]
    default_language: str
    subsidies: frozenset[str]
    plans: frozenset[str]
    default_plan: str
    mutuelles: tuple[Mutuelle, ...] = ()

    def mutuelle(self, code: str, commune: str | None) -> Mutuelle | str:
        """Return the mutuelle the file names, else its commune's, else the only one; or say why there is none."""
        if code:
            found = next((m for m in self.mutuelles if m.code.upper() == code.upper()), None)
            known = ", ".join(m.code for m in self.mutuelles)
            return found if found is not None else f"{code!r} is not a mutuelle of {self.code} ({known})"
        found = mutuelle_for_commune(self.mutuelles, commune)
        if found is None:
            known = ", ".join(m.code for m in self.mutuelles) or "none"
            return (
                f"no mutuelle of {self.code} lists commune {commune!r}: add a mutuelle column "
                f"({known}) or list the commune in the scheme file"
            )
        return found


@dataclass(slots=True)
class MemberRow:
    """A member as one line of the file gives it."""

    line: int
    member_no: str
    last_name: str
    first_name: str
    sex: Sex
    date_of_birth: date | None
    relationship: str
    phone: str | None
    status: MemberStatus
    joined_on: date


@dataclass(slots=True)
class HouseholdRow:
    """A household as its first line gives it, with the members of all its lines."""

    household_no: str
    line: int
    scheme: SchemeInfo | None
    commune: str | None
    network_name: str | None
    subsidy_category: str
    language: str
    head_member_no: str
    sms_opt_in: bool
    plan: str
    mutuelle_id: int = 0
    network_phone: str | None = None  # the network's contact (treasurer), E.164
    members: list[MemberRow] = field(default_factory=list)
    paid_until: date | None = None  # prior cover on migration: the last day already paid for
    network_id: int | None = None  # a network already known (an enrolment's), instead of one named in the file


@dataclass(frozen=True)
class NetworkWant:
    """A network the file names: the first household naming it (per scheme and code)."""

    line: int
    name: str
    mutuelle_id: int
    commune: str | None
    currency: str


def slugify(name: str) -> str:
    """Return the code of a network name: ASCII lower-case words joined by dashes."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:60]


def _own_number(member_no: str) -> tuple[str, int] | None:
    """Return (household number, NN) of a member number `<household>-NN` with ASCII digits, else None."""
    if len(member_no) > 3 and member_no[-3] == "-" and member_no[-2:].isascii() and member_no[-2:].isdigit():
        return member_no[:-3], int(member_no[-2:])
    return None


@dataclass(slots=True)
class _Recent:
    raw: tuple[str, ...]
    member_lines: dict[str, int]


class _HouseholdKeys:
    """The compact keys pass 1 keeps per household, indexed by the order households first appear."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.first_line = array("i")
        self.raw_hash = array("q")
        self.scheme = array("h")  # -1: no household (its first line was bad); else 1 + ordinal or 0 for none
        self.head = bytearray()  # 1 + NN of the head; _NO_HEAD; _ODD_HEAD (then in odd_heads)
        self.members = bytearray()  # _MASK_BYTES per household
        self.recent: OrderedDict[str, _Recent] = OrderedDict()
        # Lines that are errors already (a number not of its household's form): rare, kept whole.
        self.odd_heads: dict[int, str] = {}
        self.odd_members: dict[int, set[str]] = {}
        self.odd_member_lines: dict[str, int] = {}
        self.grouped = True  # each household's lines are together
        self._last = ""

    def __len__(self) -> int:
        return len(self.first_line)

    def household(self, household_no: str, line: int, raw: tuple[str, ...], head: str) -> tuple[int, bool]:
        """Return the household's position and whether this line is its first, registering it if so."""
        if household_no != self._last:
            if household_no in self.index:
                self.grouped = False
            self._last = household_no
        position = self.index.get(household_no)
        if position is not None:
            return position, False
        position = len(self.first_line)
        self.index[household_no] = position
        self.first_line.append(line)
        self.raw_hash.append(hash(raw))
        self.scheme.append(-1)
        self.members.extend(bytes(_MASK_BYTES))
        own = _own_number(head)
        if not head:
            self.head.append(_NO_HEAD)
        elif own is not None and own[0] == household_no:
            self.head.append(1 + own[1])
        else:
            self.head.append(_ODD_HEAD)
            self.odd_heads[position] = head
        self.recent[household_no] = _Recent(raw, {})
        if len(self.recent) > RECENT_HOUSEHOLDS:
            self.recent.popitem(last=False)
        return position, True

    def recent_of(self, household_no: str) -> _Recent | None:
        found = self.recent.get(household_no)
        if found is not None:
            self.recent.move_to_end(household_no)
        return found

    def has_member(self, position: int, number: int) -> bool:
        return bool(self.members[position * _MASK_BYTES + number // 8] & (1 << number % 8))

    def first_seen(self, member_no: str) -> int | None:
        """Return the first line of a member number already seen (_UNKNOWN_LINE: too old to know), else None."""
        lines = []
        odd = self.odd_member_lines.get(member_no)
        if odd is not None:
            lines.append(odd)
        own = _own_number(member_no)
        if own is not None:
            position = self.index.get(own[0])
            if position is not None and self.has_member(position, own[1]):
                recent = self.recent.get(own[0])
                line = recent.member_lines.get(member_no) if recent is not None else None
                if line is None:
                    return _UNKNOWN_LINE
                lines.append(line)
        return min(lines) if lines else None

    def see_member(self, member_no: str, household_no: str, position: int | None, line: int) -> None:
        """Record a member number on a line of a household (position None: the line names no household)."""
        own = _own_number(member_no)
        if position is not None and own is not None and own[0] == household_no:
            byte = position * _MASK_BYTES + own[1] // 8
            if self.members[byte] & (1 << own[1] % 8):
                return
            self.members[byte] |= 1 << own[1] % 8
            recent = self.recent.get(household_no)
            if recent is not None:
                recent.member_lines[member_no] = line
            return
        self.odd_member_lines.setdefault(member_no, line)
        if position is not None:
            self.odd_members.setdefault(position, set()).add(member_no)

    def missing_heads(self) -> Iterator[tuple[int, str, str]]:
        """Yield (first line, household number, head) of each household whose head is none of its lines."""
        for household_no, position in self.index.items():
            head = self.head[position]
            if head == _NO_HEAD:
                continue
            if head == _ODD_HEAD:
                odd = self.odd_heads[position]
                if odd not in self.odd_members.get(position, ()):
                    yield self.first_line[position], household_no, odd
            elif not self.has_member(position, head - 1):
                yield self.first_line[position], household_no, f"{household_no}-{head - 1:02d}"


@dataclass
class _Pending:
    """An error whose first line is older than the recent households: resolved by reading the file again."""

    line: int
    member_no: str = ""  # a duplicate: its first line
    household_no: str = ""  # differing household columns: the household's first row
    first_line: int = 0
    raw: tuple[str, ...] = ()


class _PhoneTape:
    """The phones pass 1 normalised, two a row in file order (0: none), on disk: pass 2 parses none again.

    Parsing a phone costs more than the rest of its line; the tape keeps 16 bytes a row out of memory.
    """

    _CHUNK = 65_536

    def __init__(self) -> None:
        self.file = tempfile.TemporaryFile()  # noqa: SIM115 (closed by `close`)
        self.buffer = array("q")

    def append(self, phone: str | None, network_phone: str | None) -> None:
        self.buffer.append(int(phone[1:]) if phone else 0)
        self.buffer.append(int(network_phone[1:]) if network_phone else 0)
        if len(self.buffer) >= self._CHUNK:
            self.buffer.tofile(self.file)
            self.buffer = array("q")

    def rows(self) -> Iterator[tuple[int, int]]:
        """Yield the (phone, network phone) of each row, from the start."""
        self.buffer.tofile(self.file)
        self.buffer = array("q")
        self.file.seek(0)
        while chunk := self.file.read(self._CHUNK * 8):
            numbers = array("q")
            numbers.frombytes(chunk)
            yield from zip(numbers[::2], numbers[1::2], strict=True)

    def close(self) -> None:
        self.file.close()


@dataclass
class FileCheck:
    """What pass 1 learnt of a file that pass 2 and the writer need."""

    names: list[str]
    index: dict[str, int]
    keys: _HouseholdKeys
    phones: _PhoneTape = field(default_factory=_PhoneTape)
    rows: int = 0

    def close(self) -> None:
        """Delete the phone tape."""
        self.phones.close()

    networks: dict[tuple[int, str], NetworkWant] = field(default_factory=dict)
    contacts: dict[tuple[int, str], str] = field(default_factory=dict)


class RowValidator:
    """Turn CSV rows into typed values, recording every problem with its line and column."""

    def __init__(
        self,
        schemes: dict[str, SchemeInfo],
        scheme_code: str | None,
        today: date,
        index: dict[str, int],
        report: ImportReport,
    ) -> None:
        self.schemes = schemes
        self.by_ordinal = list(schemes.values())
        self.ordinal = {code: i for i, code in enumerate(schemes)}
        self.scheme_code = scheme_code
        self.today = today
        self.index = index
        self.report = report
        self.phones: dict[tuple[str, str], str | ValueError] = {}
        self.mutuelles: dict[tuple[str, str, str | None], Mutuelle | str] = {}
        self.taped: tuple[int, int] | None = None  # pass 2: this row's phones as pass 1 normalised them
        self.network_phones: dict[tuple[str, str], tuple[str, int]] = {}  # (scheme, network slug) → (phone, line)

    def value(self, row: Sequence[str], column: str) -> str:
        i = self.index.get(column)
        return "" if i is None else row[i].strip()

    def fail(self, line: int, column: str, reason: str) -> RowError | None:
        error = RowError(line, column, reason)
        return error if self.report.add_error(error) else None

    def scheme(self, line: int, code: str) -> SchemeInfo | None:
        if self.scheme_code is not None:
            if code and code != self.scheme_code:
                self.fail(line, "scheme", f"{code!r} is not the scheme being imported ({self.scheme_code})")
                return None
            code = self.scheme_code
        if not code:
            self.fail(line, "scheme", "required")
            return None
        scheme = self.schemes.get(code)
        if scheme is None:
            self.fail(line, "scheme", f"unknown scheme {code!r}")
        return scheme

    def member(self, line: int, row: Sequence[str], member_no: str, scheme: SchemeInfo | None) -> MemberRow | None:
        """Return the member a line describes (None when the line is bad); `paid_until` is read apart."""
        v = self.value
        before = self.report.error_count
        sex_text = v(row, "sex").upper()
        sex = Sex(sex_text) if sex_text in ("F", "M") else None
        if sex is None:
            self.fail(line, "sex", f"must be F or M, not {sex_text!r}" if sex_text else "required (F or M)")
        last_name = self.text(line, row, "last_name", 120, required=True)
        first_name = self.text(line, row, "first_name", 120, required=True)
        relationship = self.text(line, row, "relationship", 40, required=True).lower()
        date_of_birth = self.date(line, v(row, "date_of_birth"), "date_of_birth", required=False)
        joined_on = self.date(line, v(row, "joined_on"), "joined_on", required=True)
        if date_of_birth and date_of_birth > self.today:
            self.fail(line, "date_of_birth", "is in the future")
        if date_of_birth and joined_on and joined_on < date_of_birth:
            self.fail(line, "joined_on", "is before the date of birth")
        paid_until = self.paid_until(line, row)
        if paid_until and joined_on and paid_until < joined_on:
            self.fail(line, "paid_until", "is before joined_on")
        status_text = v(row, "status").lower() or MemberStatus.ACTIVE.value
        try:
            status = MemberStatus(status_text)
        except ValueError:
            status = MemberStatus.ACTIVE
            self.fail(line, "status", f"must be active, left or deceased, not {status_text!r}")
        phone = self.phone(line, v(row, "phone"), scheme)
        if self.report.error_count > before or sex is None or joined_on is None:
            return None
        return MemberRow(
            line=line,
            member_no=member_no,
            last_name=last_name,
            first_name=first_name,
            sex=sex,
            date_of_birth=date_of_birth,
            relationship=relationship,
            phone=phone,
            status=status,
            joined_on=joined_on,
        )

    def paid_until(self, line: int, row: Sequence[str]) -> date | None:
        return self.date(line, self.value(row, "paid_until"), "paid_until", required=False)

    def new_household(
        self, line: int, row: Sequence[str], household_no: str, scheme: SchemeInfo | None
    ) -> HouseholdRow | None:
        v = self.value
        before = self.report.error_count
        subsidy = v(row, "subsidy_category").lower()
        language = v(row, "language").lower()
        plan = v(row, "plan").lower()
        if scheme is not None:
            if not subsidy:
                self.fail(line, "subsidy_category", "required")
            elif subsidy not in scheme.subsidies:
                known = ", ".join(sorted(scheme.subsidies))
                self.fail(line, "subsidy_category", f"{subsidy!r} is not a category of {scheme.code} ({known})")
            language = language or scheme.default_language
            if language not in scheme.languages:
                known = ", ".join(sorted(scheme.languages))
                self.fail(line, "language", f"{language!r} is not a language of {scheme.code} ({known})")
            plan = plan or scheme.default_plan
            if plan not in scheme.plans:
                known = ", ".join(sorted(scheme.plans))
                self.fail(line, "plan", f"{plan!r} is not a plan of {scheme.code} ({known})")
        head = v(row, "head_member_no").upper()
        if not head:
            self.fail(line, "head_member_no", "required")
        opt_in_text = unicodedata.normalize("NFKD", v(row, "sms_opt_in").lower()).encode("ascii", "ignore").decode()
        sms_opt_in = True
        if opt_in_text in _NO:
            sms_opt_in = False
        elif opt_in_text and opt_in_text not in _YES:
            self.fail(line, "sms_opt_in", f"must be yes or no, not {v(row, 'sms_opt_in')!r}")
        commune = self.text(line, row, "commune", 120, required=False) or None
        mutuelle = self.mutuelle(scheme, v(row, "mutuelle"), commune) if scheme is not None else None
        if isinstance(mutuelle, str):
            self.fail(line, "mutuelle", mutuelle)
        network = self.text(line, row, "network", 255, required=False) or None
        if network is not None and not slugify(network):
            self.fail(line, "network", "needs at least one letter or digit")
        network_phone = self.phone(line, v(row, "network_phone"), scheme, column="network_phone")
        if network_phone is not None and network is None:
            self.fail(line, "network_phone", "needs a network")
        elif network_phone is not None and network is not None and scheme is not None:
            key = (scheme.code, slugify(network))
            first_phone, first_line = self.network_phones.setdefault(key, (network_phone, line))
            if first_phone != network_phone:
                self.fail(line, "network_phone", f"differs from line {first_line} for network {network!r}")
        if self.report.error_count > before:
            return None
        return HouseholdRow(
            mutuelle_id=mutuelle.id if isinstance(mutuelle, Mutuelle) else 0,
            household_no=household_no,
            line=line,
            scheme=scheme,
            commune=commune,
            network_name=network,
            subsidy_category=subsidy,
            language=language,
            head_member_no=head,
            sms_opt_in=sms_opt_in,
            plan=plan,
            network_phone=network_phone,
        )

    def mutuelle(self, scheme: SchemeInfo, code: str, commune: str | None) -> Mutuelle | str:
        # A file names a handful of communes: find each one's mutuelle once.
        key = (scheme.code, code, commune)
        found = self.mutuelles.get(key)
        if found is None:
            if len(self.mutuelles) >= PHONE_CACHE:
                self.mutuelles.clear()
            found = self.mutuelles[key] = scheme.mutuelle(code, commune)
        return found

    def text(self, line: int, row: Sequence[str], column: str, limit: int, *, required: bool) -> str:
        text = self.value(row, column)
        if required and not text:
            self.fail(line, column, "required")
        elif len(text) > limit:
            self.fail(line, column, f"longer than {limit} characters")
        return text

    def date(self, line: int, text: str, column: str, *, required: bool) -> date | None:
        if not text:
            if required:
                self.fail(line, column, "required (YYYY-MM-DD)")
            return None
        if _ISO_DATE.fullmatch(text):
            try:
                return date.fromisoformat(text)
            except ValueError:
                pass
        self.fail(line, column, f"not a date YYYY-MM-DD: {text!r}")
        return None

    def phone(self, line: int, text: str, scheme: SchemeInfo | None, column: str = "phone") -> str | None:
        if not text or scheme is None:
            return None
        if self.taped is not None:
            taped = self.taped[0 if column == "phone" else 1]
            if taped:
                return f"+{taped}"
        key = (text, scheme.country)
        result = self.phones.get(key)
        if result is None:
            try:
                result = normalise_phone(text, scheme.country)
            except ValueError as exc:
                result = exc
            if len(self.phones) >= PHONE_CACHE:
                self.phones.clear()
            self.phones[key] = result
        if isinstance(result, ValueError):
            self.fail(line, column, f"{text!r}: {result}")
            return None
        return result


class _FileChecker(RowValidator):
    """Pass 1: check each line and the keys that span lines, keeping compact keys only."""

    def __init__(
        self,
        schemes: dict[str, SchemeInfo],
        scheme_code: str | None,
        today: date,
        check: FileCheck,
        report: ImportReport,
    ) -> None:
        super().__init__(schemes, scheme_code, today, check.index, report)
        self.check = check
        self.keys = check.keys
        self.pending: dict[int, _Pending] = {}  # id of a kept placeholder error → what it waits for
        self.unresolved = 0  # pending errors past MAX_KEPT_ERRORS: counted once each
        self.network_errors: list[RowError] = []

    def defer(self, error: RowError | None, pending: _Pending) -> None:
        if error is None:
            self.unresolved += 1
        else:
            self.pending[id(error)] = pending

    def add(self, line: int, row: Sequence[str]) -> None:
        v = self.value
        keys = self.keys
        household_no = v(row, "household_no").upper()
        if not household_no:
            self.fail(line, "household_no", "required")
        elif not _HOUSEHOLD_NO.fullmatch(household_no):
            self.fail(line, "household_no", "letters, digits, and - / _ . only, at most 40 characters")
        raw = tuple(v(row, c).casefold() for c in _AGREEING_COLUMNS)
        position, is_first = (
            keys.household(household_no, line, raw, v(row, "head_member_no").upper()) if household_no else (None, False)
        )

        member_no = v(row, "member_no").upper()
        if not member_no:
            self.fail(line, "member_no", "required")
        elif household_no and not (
            member_no.startswith(household_no) and _MEMBER_SUFFIX.fullmatch(member_no[len(household_no) :])
        ):
            self.fail(line, "member_no", f"must be the household number followed by -NN ({household_no}-01)")
        else:
            first = keys.first_seen(member_no)
            if first == _UNKNOWN_LINE:
                error = self.fail(line, "member_no", "duplicate of an earlier line")
                self.defer(error, _Pending(line, member_no=member_no))
            elif first is not None:
                self.fail(line, "member_no", f"duplicate of line {first}")
        if member_no:
            keys.see_member(member_no, household_no, position, line)

        scheme = None
        if is_first:
            scheme = self.scheme(line, v(row, "scheme"))
        elif position is not None:
            # Later rows of a household must repeat its first row; its values were checked there.
            first_line = keys.first_line[position]
            recent = keys.recent_of(household_no)
            if recent is not None:
                self.compare(line, household_no, first_line, recent.raw, raw)
            elif hash(raw) != keys.raw_hash[position]:
                error = self.fail(line, _AGREEING_COLUMNS[0], f"differs from line {first_line}")
                self.defer(error, _Pending(line, household_no=household_no, first_line=first_line, raw=raw))
            ordinal = keys.scheme[position]
            scheme = self.by_ordinal[ordinal - 1] if ordinal > 0 else None

        member = self.member(line, row, member_no, scheme)
        household = None
        if is_first:
            assert position is not None
            household = self.new_household(line, row, household_no, scheme)
            if household is not None:
                keys.scheme[position] = 0 if scheme is None else 1 + self.ordinal[scheme.code]
                self.want_network(household)
        self.check.phones.append(member.phone if member else None, household.network_phone if household else None)

    def compare(
        self, line: int, household_no: str, first_line: int, first: tuple[str, ...], raw: tuple[str, ...]
    ) -> list[RowError]:
        errors = []
        for column, expected, this in zip(_AGREEING_COLUMNS, first, raw, strict=True):
            if expected != this:
                error = RowError(line, column, f"differs from line {first_line} of household {household_no}")
                errors.append(error)
                self.report.add_error(error)
        return errors

    def want_network(self, household: HouseholdRow) -> None:
        """Note the network a household names; a network belongs to one mutuelle."""
        scheme = household.scheme
        if not household.network_name or scheme is None:
            return
        key = (scheme.id, slugify(household.network_name))
        want = NetworkWant(
            household.line, household.network_name, household.mutuelle_id, household.commune, scheme.currency
        )
        first = self.check.networks.setdefault(key, want)
        if household.network_phone:
            self.check.contacts[key] = household.network_phone
        if first.mutuelle_id != household.mutuelle_id and len(self.network_errors) < MAX_KEPT_ERRORS:
            self.network_errors.append(
                RowError(
                    household.line,
                    "network",
                    f"network {household.network_name!r} is in another mutuelle on line {first.line}",
                )
            )

    def finish(self, handle: TextIO, start: int) -> None:
        """Check the heads, resolve the errors that need the file again, sort the errors by line."""
        for line, household_no, head in self.keys.missing_heads():
            self.fail(line, "head_member_no", f"{head} is not a member of household {household_no} in this file")
        self.report.more_errors += self.unresolved
        if self.pending:
            self.resolve(handle, start)
        self.report.errors.sort(key=lambda e: e.line)
        if self.report.ok:  # checked against the other households only once every line is right
            for error in self.network_errors:
                self.report.add_error(error)
            self.report.errors.sort(key=lambda e: e.line)

    def resolve(self, handle: TextIO, start: int) -> None:
        members = {p.member_no for p in self.pending.values() if p.member_no}
        lines = {p.first_line for p in self.pending.values() if p.household_no}
        first_of: dict[str, int] = {}
        raws: dict[int, tuple[str, ...]] = {}
        handle.seek(start)
        reader = csv.reader(handle)
        next(reader)
        for line, row in _lines(reader):
            if len(row) != len(self.check.names):
                continue
            member_no = self.value(row, "member_no").upper()
            if member_no in members and member_no not in first_of:
                first_of[member_no] = line
            if line in lines:
                raws[line] = tuple(self.value(row, c).casefold() for c in _AGREEING_COLUMNS)
        errors = self.report.errors
        self.report.errors = []
        for error in errors:
            pending = self.pending.get(id(error))
            if pending is None:
                self.report.errors.append(error)
            elif pending.member_no:
                first = first_of.get(pending.member_no, pending.line)
                self.report.errors.append(RowError(error.line, "member_no", f"duplicate of line {first}"))
            else:
                self.compare(
                    pending.line, pending.household_no, pending.first_line, raws[pending.first_line], pending.raw
                )


def _lines(reader: Reader) -> Iterator[tuple[int, list[str]]]:
    """Yield (line number, row) of the data rows, skipping blank lines."""
    for row in reader:
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        yield reader.line_num, row


def check_file(
    handle: TextIO,
    schemes: dict[str, SchemeInfo],
    scheme_code: str | None,
    today: date,
    report: ImportReport,
    progress: Progress | None,
) -> FileCheck | None:
    """Pass 1: check every line of the file; return what pass 2 needs, or None when anything is wrong."""
    start = handle.tell()
    reader = csv.reader(handle)
    try:
        header = next(reader)
    except StopIteration:
        report.add_error(RowError(1, "(header)", "the file is empty"))
        return None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ImportFileError(f"not a UTF-8 CSV file: {exc}") from exc
    names = [name.strip().lower() for name in header]
    index = {name: i for i, name in enumerate(names)}
    required = [c for c in REQUIRED_COLUMNS if not (c == "scheme" and scheme_code)]
    for column in required:
        if column not in index:
            report.add_error(RowError(1, column, "missing column"))
    for name in names:
        if name not in REQUIRED_COLUMNS and name not in OPTIONAL_COLUMNS:
            report.add_error(RowError(1, name or "(blank)", "unknown column"))
    if len(set(names)) != len(names):
        report.add_error(RowError(1, "(header)", "a column is named twice"))
    if not report.ok:
        return None

    check = FileCheck(names, index, _HouseholdKeys())
    checker = _FileChecker(schemes, scheme_code, today, check, report)
    line = 1
    try:
        for line, row in _lines(reader):
            report.rows += 1
            if len(row) != len(names):
                report.add_error(RowError(line, "(row)", f"expected {len(names)} fields, found {len(row)}"))
                continue
            checker.add(line, row)
            if progress is not None and report.rows % PROGRESS_EVERY_ROWS == 0:
                progress("read", report.rows, None)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ImportFileError(f"line {line + 1}: not a UTF-8 CSV line: {exc}") from exc
    if progress is not None:
        progress("read", report.rows, report.rows)
    checker.finish(handle, start)
    check.rows = report.rows
    if not report.ok:
        check.close()
        return None
    # Only the keys pass 2 needs stay: the household positions (scattered files) and the grouping.
    check.keys.recent.clear()
    return check


def households_of(
    handle: TextIO,
    start: int,
    check: FileCheck,
    schemes: dict[str, SchemeInfo],
    scheme_code: str | None,
    today: date,
    report: ImportReport,
) -> Iterator[HouseholdRow]:
    """Pass 2: yield the file's households, each with all its members, in the order they first appear.

    The file was checked (`check_file`): a line found bad now (the file changed in between) is an error of the report.
    """
    validator = RowValidator(schemes, scheme_code, today, check.index, report)
    handle.seek(start)
    reader = csv.reader(handle)
    next(reader)
    rows: Iterator[_Taped] = (
        (line, phones, row) for (line, row), phones in zip(_lines(reader), check.phones.rows(), strict=False)
    )
    if not check.keys.grouped:
        rows = _gathered(rows, check)
    household: HouseholdRow | None = None
    for line, phones, row in rows:
        validator.taped = phones
        household_no = validator.value(row, "household_no").upper()
        if household is None or household_no != household.household_no:
            if household is not None:
                yield household
            household = validator.new_household(
                line, row, household_no, validator.scheme(line, validator.value(row, "scheme"))
            )
            if household is None:
                return
        member = validator.member(line, row, validator.value(row, "member_no").upper(), household.scheme)
        paid_until = validator.paid_until(line, row)
        if member is None:
            return
        if paid_until is not None:
            household.paid_until = max(paid_until, household.paid_until or paid_until)
        household.members.append(member)
    if household is not None:
        yield household


_Taped = tuple[int, tuple[int, int], list[str]]  # line, its phones from the tape, row


def _gathered(rows: Iterator[_Taped], check: FileCheck) -> Iterator[_Taped]:
    """Yield the rows household by household (first appearance order) through bucket files of bounded size."""
    position = check.keys.index
    column = check.names.index("household_no")
    per_bucket = max(1, BUCKET_ROWS * len(check.keys) // max(1, check.rows))  # households of ~BUCKET_ROWS rows
    with tempfile.TemporaryDirectory(prefix="mutuelle-import-") as folder:
        files: dict[int, tuple[TextIO, Writer]] = {}
        try:
            for line, (phone, network_phone), row in rows:
                bucket = position[row[column].strip().upper()] // per_bucket
                if bucket not in files:
                    opened = open(f"{folder}/{bucket}.csv", "w", newline="", encoding="utf-8")  # noqa: SIM115
                    files[bucket] = (opened, csv.writer(opened))
                files[bucket][1].writerow([line, phone, network_phone, *row])
        finally:
            for out, _ in files.values():
                out.close()
        for bucket in sorted(files):
            with open(f"{folder}/{bucket}.csv", newline="", encoding="utf-8") as handle:
                held = [
                    (position[r[3 + column].strip().upper()], int(r[0]), (int(r[1]), int(r[2])), r[3:])
                    for r in csv.reader(handle)
                ]
            held.sort()
            for _, line, phones, row in held:
                yield line, phones, row
            del held
