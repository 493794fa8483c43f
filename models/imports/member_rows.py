"""What a line of the enrolment export says, typed and checked: the columns, the row values, the report.

`RowValidator` checks one line on its own (values, the scheme's categories, languages, plans and mutuelles, phones);
the checks that span lines live with the file's passes (`member_file`).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

from models.base import MemberStatus, Sex
from models.members.phones import normalise_phone
from models.schemes.mutuelle import Mutuelle, mutuelle_for_commune

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
_BLANK = dict.fromkeys((*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS), "")
MAX_KEPT_ERRORS = 10_000  # errors kept with their text; beyond, only counted
PHONE_CACHE = 4_096  # phones (a household's lines often repeat the head's) and communes looked up once

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


def network_want(household: HouseholdRow, scheme: SchemeInfo) -> NetworkWant:
    """Return the network a household names (it has one), as the first household naming it gives it."""
    assert household.network_name is not None
    name = household.network_name
    return NetworkWant(household.line, name, household.mutuelle_id, household.commune, scheme.currency)


@functools.lru_cache(maxsize=PHONE_CACHE)  # a file names a few networks, on every household
def slugify(name: str) -> str:
    """Return the code of a network name: ASCII lower-case words joined by dashes."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:60]


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
        self.names = list(index)  # in column order
        self.report = report
        self.phones: dict[tuple[str, str], str | ValueError] = {}
        self.ahead: dict[tuple[str, str], str | ValueError] = {}  # phones a helper normalised (`PhonesAhead`)
        self.mutuelles: dict[tuple[str, str, str | None], Mutuelle | str] = {}
        self.taped: tuple[int, int] | None = None  # pass 2: this row's phones as pass 1 normalised them
        self.network_phones: dict[tuple[str, str], tuple[str, int]] = {}  # (scheme, network slug) → (phone, line)

    def fields(self, row: Sequence[str]) -> dict[str, str]:
        """Return a line's values by column, stripped; a column the file lacks reads as empty."""
        found = _BLANK.copy()
        found.update(zip(self.names, map(str.strip, row), strict=False))
        return found

    def value(self, row: Mapping[str, str], column: str) -> str:
        return row.get(column, "")

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

    def member(self, line: int, row: Mapping[str, str], member_no: str, scheme: SchemeInfo | None) -> MemberRow | None:
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

    def paid_until(self, line: int, row: Mapping[str, str]) -> date | None:
        return self.date(line, self.value(row, "paid_until"), "paid_until", required=False)

    def new_household(
        self, line: int, row: Mapping[str, str], household_no: str, scheme: SchemeInfo | None
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

    def text(self, line: int, row: Mapping[str, str], column: str, limit: int, *, required: bool) -> str:
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
        result = self.ahead.get(key) or self.phones.get(key)
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
