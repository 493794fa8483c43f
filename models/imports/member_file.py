"""Read an enrolment export in two streaming passes, so an import's memory does not grow with the file.

Pass 1 (`check_file`) checks every line and keeps, per household, only compact keys for the checks that span lines:
its first line, a hash of its household columns, its scheme, its head's and its members' two-digit numbers (bits).
The last few thousand households also keep their first row and member lines, so a file written household by
household names a differing column or a duplicate's first line at once; anything older is looked up by reading the
file once more, only when there is such an error. Pass 2 (`households_of`) reads the file again and yields the
households, each whole, in the order they first appear: straight from the file when each household's lines are
together (an export's usual shape), else through bucket files that each hold a bounded share of the households.
The phones pass 1 normalised wait in a temporary file (16 bytes a line) for pass 2, which parses none again.

Pass 2 is needed only for a scattered file: while the households' lines are together and every line is right, pass 1
hands each household on as soon as its lines are checked (`emit`), and the importer writes it at once.
"""

from __future__ import annotations

import csv
import operator
import re
import tempfile
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, TextIO

from models.imports.member_rows import (
    HOUSEHOLD_COLUMNS,
    MAX_KEPT_ERRORS,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    HouseholdRow,
    ImportFileError,
    ImportReport,
    MemberRow,
    NetworkWant,
    Progress,
    RowError,
    RowValidator,
    SchemeInfo,
    network_want,
    slugify,
)
from models.imports.phones_ahead import PhonesAhead, large

if TYPE_CHECKING:
    from _csv import Reader, Writer

_AGREEING_COLUMNS = (*HOUSEHOLD_COLUMNS, "plan")
_agreeing = operator.itemgetter(*_AGREEING_COLUMNS)  # a line's values (`RowValidator.fields`) of those columns
PROGRESS_EVERY_ROWS = 50_000
RECENT_HOUSEHOLDS = 4_096  # households whose first row and member lines stay at hand
BUCKET_ROWS = 20_000  # rows per bucket file when a file's households are scattered (one bucket is held at a time)
MAX_BUCKETS = 512  # files open at once; past BUCKET_ROWS * MAX_BUCKETS rows, buckets grow
_MEMBER_SUFFIX = re.compile(r"-\d{2}")
_HOUSEHOLD_NO = re.compile(r"[A-Z0-9][A-Z0-9/_.-]{0,39}")
_MASK_BYTES = 13  # one bit per member number 00…99
_NO_HEAD, _ODD_HEAD = 0, 255
_UNKNOWN_LINE = 0  # a first occurrence older than the recent households: read the file again


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
    written: bool = False  # every household went to `emit` as it was checked: no second reading is needed

    def close(self) -> None:
        """Delete the phone tape."""
        self.phones.close()

    networks: dict[tuple[int, str], NetworkWant] = field(default_factory=dict)  # the first household naming each


class _FileChecker(RowValidator):
    """Pass 1: check each line and the keys that span lines, keeping compact keys only."""

    def __init__(
        self,
        schemes: dict[str, SchemeInfo],
        scheme_code: str | None,
        today: date,
        check: FileCheck,
        report: ImportReport,
        emit: Callable[[HouseholdRow], None] | None = None,
    ) -> None:
        super().__init__(schemes, scheme_code, today, check.index, report)
        self.check = check
        self.keys = check.keys
        self.emit = emit
        self.current: HouseholdRow | None = None  # the household being gathered for `emit`
        self.pending: dict[int, _Pending] = {}  # id of a kept placeholder error → what it waits for
        self.unresolved = 0  # pending errors past MAX_KEPT_ERRORS: counted once each
        self.network_errors: list[RowError] = []

    def defer(self, error: RowError | None, pending: _Pending) -> None:
        if error is None:
            self.unresolved += 1
        else:
            self.pending[id(error)] = pending

    def add(self, line: int, cells: Sequence[str]) -> None:
        row = self.fields(cells)
        v = self.value
        keys = self.keys
        household_no = v(row, "household_no").upper()
        if not household_no:
            self.fail(line, "household_no", "required")
        elif not _HOUSEHOLD_NO.fullmatch(household_no):
            self.fail(line, "household_no", "letters, digits, and - / _ . only, at most 40 characters")
        raw = tuple(map(str.casefold, _agreeing(row)))
        position, is_first = (
            keys.household(household_no, line, raw, v(row, "head_member_no").upper()) if household_no else (None, False)
        )
        if not keys.grouped:
            self.emit = None  # a household seen again: those handed on were not whole

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
        if self.emit is not None:
            self.gather(line, row, household, member)

    def gather(
        self, line: int, row: Mapping[str, str], household: HouseholdRow | None, member: MemberRow | None
    ) -> None:
        """Add a checked line to its household, handing on the one before when a new one starts (grouped files)."""
        if not self.report.ok or self.emit is None:
            self.emit = self.current = None  # nothing is written from a file with an error
            return
        if household is not None:
            if self.current is not None:
                self.emit(self.current)
            self.current = household
        assert self.current is not None and member is not None
        paid_until = self.paid_until(line, row)
        if paid_until is not None:
            self.current.paid_until = max(paid_until, self.current.paid_until or paid_until)
        self.current.members.append(member)

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
        first = self.check.networks.setdefault(key, network_want(household, scheme))
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
        for line, cells in _lines(reader):
            if len(cells) != len(self.check.names):
                continue
            row = self.fields(cells)
            member_no = self.value(row, "member_no").upper()
            if member_no in members and member_no not in first_of:
                first_of[member_no] = line
            if line in lines:
                raws[line] = tuple(map(str.casefold, _agreeing(row)))
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
    emit: Callable[[HouseholdRow], None] | None = None,
) -> FileCheck | None:
    """Pass 1: check every line of the file; return what pass 2 needs, or None when anything is wrong.

    With `emit`, each household is handed to it as soon as its lines are checked, while the file's households
    are together and no line is wrong (the caller undoes what it did with them when the file turns out otherwise):
    `FileCheck.written` says whether every household went that way, making pass 2 needless.
    """
    start = handle.tell()
    helper = large(handle)
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
    checker = _FileChecker(schemes, scheme_code, today, check, report, emit)
    try:
        line = 1
        with PhonesAhead(_phone_pairs(names, schemes, scheme_code), helper=helper) as ahead:
            for batch, phones, error in ahead.batches(_lines(reader)):
                checker.ahead = phones or {}
                for line, row in batch:
                    report.rows += 1
                    if len(row) != len(names):
                        report.add_error(RowError(line, "(row)", f"expected {len(names)} fields, found {len(row)}"))
                        continue
                    checker.add(line, row)
                    if progress is not None and report.rows % PROGRESS_EVERY_ROWS == 0:
                        progress("read", report.rows, None)
                if error is not None:
                    raise ImportFileError(f"line {line + 1}: not a UTF-8 CSV line: {error}") from error
    except BaseException:
        check.close()  # its phone tape
        raise
    checker.ahead = {}
    if progress is not None:
        progress("read", report.rows, report.rows)
    checker.finish(handle, start)
    check.rows = report.rows
    if not report.ok:
        check.close()
        return None
    if checker.emit is not None:
        if checker.current is not None:
            checker.emit(checker.current)
        check.written = True
    # Only the keys pass 2 needs stay: the household positions (scattered files) and the grouping.
    check.keys.recent.clear()
    return check


def _phone_pairs(
    names: list[str], schemes: dict[str, SchemeInfo], scheme_code: str | None
) -> Callable[[list[tuple[int, list[str]]]], list[tuple[str, str]]]:
    """Return what gives the (phone, country) pairs of some lines, for the phones' helper (`PhonesAhead`)."""
    columns = [names.index(c) for c in ("phone", "network_phone") if c in names]
    scheme_column = names.index("scheme") if "scheme" in names else None

    def pairs(lines: list[tuple[int, list[str]]]) -> list[tuple[str, str]]:
        found: set[tuple[str, str]] = set()
        for _, row in lines:
            if len(row) != len(names):
                continue
            scheme = schemes.get(scheme_code or ("" if scheme_column is None else row[scheme_column].strip()))
            if scheme is not None:
                found.update((text, scheme.country) for i in columns if (text := row[i].strip()))
        return list(found)

    return pairs


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
    for line, phones, cells in rows:
        validator.taped = phones
        row = validator.fields(cells)
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
    households = len(check.keys)
    # Households per bucket: about BUCKET_ROWS rows each, in at most MAX_BUCKETS files.
    per_bucket = max(1, BUCKET_ROWS * households // max(1, check.rows), -(-households // MAX_BUCKETS))
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
