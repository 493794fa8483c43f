"""Import the enrolment export (households and members, CSV): validate everything, then write in bulk.

All or nothing: any bad row and nothing is written, with every bad line reported. Rows are compared
with what is stored, so importing the same file again changes nothing.
"""

from __future__ import annotations

import csv
import enum
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, TextIO, cast

from sqlalchemy import ColumnElement, String, Table, any_, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import InstrumentedAttribute, Session

from models.base import Language, MemberStatus, Sex, utcnow
from models.coverage.money import Allocation, CoveragePeriod, LedgerEntry
from models.coverage.periods import book_enrolment_subsidies, book_prior_cover
from models.db import begin_write
from models.members.household import Account, Household, Member, Network
from models.members.phones import normalise_phone
from models.schemes.mutuelle import Mutuelle, mutuelle_for_commune, scheme_mutuelles
from models.schemes.scheme import Scheme

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
CHUNK_HOUSEHOLDS = 2000
PROGRESS_EVERY_ROWS = 50_000
# What an import writes (with the cover it books from enrolment and `paid_until`): analysed once committed.
MODELS_WRITTEN = (Network, Household, Member, Account, CoveragePeriod, Allocation, LedgerEntry)
# Core tables: bulk inserts skip the ORM's per-object bookkeeping.
HOUSEHOLDS = Household.__table__
MEMBERS = Member.__table__
ACCOUNTS = Account.__table__

_HOUSEHOLD_NO = re.compile(r"[A-Z0-9][A-Z0-9/_.-]{0,39}")
_MEMBER_SUFFIX = re.compile(r"-\d{2}")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_YES = {"yes", "y", "true", "1", "oui", "o", "waaw"}
_NO = {"no", "n", "false", "0", "non", "deedeet"}

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
    errors: list[RowError] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Return whether the file had no errors."""
        return not self.errors

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
class _SchemeInfo:
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
class _MemberRow:
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
class _HouseholdRow:
    household_no: str
    line: int
    raw: tuple[str, ...]  # the household columns as first seen, to check later rows agree
    scheme: _SchemeInfo | None
    commune: str | None
    network_name: str | None
    subsidy_category: str
    language: str
    head_member_no: str
    sms_opt_in: bool
    plan: str
    mutuelle_id: int = 0
    network_phone: str | None = None  # the network's contact (treasurer), E.164
    members: list[_MemberRow] = field(default_factory=list)
    paid_until: date | None = None  # prior cover on migration: the last day already paid for
    network_id: int | None = None  # a network already known (an enrolment's), instead of one named in the file


@dataclass(frozen=True)
class NewMember:
    """A member to create with its household (`create_household`): what one CSV row says of a person."""

    member_no: str
    last_name: str
    first_name: str
    sex: Sex
    date_of_birth: date | None
    relationship: str
    phone: str | None
    joined_on: date


@dataclass(frozen=True)
class NewHousehold:
    """A household to create as the import would (`create_household`): what its rows say of it."""

    household_no: str
    scheme_code: str
    mutuelle_id: int
    network_id: int | None
    commune: str | None
    subsidy_category: str
    language: str
    plan: str
    head_member_no: str
    sms_opt_in: bool
    members: tuple[NewMember, ...]


def create_household(session: Session, household: NewHousehold, today: date, source: str) -> ImportReport:
    """Create a household, its members and its account exactly as the import does, in the caller's transaction.

    The same writer as a file of one household: its cover from enrolment when its category is fully subsidised
    (`book_enrolment_subsidies`). ValueError when the database refuses it (a number taken in another scheme).
    """
    scheme = _load_schemes(session)[household.scheme_code]
    row = _HouseholdRow(
        household_no=household.household_no,
        line=0,
        raw=(),
        scheme=scheme,
        commune=household.commune,
        network_name=None,
        network_id=household.network_id,
        subsidy_category=household.subsidy_category,
        language=household.language,
        head_member_no=household.head_member_no,
        sms_opt_in=household.sms_opt_in,
        plan=household.plan,
        mutuelle_id=household.mutuelle_id,
        members=[
            _MemberRow(
                line=0,
                member_no=m.member_no,
                last_name=m.last_name,
                first_name=m.first_name,
                sex=m.sex,
                date_of_birth=m.date_of_birth,
                relationship=m.relationship,
                phone=m.phone,
                status=MemberStatus.ACTIVE,
                joined_on=m.joined_on,
            )
            for m in household.members
        ],
    )
    report = ImportReport()
    _Writer(session, {household.household_no: row}, today, report, False, None, source).run()
    if report.errors:
        raise ValueError("; ".join(error.reason for error in report.errors))
    return report


def slugify(name: str) -> str:
    """Return the code of a network name: ASCII lower-case words joined by dashes."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:60]


def import_members(
    session: Session,
    source: str | Path | TextIO,
    *,
    scheme_code: str | None = None,
    dry_run: bool = False,
    today: date | None = None,
    progress: Progress | None = None,
) -> ImportReport:
    """Validate an enrolment export and create or update its networks, households, members and accounts.

    Nothing is written when any row is bad (the report lists every error) or on a dry run. The caller
    commits; the writes sit in a savepoint so a failure leaves the caller's transaction as it was.
    """
    today = today or utcnow().date()
    schemes = _load_schemes(session)
    if scheme_code is not None and scheme_code not in schemes:
        raise ImportFileError(f"unknown scheme {scheme_code!r}")
    report = ImportReport(dry_run=dry_run)
    if isinstance(source, str | Path):
        try:
            with open(source, newline="", encoding="utf-8-sig") as handle:
                households = _read(handle, schemes, scheme_code, today, report, progress)
        except OSError as exc:
            raise ImportFileError(f"cannot read {source}: {exc.strerror}") from exc
    else:
        households = _read(source, schemes, scheme_code, today, report, progress)
    if report.errors:
        return report
    if not dry_run:
        begin_write(session)
    name = f"members import {Path(source).name}" if isinstance(source, str | Path) else "members import"
    writer = _Writer(session, households, today, report, dry_run, progress, name)
    if dry_run:
        writer.run()
        return report
    try:
        with session.begin_nested():
            writer.run()
            if report.errors:
                raise _Abort
    except _Abort:
        _zero_counts(report)
    return report


class _Abort(Exception):
    """Roll the savepoint back: the database disagreed with the file."""


def _zero_counts(report: ImportReport) -> None:
    for name in (
        "members_created",
        "members_updated",
        "members_unchanged",
        "households_created",
        "households_updated",
        "households_unchanged",
        "networks_created",
        "accounts_created",
    ):
        setattr(report, name, 0)


def _load_schemes(session: Session) -> dict[str, _SchemeInfo]:
    schemes = {}
    for scheme in session.scalars(select(Scheme)):
        default_plan = next(
            (p.code for p in scheme.plans if p.is_default), scheme.plans[0].code if scheme.plans else ""
        )
        schemes[scheme.code] = _SchemeInfo(
            id=scheme.id,
            code=scheme.code,
            country=scheme.country,
            currency=scheme.currency,
            languages=frozenset(scheme.languages),
            default_language=str(scheme.default_language),
            subsidies=frozenset(c.code for c in scheme.subsidy_categories),
            plans=frozenset(p.code for p in scheme.plans),
            default_plan=default_plan,
            mutuelles=tuple(scheme_mutuelles(session, scheme.id)),
        )
    return schemes


# ---------------------------------------------------------------- reading and validation


def _read(
    handle: TextIO,
    schemes: dict[str, _SchemeInfo],
    scheme_code: str | None,
    today: date,
    report: ImportReport,
    progress: Progress | None,
) -> dict[str, _HouseholdRow]:
    """Parse and validate every row; return the households in file order (empty when anything is wrong)."""
    reader = csv.reader(handle)
    errors = report.errors
    try:
        header = next(reader)
    except StopIteration:
        errors.append(RowError(1, "(header)", "the file is empty"))
        return {}
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ImportFileError(f"not a UTF-8 CSV file: {exc}") from exc
    names = [name.strip().lower() for name in header]
    index = {name: i for i, name in enumerate(names)}
    required = [c for c in REQUIRED_COLUMNS if not (c == "scheme" and scheme_code)]
    for column in required:
        if column not in index:
            errors.append(RowError(1, column, "missing column"))
    for name in names:
        if name not in REQUIRED_COLUMNS and name not in OPTIONAL_COLUMNS:
            errors.append(RowError(1, name or "(blank)", "unknown column"))
    if len(set(names)) != len(names):
        errors.append(RowError(1, "(header)", "a column is named twice"))
    if errors:
        return {}

    validator = _RowValidator(schemes, scheme_code, today, index, errors)
    households: dict[str, _HouseholdRow] = {}
    member_lines: dict[str, int] = {}
    line = 1
    try:
        for row in reader:
            line = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            report.rows += 1
            if len(row) != len(names):
                errors.append(RowError(line, "(row)", f"expected {len(names)} fields, found {len(row)}"))
                continue
            validator.add(line, row, households, member_lines)
            if progress is not None and report.rows % PROGRESS_EVERY_ROWS == 0:
                progress("read", report.rows, None)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ImportFileError(f"line {line + 1}: not a UTF-8 CSV line: {exc}") from exc
    if progress is not None:
        progress("read", report.rows, report.rows)

    for household_no, (head_line, head) in validator.heads.items():
        if head and head not in validator.numbers.get(household_no, ()):
            errors.append(
                RowError(
                    head_line, "head_member_no", f"{head} is not a member of household {household_no} in this file"
                )
            )
    errors.sort(key=lambda e: e.line)
    return {} if errors else households


class _RowValidator:
    """Turn a CSV row into typed values, recording every problem with its line and column."""

    def __init__(
        self,
        schemes: dict[str, _SchemeInfo],
        scheme_code: str | None,
        today: date,
        index: dict[str, int],
        errors: list[RowError],
    ) -> None:
        self.schemes = schemes
        self.scheme_code = scheme_code
        self.today = today
        self.index = index
        self.errors = errors
        # Many members share a phone (the head's) and files repeat numbers: parse each once.
        self.phones: dict[tuple[str, str], str | ValueError] = {}
        self.first_rows: dict[str, tuple[int, tuple[str, ...]]] = {}
        self.heads: dict[str, tuple[int, str]] = {}
        self.numbers: dict[str, set[str]] = {}
        self.network_phones: dict[tuple[str, str], tuple[str, int]] = {}  # (scheme, network slug) → (phone, line)

    def value(self, row: Sequence[str], column: str) -> str:
        i = self.index.get(column)
        return "" if i is None else row[i].strip()

    def fail(self, line: int, column: str, reason: str) -> None:
        self.errors.append(RowError(line, column, reason))

    def add(
        self, line: int, row: Sequence[str], households: dict[str, _HouseholdRow], member_lines: dict[str, int]
    ) -> None:
        v = self.value
        before = len(self.errors)

        household_no = v(row, "household_no").upper()
        if not household_no:
            self.fail(line, "household_no", "required")
        elif not _HOUSEHOLD_NO.fullmatch(household_no):
            self.fail(line, "household_no", "letters, digits, and - / _ . only, at most 40 characters")

        member_no = v(row, "member_no").upper()
        if not member_no:
            self.fail(line, "member_no", "required")
        elif household_no and not (
            member_no.startswith(household_no) and _MEMBER_SUFFIX.fullmatch(member_no[len(household_no) :])
        ):
            self.fail(line, "member_no", f"must be the household number followed by -NN ({household_no}-01)")
        elif member_no in member_lines:
            self.fail(line, "member_no", f"duplicate of line {member_lines[member_no]}")
        if member_no and member_no not in member_lines:
            member_lines[member_no] = line

        raw = tuple(v(row, c).casefold() for c in (*HOUSEHOLD_COLUMNS, "plan"))
        first = self.first_rows.get(household_no) if household_no else None
        is_first = household_no and first is None
        if is_first:
            self.first_rows[household_no] = (line, raw)
            self.heads[household_no] = (line, v(row, "head_member_no").upper())
            scheme = self.scheme(line, v(row, "scheme"))
        elif first is not None:
            # Later rows of a household must repeat its first row; its values were checked there.
            first_line, first_raw = first
            for column, expected, this in zip((*HOUSEHOLD_COLUMNS, "plan"), first_raw, raw, strict=True):
                if expected != this:
                    self.fail(line, column, f"differs from line {first_line} of household {household_no}")
            known = households.get(household_no)
            scheme = known.scheme if known is not None else None
        else:
            scheme = None
        if household_no and member_no:
            self.numbers.setdefault(household_no, set()).add(member_no)

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
        paid_until = self.date(line, v(row, "paid_until"), "paid_until", required=False)
        if paid_until and joined_on and paid_until < joined_on:
            self.fail(line, "paid_until", "is before joined_on")
        status_text = v(row, "status").lower() or MemberStatus.ACTIVE.value
        try:
            status = MemberStatus(status_text)
        except ValueError:
            status = MemberStatus.ACTIVE
            self.fail(line, "status", f"must be active, left or deceased, not {status_text!r}")
        phone = self.phone(line, v(row, "phone"), scheme)

        household = households.get(household_no) if household_no else None
        if is_first:
            household = self.new_household(line, row, household_no, scheme, raw)
            if household is not None:
                households[household_no] = household
        if len(self.errors) > before or household is None:
            return
        assert sex is not None and joined_on is not None
        if paid_until is not None:
            household.paid_until = max(paid_until, household.paid_until or paid_until)
        household.members.append(
            _MemberRow(
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
        )

    def scheme(self, line: int, code: str) -> _SchemeInfo | None:
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

    def new_household(
        self,
        line: int,
        row: Sequence[str],
        household_no: str,
        scheme: _SchemeInfo | None,
        raw: tuple[str, ...],
    ) -> _HouseholdRow | None:
        v = self.value
        before = len(self.errors)
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
        mutuelle = scheme.mutuelle(v(row, "mutuelle"), commune) if scheme is not None else None
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
        if len(self.errors) > before:
            return None
        return _HouseholdRow(
            mutuelle_id=mutuelle.id if isinstance(mutuelle, Mutuelle) else 0,
            household_no=household_no,
            line=line,
            raw=raw,
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

    def phone(self, line: int, text: str, scheme: _SchemeInfo | None, column: str = "phone") -> str | None:
        if not text or scheme is None:
            return None
        key = (text, scheme.country)
        result = self.phones.get(key)
        if result is None:
            try:
                result = normalise_phone(text, scheme.country)
            except ValueError as exc:
                result = exc
            self.phones[key] = result
        if isinstance(result, ValueError):
            self.fail(line, column, f"{text!r}: {result}")
            return None
        return result


# ---------------------------------------------------------------- writing


def bulk_insert(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows of identical keys: COPY on PostgreSQL (several times faster), executemany elsewhere."""
    if not rows:
        return
    if session.get_bind().dialect.name != "postgresql":
        session.execute(insert(table), rows)
        return
    columns = list(rows[0])
    # COPY skips SQLAlchemy's Python-side defaults: add the scalar ones the rows leave out.
    defaults = {
        column.name: cast(Any, column.default).arg
        for column in table.columns
        if column.name not in rows[0] and column.default is not None and column.default.is_scalar
    }
    if defaults:
        rows = [{**row, **defaults} for row in rows]
        columns += list(defaults)
    names = ", ".join(f'"{name}"' for name in columns)
    # The session's own connection, so the COPY is part of the import's transaction.
    driver = session.connection().connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor, cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:
        for row in rows:
            copy.write_row([_plain(row[name]) for name in columns])


def _among(session: Session, column: InstrumentedAttribute[str], values: list[str]) -> ColumnElement[bool]:
    """Return `column IN values`; one array parameter on PostgreSQL, where thousands of placeholders are slow."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, values, type_=postgresql.ARRAY(String)))
    return column.in_(values)


def _plain(value: Any) -> Any:
    # COPY bypasses SQLAlchemy's type processing: enums go in as their stored values.
    return value.value if isinstance(value, enum.Enum) else value


_HOUSEHOLD_FIELDS = (
    "scheme_id",
    "mutuelle_id",
    "network_id",
    "head_member_no",
    "commune",
    "subsidy_category",
    "plan",
    "language",
    "sms_opt_in",
)
_MEMBER_FIELDS = (
    "household_id",
    "last_name",
    "first_name",
    "sex",
    "date_of_birth",
    "relationship_to_head",
    "phone",
    "status",
    "joined_on",
)


class _Writer:
    """Compare the file with the database chunk by chunk and insert or update what differs."""

    def __init__(
        self,
        session: Session,
        households: dict[str, _HouseholdRow],
        today: date,
        report: ImportReport,
        dry_run: bool,
        progress: Progress | None,
        source: str = "members import",
    ) -> None:
        self.session = session
        self.households = households
        self.today = today
        self.report = report
        self.dry_run = dry_run
        self.progress = progress
        self.source = source
        self.stamp: datetime = utcnow()
        self.networks: dict[tuple[int, str], int] = {}
        self._placeholder = 0

    def fake_id(self) -> int:
        # A dry run invents ids for rows it would create so comparisons still work.
        self._placeholder -= 1
        return self._placeholder

    @property
    def writing(self) -> bool:
        return not self.dry_run and not self.report.errors

    def run(self) -> None:
        self.sync_networks()
        rows = list(self.households.values())
        total = len(rows)
        for start in range(0, total, CHUNK_HOUSEHOLDS):
            self.sync_chunk(rows[start : start + CHUNK_HOUSEHOLDS])
            if self.progress is not None:
                self.progress("write", min(start + CHUNK_HOUSEHOLDS, total), total)
        self.report.errors.sort(key=lambda e: e.line)

    def sync_networks(self) -> None:
        """Create the networks named in the file (code = slug of the name, per scheme) and their accounts."""
        wanted: dict[tuple[int, str], _HouseholdRow] = {}
        contacts: dict[tuple[int, str], str] = {}
        for household in self.households.values():
            if household.network_name and household.scheme is not None:
                key = (household.scheme.id, slugify(household.network_name))
                first = wanted.setdefault(key, household)
                if household.network_phone:
                    contacts[key] = household.network_phone
                if first.mutuelle_id != household.mutuelle_id:  # a network belongs to one mutuelle
                    self.report.errors.append(
                        RowError(
                            household.line,
                            "network",
                            f"network {household.network_name!r} is in another mutuelle on line {first.line}",
                        )
                    )
        if not wanted:
            return
        scheme_ids = {scheme_id for scheme_id, _ in wanted}
        existing = self.session.execute(
            select(Network.scheme_id, Network.code, Network.id, Network.mutuelle_id, Account.id)
            .outerjoin(Account, Account.network_id == Network.id)
            .where(Network.scheme_id.in_(scheme_ids))
        ).all()
        with_account = set()
        network_mutuelles: dict[tuple[int, str], int] = {}
        for scheme_id, code, network_id, mutuelle_id, account_id in existing:
            self.networks[(scheme_id, code)] = network_id
            network_mutuelles[(scheme_id, code)] = mutuelle_id
            if account_id is not None:
                with_account.add(network_id)
        for key, household in wanted.items():
            if key in network_mutuelles and network_mutuelles[key] != household.mutuelle_id:
                self.report.errors.append(
                    RowError(
                        household.line,
                        "network",
                        f"network {household.network_name!r} belongs to another mutuelle of the scheme",
                    )
                )
        accounts = []
        for key, household in wanted.items():
            assert household.scheme is not None and household.network_name is not None
            if key not in self.networks:
                self.report.networks_created += 1
                if self.dry_run:
                    self.networks[key] = self.fake_id()
                else:
                    self.networks[key] = self.session.execute(
                        insert(Network).returning(Network.id),
                        {
                            "scheme_id": key[0],
                            "mutuelle_id": household.mutuelle_id,
                            "code": key[1],
                            "name": household.network_name,
                            "commune": household.commune,
                            "contact_phone": contacts.get(key),
                            "created_at": self.stamp,
                        },
                    ).scalar_one()
            network_id = self.networks[key]
            if key in contacts and not self.dry_run:  # the file names the network's contact: it wins
                self.session.execute(
                    update(Network).where(Network.id == network_id).values(contact_phone=contacts[key])
                )
            if network_id not in with_account:
                accounts.append(
                    {
                        "scheme_id": key[0],
                        "network_id": network_id,
                        "currency": household.scheme.currency,
                        "created_at": self.stamp,
                    }
                )
        self.report.accounts_created += len(accounts)
        if accounts and not self.dry_run:
            bulk_insert(self.session, ACCOUNTS, accounts)

    def sync_chunk(self, chunk: list[_HouseholdRow]) -> None:
        session = self.session
        report = self.report
        stored = {
            row.household_no: row
            for row in session.execute(
                select(Household.household_no, Household.id, Household.enrolled_on, Account.id.label("account_id"))
                .add_columns(*(getattr(Household, name) for name in _HOUSEHOLD_FIELDS))
                .outerjoin(Account, Account.household_id == Household.id)
                .where(_among(session, Household.household_no, [h.household_no for h in chunk]))
            )
        }
        member_numbers = [m.member_no for h in chunk for m in h.members]
        stored_members = {
            row.member_no: row
            for row in session.execute(
                select(Member.member_no, Member.id, Member.left_on, Household.household_no)
                .add_columns(*(getattr(Member, name) for name in _MEMBER_FIELDS))
                .join(Household, Household.id == Member.household_id)
                .where(_among(session, Member.member_no, member_numbers))
            )
        }

        new_households: list[dict[str, Any]] = []
        changed_households: list[dict[str, Any]] = []
        household_ids: dict[str, int] = {}
        accounts: list[dict[str, Any]] = []
        for household in chunk:
            scheme = household.scheme
            assert scheme is not None
            network_id = household.network_id
            if household.network_name:
                network_id = self.networks[(scheme.id, slugify(household.network_name))]
            values: dict[str, Any] = {
                "scheme_id": scheme.id,
                "mutuelle_id": household.mutuelle_id,
                "network_id": network_id,
                "head_member_no": household.head_member_no,
                "commune": household.commune,
                "subsidy_category": household.subsidy_category,
                "plan": household.plan,
                "language": Language(household.language),
                "sms_opt_in": household.sms_opt_in,
            }
            enrolled_on = min(m.joined_on for m in household.members)
            current = stored.get(household.household_no)
            if current is None:
                report.households_created += 1
                new_households.append(
                    {
                        "household_no": household.household_no,
                        "enrolled_on": enrolled_on,
                        "created_at": self.stamp,
                        "updated_at": self.stamp,
                        **values,
                    }
                )
                continue
            household_ids[household.household_no] = current.id
            if current.scheme_id != scheme.id:
                report.errors.append(
                    RowError(household.line, "household_no", f"{household.household_no} belongs to another scheme")
                )
                continue
            if current.account_id is None:
                accounts.append({"scheme_id": scheme.id, "household_id": current.id, "currency": scheme.currency})
            # Enrolment never moves later: a member missing from a partial export keeps the first date.
            enrolled_on = min(enrolled_on, current.enrolled_on)
            if enrolled_on == current.enrolled_on and all(
                getattr(current, name) == value for name, value in values.items()
            ):
                report.households_unchanged += 1
            else:
                report.households_updated += 1
                changed_households.append(
                    {"id": current.id, "enrolled_on": enrolled_on, "updated_at": self.stamp, **values}
                )

        if new_households:
            if self.writing:
                bulk_insert(session, HOUSEHOLDS, new_households)
                numbers = [h["household_no"] for h in new_households]
                created = dict(
                    session.execute(
                        select(Household.household_no, Household.id).where(
                            _among(session, Household.household_no, numbers)
                        )
                    )
                    .tuples()
                    .all()
                )
            else:
                created = {h["household_no"]: self.fake_id() for h in new_households}
            household_ids.update(created)
            by_number = {h.household_no: h for h in chunk}
            for number, id_ in created.items():
                scheme = by_number[number].scheme
                assert scheme is not None
                accounts.append({"scheme_id": scheme.id, "household_id": id_, "currency": scheme.currency})
        if changed_households and self.writing:
            session.execute(update(Household), changed_households)
        report.accounts_created += len(accounts)
        if accounts and self.writing:
            bulk_insert(session, ACCOUNTS, [dict(a, created_at=self.stamp) for a in accounts])

        new_members: list[dict[str, Any]] = []
        changed_members: list[dict[str, Any]] = []
        for household in chunk:
            household_id = household_ids.get(household.household_no)
            if household_id is None:
                continue  # refused above
            for member in household.members:
                values = {
                    "household_id": household_id,
                    "last_name": member.last_name,
                    "first_name": member.first_name,
                    "sex": member.sex,
                    "date_of_birth": member.date_of_birth,
                    "relationship_to_head": member.relationship,
                    "phone": member.phone,
                    "status": member.status,
                    "joined_on": member.joined_on,
                }
                current = stored_members.get(member.member_no)
                if current is None:
                    report.members_created += 1
                    left_on = None if member.status is MemberStatus.ACTIVE else self.today
                    new_members.append(
                        {
                            "member_no": member.member_no,
                            "left_on": left_on,
                            "created_at": self.stamp,
                            "updated_at": self.stamp,
                            **values,
                        }
                    )
                    continue
                if current.household_no != household.household_no:
                    report.errors.append(
                        RowError(member.line, "member_no", f"{member.member_no} belongs to another household")
                    )
                    continue
                if all(getattr(current, name) == value for name, value in values.items()):
                    report.members_unchanged += 1
                    continue
                report.members_updated += 1
                # The export has no leaving date: record the day the import first saw the member leave.
                if member.status is MemberStatus.ACTIVE:
                    left_on = None
                elif current.status is MemberStatus.ACTIVE or current.left_on is None:
                    left_on = self.today
                else:
                    left_on = current.left_on
                changed_members.append({"id": current.id, "left_on": left_on, "updated_at": self.stamp, **values})
        if new_members and self.writing:
            bulk_insert(session, MEMBERS, new_members)
        if changed_members and self.writing:
            session.execute(update(Member), changed_members)
        if self.writing:
            self.book_prior_cover(chunk, household_ids)
            self.book_subsidised(chunk, household_ids)

    def book_prior_cover(self, chunk: list[_HouseholdRow], household_ids: dict[str, int]) -> None:
        """Book the cover the file says households already paid for (`paid_until`), once."""
        by_scheme: dict[int, dict[int, date]] = {}
        for household in chunk:
            if household.scheme is not None and household.paid_until and household.household_no in household_ids:
                paid = by_scheme.setdefault(household.scheme.id, {})
                paid[household_ids[household.household_no]] = household.paid_until
        for scheme_id, paid_until in by_scheme.items():
            scheme = self.session.get(Scheme, scheme_id)
            assert scheme is not None
            booked = book_prior_cover(self.session, scheme, paid_until, self.today, self.source)
            self.report.prior_cover_booked += booked

    def book_subsidised(self, chunk: list[_HouseholdRow], household_ids: dict[str, int]) -> None:
        """Fund from enrolment the fully subsidised households of the chunk that have no period yet."""
        by_scheme: dict[int, list[int]] = {}
        for household in chunk:
            if household.scheme is not None and household.household_no in household_ids:
                by_scheme.setdefault(household.scheme.id, []).append(household_ids[household.household_no])
        for scheme_id, ids in by_scheme.items():
            scheme = self.session.get(Scheme, scheme_id)
            assert scheme is not None
            self.report.subsidised_periods_booked += book_enrolment_subsidies(self.session, scheme, ids, self.today)
