"""Import the enrolment export (households and members, CSV): check every line, then write in bulk.

All or nothing: any bad row and nothing is written, with every bad line reported. The file is never held whole
(`member_file`), so memory does not grow with it: households are written as they are checked when the file keeps
each household's lines together, else once every line is checked by reading the file again; either way in a
savepoint that any error undoes. Rows are compared with what is stored, chunk by chunk, so importing the same file
again changes nothing.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session, SessionTransaction

from models.base import Language, MemberStatus, Sex, utcnow
from models.bulk import among, insert_many, insert_rows, refresh_statistics, table_of, uses_sequences
from models.coverage.money import Allocation, CoveragePeriod, LedgerEntry
from models.coverage.periods import book_enrolment_subsidies, book_prior_cover
from models.db import begin_write
from models.imports.member_file import check_file, households_of
from models.imports.member_rows import (
    REQUIRED_COLUMNS,
    HouseholdRow,
    ImportFileError,
    ImportReport,
    MemberRow,
    NetworkWant,
    Progress,
    RowError,
    SchemeInfo,
    network_want,
    slugify,
)
from models.members.household import Account, Household, Member, Network
from models.schemes.mutuelle import scheme_mutuelles
from models.schemes.scheme import Scheme

CHUNK_HOUSEHOLDS = 2000
SWITCH_INTERVAL = 0.0005  # seconds a thread holds the interpreter while another waits, during a threaded write
# What an import writes (with the cover it books from enrolment and `paid_until`): analysed once committed.
MODELS_WRITTEN = (Network, Household, Member, Account, CoveragePeriod, Allocation, LedgerEntry)
# Core tables: bulk inserts skip the ORM's per-object bookkeeping.
HOUSEHOLDS = table_of(Household)
MEMBERS = table_of(Member)
ACCOUNTS = table_of(Account)

__all__ = [
    "MODELS_WRITTEN",
    "REQUIRED_COLUMNS",
    "ImportFileError",
    "ImportReport",
    "NewHousehold",
    "NewMember",
    "RowError",
    "create_household",
    "import_members",
    "slugify",
]


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
    row = HouseholdRow(
        household_no=household.household_no,
        line=0,
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
            MemberRow(
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
    _Writer(session, today, report, False, None, source).run([row], 1)
    if report.errors:
        raise ValueError("; ".join(error.reason for error in report.errors))
    return report


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

    Nothing is written when any row is bad (the report lists the errors, the first MAX_KEPT_ERRORS by text and
    the rest as a count) or on a dry run. The file may be read twice, never held whole: `source` must be seekable. The
    caller commits; the writes sit in a savepoint so a failure leaves the caller's transaction as it was.
    """
    today = today or utcnow().date()
    schemes = _load_schemes(session)
    if scheme_code is not None and scheme_code not in schemes:
        raise ImportFileError(f"unknown scheme {scheme_code!r}")
    report = ImportReport(dry_run=dry_run)
    if not isinstance(source, str | Path):
        _import(session, source, schemes, scheme_code, today, report, progress, "members import")
        return report
    try:
        with open(source, newline="", encoding="utf-8-sig") as handle:
            _import(
                session, handle, schemes, scheme_code, today, report, progress, f"members import {Path(source).name}"
            )
    except OSError as exc:
        raise ImportFileError(f"cannot read {source}: {exc.strerror}") from exc
    return report


def _import(
    session: Session,
    handle: TextIO,
    schemes: dict[str, SchemeInfo],
    scheme_code: str | None,
    today: date,
    report: ImportReport,
    progress: Progress | None,
    name: str,
) -> None:
    """Check the whole file, writing its households as they are checked; undo and write again if need be.

    While the file's households are together and every line so far is right, each checked household goes to the
    writer at once (on PostgreSQL, a thread: the database works while the file is read). All in a savepoint: an
    error anywhere, in the file or from the database, undoes it all. A file whose households are scattered is
    undone when that shows and written by reading it a second time (`households_of`).
    """
    if not handle.seekable():
        raise ImportFileError("the file may be read twice: give a file, not a stream")
    start = handle.tell()
    savepoint = None if report.dry_run else _savepoint(session)

    def new_writer() -> _Writer:  # with its own report: what it counts is the file's only once all is written
        return _Writer(session, today, ImportReport(dry_run=report.dry_run), report.dry_run, progress, name)

    check = None
    try:
        writer = new_writer()
        with _WriteBehind(writer, threaded=uses_sequences(session)) as behind:
            check = check_file(handle, schemes, scheme_code, today, report, progress, emit=behind.add)
            written = check is not None and check.written and behind.finish()
        if check is not None and not written:
            if progress is not None and writer.households_done:
                progress("undone", writer.households_done, None)
            if savepoint is not None:  # undo the households handed on before the file showed its shape
                savepoint.rollback()
                savepoint = _savepoint(session)
            writer = new_writer()
            writer.run(households_of(handle, start, check, schemes, scheme_code, today, report), len(check.keys))
        if check is not None:
            writer.report_to(report)
    except BaseException:
        if savepoint is not None:
            savepoint.rollback()
        raise
    finally:
        if check is not None:
            check.close()
    if report.ok or savepoint is None:
        if savepoint is not None:
            savepoint.commit()
        return
    savepoint.rollback()
    _zero_counts(report)


def _savepoint(session: Session) -> SessionTransaction:
    begin_write(session)
    return session.begin_nested()


class _WriteBehind:
    """Hand checked households to the writer chunk by chunk: on a thread (PostgreSQL), else at once.

    The thread holds the session until `finish` or the end of the `with`; a bounded queue keeps the reader at
    most a few chunks ahead. A failure of the writer is raised by `finish`; on leaving the `with` without
    `finish` (the file was not all right), what the writer does is stopped and its failure forgotten: the caller
    undoes its writes.
    """

    def __init__(self, writer: _Writer, *, threaded: bool) -> None:
        self.writer = writer
        self.chunk: list[HouseholdRow] = []
        self.failure: BaseException | None = None
        self.stopped = False
        self.queue: queue.Queue[list[HouseholdRow] | None] = queue.Queue(maxsize=2)
        self.thread = threading.Thread(target=self._drain, name="members-import-writer", daemon=True)
        self.threaded = threaded
        self.switch_interval = SWITCH_INTERVAL

    def __enter__(self) -> _WriteBehind:
        if self.threaded:
            # The writer mostly waits for the database; once answered, it takes the interpreter back within
            # 0.5 ms instead of the default 5 (measured: a 50,000-household import 32 s → 23 s).
            self.switch_interval = sys.getswitchinterval()
            sys.setswitchinterval(min(self.switch_interval, SWITCH_INTERVAL))
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped = True
        try:
            self._close()
        finally:
            if self.threaded:
                sys.setswitchinterval(self.switch_interval)

    def add(self, household: HouseholdRow) -> None:
        self.chunk.append(household)
        if len(self.chunk) == CHUNK_HOUSEHOLDS:
            self._hand(self.chunk)
            self.chunk = []

    def finish(self) -> bool:
        """Write what is left and wait for the writer; raise its failure; return True (all written)."""
        if self.chunk:
            self._hand(self.chunk)
            self.chunk = []
        self._close()
        if self.failure is not None:
            raise self.failure
        self.writer.done()
        return True

    def _hand(self, chunk: list[HouseholdRow]) -> None:
        if self.failure is not None or self.stopped:
            return
        if self.threaded:
            self.queue.put(chunk)
            return
        try:
            self.writer.write_chunk(chunk)
        except Exception as exc:  # noqa: BLE001 (raised by `finish` once the file is known right)
            self.failure = exc

    def _close(self) -> None:
        """Let the writer end and wait for it: the session is not the caller's again before (Ctrl-C waits too)."""
        if not self.threaded:
            return
        interrupted: KeyboardInterrupt | None = None
        sent = False
        while self.thread.is_alive():
            try:
                if not sent:
                    self.queue.put(None)
                    sent = True
                self.thread.join()
            except KeyboardInterrupt as exc:
                self.stopped = True
                interrupted = exc
        if interrupted is not None:
            raise interrupted

    def _drain(self) -> None:
        # Every chunk is taken off the queue, written or not, so the reader never waits on a full one.
        while (chunk := self.queue.get()) is not None:
            if self.failure is None and not self.stopped:
                try:
                    self.writer.write_chunk(chunk)
                except BaseException as exc:  # noqa: BLE001 (the thread's own: raised again by `finish`)
                    self.failure = exc


_COUNTS = (
    "members_created",
    "members_updated",
    "members_unchanged",
    "households_created",
    "households_updated",
    "households_unchanged",
    "networks_created",
    "accounts_created",
    "subsidised_periods_booked",
    "prior_cover_booked",
)


def _zero_counts(report: ImportReport) -> None:
    for name in _COUNTS:
        setattr(report, name, 0)


def _load_schemes(session: Session) -> dict[str, SchemeInfo]:
    schemes = {}
    for scheme in session.scalars(select(Scheme)):
        default_plan = next(
            (p.code for p in scheme.plans if p.is_default), scheme.plans[0].code if scheme.plans else ""
        )
        schemes[scheme.code] = SchemeInfo(
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


# ---------------------------------------------------------------- writing


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
        today: date,
        report: ImportReport,
        dry_run: bool,
        progress: Progress | None,
        source: str = "members import",
    ) -> None:
        self.session = session
        self.today = today
        self.report = report
        self.dry_run = dry_run
        self.progress = progress
        self.source = source
        self.stamp: datetime = utcnow()
        self.networks: dict[tuple[int, str], int] = {}
        self.synced: set[tuple[int, str]] = set()  # networks the file named so far, checked and created
        self.contacts: dict[tuple[int, str], str] = {}  # their contacts as set
        self.households_done = self.chunks_done = 0
        self.said: tuple[int, int | None] = (-1, None)  # the last progress line: households written, of how many
        self._placeholder = 0

    def fake_id(self) -> int:
        # A dry run invents ids for rows it would create so comparisons still work.
        self._placeholder -= 1
        return self._placeholder

    @property
    def writing(self) -> bool:
        return not self.dry_run and self.report.ok

    def run(self, households: Iterable[HouseholdRow], total: int | None = None) -> None:
        """Compare and write the households chunk by chunk, holding one chunk at a time."""
        chunk: list[HouseholdRow] = []
        for household in households:
            chunk.append(household)
            if len(chunk) == CHUNK_HOUSEHOLDS:
                self.write_chunk(chunk, total)
                chunk = []
        if chunk:
            self.write_chunk(chunk, total)
        self.done()

    def write_chunk(self, chunk: list[HouseholdRow], total: int | None = None) -> None:
        """Write a chunk: the networks it names first, then its households, members and their cover.

        A large import refreshes the planner's statistics of what it writes after chunks 2, 4, 8, …: each chunk's
        lookups (stored rows, cover already booked) are then planned for the tables' size, not an empty table's.
        """
        self.sync_networks(chunk)
        self.sync_chunk(chunk)
        self.households_done += len(chunk)
        self.chunks_done += 1
        chunks = self.chunks_done
        if self.writing and chunks >= 2 and chunks & (chunks - 1) == 0:
            refresh_statistics(self.session, MODELS_WRITTEN)
        if self.progress is not None:
            self.progress("write", self.households_done, total)
            self.said = (self.households_done, total)

    def done(self) -> None:
        """Say the last progress line (with the total, unless said) and put the errors in line order."""
        if self.progress is not None and self.said != (self.households_done, self.households_done):
            self.progress("write", self.households_done, self.households_done)
        self.report.errors.sort(key=lambda e: e.line)

    def report_to(self, report: ImportReport) -> None:
        """Add what the writer counted and the errors the database gave to the file's report."""
        for name in _COUNTS:
            setattr(report, name, getattr(self.report, name))
        for error in self.report.errors:
            report.add_error(error)
        report.more_errors += self.report.more_errors
        report.errors.sort(key=lambda e: e.line)

    def sync_networks(self, chunk: list[HouseholdRow]) -> None:
        """Create the networks the chunk names first (code = slug of the name, per scheme), their accounts, contacts.

        A network's contact may come with a later household than the first naming it: it is set then.
        """
        wanted: dict[tuple[int, str], NetworkWant] = {}
        contacts: dict[tuple[int, str], str] = {}
        for household in chunk:
            scheme = household.scheme
            if not household.network_name or scheme is None:
                continue
            key = (scheme.id, slugify(household.network_name))
            if key not in self.synced:
                wanted.setdefault(key, network_want(household, scheme))
            if household.network_phone and self.contacts.get(key) != household.network_phone:
                contacts[key] = household.network_phone
        if wanted:
            self.create_networks(wanted, contacts)
            self.synced.update(wanted)
        for key, phone in contacts.items():
            self.contacts[key] = phone
            if key not in wanted and not self.dry_run:  # the file names the network's contact: it wins
                network_id = self.networks[key]
                self.session.execute(update(Network).where(Network.id == network_id).values(contact_phone=phone))

    def create_networks(self, wanted: dict[tuple[int, str], NetworkWant], contacts: dict[tuple[int, str], str]) -> None:
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
        for key, want in wanted.items():
            if key in network_mutuelles and network_mutuelles[key] != want.mutuelle_id:
                self.report.add_error(
                    RowError(want.line, "network", f"network {want.name!r} belongs to another mutuelle of the scheme")
                )
        accounts = []
        for key, want in wanted.items():
            if key not in self.networks:
                self.report.networks_created += 1
                if self.dry_run:
                    self.networks[key] = self.fake_id()
                else:
                    self.networks[key] = self.session.execute(
                        insert(Network).returning(Network.id),
                        {
                            "scheme_id": key[0],
                            "mutuelle_id": want.mutuelle_id,
                            "code": key[1],
                            "name": want.name,
                            "commune": want.commune,
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
                    {"scheme_id": key[0], "network_id": network_id, "currency": want.currency, "created_at": self.stamp}
                )
        self.report.accounts_created += len(accounts)
        if accounts and not self.dry_run:
            insert_many(self.session, ACCOUNTS, accounts)

    def sync_chunk(self, chunk: list[HouseholdRow]) -> None:
        session = self.session
        report = self.report
        stored = {
            row.household_no: row
            for row in session.execute(
                select(Household.household_no, Household.id, Household.enrolled_on, Account.id.label("account_id"))
                .add_columns(*(getattr(Household, name) for name in _HOUSEHOLD_FIELDS))
                .outerjoin(Account, Account.household_id == Household.id)
                .where(among(session, Household.household_no, [h.household_no for h in chunk]))
            )
        }
        member_numbers = [m.member_no for h in chunk for m in h.members]
        stored_members = {
            row.member_no: row
            for row in session.execute(
                select(Member.member_no, Member.id, Member.left_on, Household.household_no)
                .add_columns(*(getattr(Member, name) for name in _MEMBER_FIELDS))
                .join(Household, Household.id == Member.household_id)
                .where(among(session, Member.member_no, member_numbers))
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
                report.add_error(
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
                ids = insert_rows(session, HOUSEHOLDS, new_households)
                created = {h["household_no"]: id_ for h, id_ in zip(new_households, ids, strict=True)}
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
            insert_many(session, ACCOUNTS, [dict(a, created_at=self.stamp) for a in accounts])

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
                    report.add_error(
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
            insert_many(session, MEMBERS, new_members)
        if changed_members and self.writing:
            session.execute(update(Member), changed_members)
        if self.writing:
            self.book_prior_cover(chunk, household_ids)
            self.book_subsidised(chunk, household_ids)

    def book_prior_cover(self, chunk: list[HouseholdRow], household_ids: dict[str, int]) -> None:
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

    def book_subsidised(self, chunk: list[HouseholdRow], household_ids: dict[str, int]) -> None:
        """Fund from enrolment the fully subsidised households of the chunk that have no period yet."""
        by_scheme: dict[int, list[int]] = {}
        for household in chunk:
            if household.scheme is not None and household.household_no in household_ids:
                by_scheme.setdefault(household.scheme.id, []).append(household_ids[household.household_no])
        for scheme_id, ids in by_scheme.items():
            scheme = self.session.get(Scheme, scheme_id)
            assert scheme is not None
            self.report.subsidised_periods_booked += book_enrolment_subsidies(self.session, scheme, ids, self.today)
