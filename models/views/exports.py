"""CSV exports for a national information system (SUNUCMU / SIGICMU-style imports) and spreadsheets.

Each export is a header (its columns, documented in docs/exports.md with their meaning) and a generator of rows
of text cells, reading the database in batches of `EXPORT_BATCH` (a server-side cursor on PostgreSQL), so an
export of any size streams in constant memory. Dates are ISO (`YYYY-MM-DD`), times UTC `YYYY-MM-DD HH:MM:SS`,
amounts integers of the currency's minor unit, booleans `true`/`false`, missing values empty.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, aliased

from models.base import EligibilityStatus
from models.coverage.eligibility import member_answer
from models.coverage.money import CoveragePeriod
from models.members.household import Account, Household, Member, Network
from models.payments.payment import Payment
from models.schemes.scheme import Scheme
from models.views.listings import EXPORT_BATCH, PaymentFilters
from models.views.selection import HouseholdSelection
from models.views.standing import Standing, household_standings, load_schemes

# (column, meaning): the header of each export, in order; docs/exports.md documents the same columns.
HOUSEHOLD_COLUMNS = [
    ("household_no", "household number"),
    ("scheme", "scheme code"),
    ("head_member_no", "member number of the head of household"),
    ("head_last_name", "head's last name"),
    ("head_first_name", "head's first name"),
    ("head_sex", "head's sex: F or M"),
    ("head_date_of_birth", "head's date of birth"),
    ("head_phone", "head's phone, E.164"),
    ("commune", "commune"),
    ("network_code", "network (réseau) code"),
    ("network_name", "network name"),
    ("subsidy_category", "subsidy category"),
    ("plan", "payment plan"),
    ("members", "active members on the date"),
    ("enrolled_on", "enrolment date"),
    ("household_status", "administrative status: ACTIVE, SUSPENDED, CLOSED"),
    ("status_on", "the date the status is for"),
    ("coverage_status", "eligibility status on that date"),
    ("covered", "covered on that date: true or false"),
    ("coverage_start", "first day of the run of paid periods holding the date (or the last run before it)"),
    ("coverage_end", "last day of that run"),
    ("waiting_until", "last day of the waiting period, when one applies on the date"),
    ("amount_due", "to pay now to be covered"),
    ("next_payment_amount", "the next payment"),
    ("next_payment_due", "the next payment's due date"),
    ("currency", "ISO 4217 currency of the amounts"),
    ("sms_opt_in", "false after the household sent STOP"),
    ("language", "language of the household's SMS"),
]

MEMBER_COLUMNS = [
    ("member_no", "member number"),
    ("household_no", "household number"),
    ("scheme", "scheme code"),
    ("last_name", "last name"),
    ("first_name", "first name"),
    ("sex", "F or M"),
    ("date_of_birth", "date of birth"),
    ("relationship", "relationship to the head of household (head, spouse, child…)"),
    ("phone", "phone, E.164"),
    ("commune", "the household's commune"),
    ("network_code", "the household's network code"),
    ("subsidy_category", "the household's subsidy category"),
    ("plan", "the household's payment plan"),
    ("member_status", "active, left or deceased"),
    ("joined_on", "date the member joined the household"),
    ("left_on", "first day away, for a member who left"),
    ("status_on", "the date the status is for"),
    ("coverage_status", "eligibility status on that date"),
    ("covered", "covered on that date: true or false"),
    ("coverage_start", "first day of the household's run of paid periods holding the date, not before joining"),
    ("coverage_end", "last day of that run (empty for a member who left)"),
    ("waiting_until", "last day of the waiting period, when one applies on the date"),
    ("reason", "why not covered, in English (empty when covered)"),
]

PERIOD_COLUMNS = [
    ("period_id", "coverage period id"),
    ("household_no", "household number"),
    ("scheme", "scheme code"),
    ("commune", "the household's commune"),
    ("network_code", "the household's network code"),
    ("subsidy_category", "the household's subsidy category"),
    ("plan", "plan the period was bought on"),
    ("months", "months the period covers"),
    ("start_on", "first day covered"),
    ("end_on", "last day covered"),
    ("waiting_until", "last day of the waiting period within it"),
    ("price", "full price of the period"),
    ("household_share", "what the household paid of it"),
    ("subsidy_amount", "what the funder owes of it"),
    ("funder", "who pays the subsidy"),
    ("currency", "ISO 4217 currency of the amounts"),
    ("created_at", "when the period was booked (UTC)"),
    ("reversed_at", "when the payment that funded it was reversed (UTC); empty while it stands"),
]

PAYMENT_COLUMNS = [
    ("payment_id", "payment id"),
    ("paid_at", "when the payer paid (UTC)"),
    ("provider", "operator: wave, orange_money, mpesa, sandbox…"),
    ("provider_txn_id", "the operator's transaction id"),
    ("amount", "amount paid"),
    ("currency", "ISO 4217 currency"),
    ("payment_status", "RECEIVED, MATCHED, ALLOCATED, PROVISIONAL, UNMATCHED, CONFLICT, REVERSED, REFUNDED, REJECTED"),
    ("confirmed", "false while only an unconfirmed source reported it"),
    ("match_rule", "how it was matched"),
    ("payer_phone", "the payer's phone as the operator sent it"),
    ("reference", "the reference the payer typed"),
    ("scheme", "scheme code"),
    ("household_no", "household it paid (empty for a network payment)"),
    ("head_member_no", "member number of that household's head"),
    ("commune", "the household's commune, else the network's"),
    ("network_code", "the network it paid, else the household's network"),
    ("network_name", "that network's name"),
    ("recorded_at", "when Mutuelle recorded it (UTC)"),
]


def header(columns: list[tuple[str, str]]) -> list[str]:
    """Return the column names of an export."""
    return [name for name, _ in columns]


def cell(value: Any) -> str:
    """Return a value as a CSV cell: ISO dates, UTC times to the second, true/false, enum values, '' for None."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    return str(getattr(value, "value", value))


@dataclass(frozen=True)
class ExportFilters:
    """The filters of the household and member exports: which households, the status date and the statuses kept."""

    on: date
    households: HouseholdSelection = field(default_factory=HouseholdSelection)
    statuses: frozenset[EligibilityStatus] = frozenset()  # empty: any

    def keeps(self, status: EligibilityStatus) -> bool:
        """Return whether a row with this eligibility status is exported."""
        return not self.statuses or status in self.statuses


def _batches(session: Session, query: Select[Any]) -> Iterator[list[Any]]:
    for batch in session.execute(query.execution_options(yield_per=EXPORT_BATCH)).tuples().partitions():
        yield list(batch)


def household_rows(session: Session, filters: ExportFilters) -> Iterator[list[str]]:
    """Yield every selected household as CSV cells (`HOUSEHOLD_COLUMNS`), with its eligibility on the date."""
    schemes = load_schemes(session)
    head = aliased(Member)
    query = (
        select(Household, Account.id, head, Network.code, Network.name)
        .outerjoin(Account, Account.household_id == Household.id)
        .outerjoin(head, head.member_no == Household.head_member_no)
        .outerjoin(Network, Network.id == Household.network_id)
        .order_by(Household.household_no)
    )
    for batch in _batches(session, filters.households.apply(query)):
        accounts = {row[0].id: row[1] for row in batch if row[1] is not None}
        standings = household_standings(session, [row[0] for row in batch], filters.on, account_ids=accounts)
        for household, _, head_member, network_code, network_name in batch:
            standing = standings[household.id]
            answer = standing.answer
            if not filters.keeps(answer.status):
                continue
            yield [
                cell(value)
                for value in (
                    household.household_no,
                    schemes[household.scheme_id].code,
                    household.head_member_no,
                    head_member.last_name if head_member else None,
                    head_member.first_name if head_member else None,
                    head_member.sex if head_member else None,
                    head_member.date_of_birth if head_member else None,
                    head_member.phone if head_member else None,
                    household.commune,
                    network_code,
                    network_name,
                    household.subsidy_category,
                    household.plan,
                    standing.members,
                    household.enrolled_on,
                    household.status,
                    filters.on,
                    answer.status,
                    answer.covered,
                    standing.cover_start,
                    standing.cover_end,
                    answer.waiting_until,
                    answer.amount_due,
                    answer.next_payment_amount,
                    answer.next_payment_due,
                    answer.currency,
                    household.sms_opt_in,
                    household.language,
                )
            ]


def member_rows(session: Session, filters: ExportFilters) -> Iterator[list[str]]:
    """Yield every member of the selected households as CSV cells (`MEMBER_COLUMNS`), eligible or not on the date."""
    schemes = load_schemes(session)
    query = (
        select(Member, Household, Account.id, Network.code)
        .join(Household, Household.id == Member.household_id)
        .outerjoin(Account, Account.household_id == Household.id)
        .outerjoin(Network, Network.id == Household.network_id)
        .order_by(Household.household_no, Member.member_no)
    )
    for batch in _batches(session, filters.households.apply(query)):
        households = list({row[1].id: row[1] for row in batch}.values())
        accounts = {row[1].id: row[2] for row in batch if row[2] is not None}
        standings = household_standings(session, households, filters.on, account_ids=accounts)
        for member, household, _, network_code in batch:
            standing: Standing = standings[household.id]
            answer = member_answer(member.status, member.left_on, standing.answer, filters.on)
            if not filters.keeps(answer.status):
                continue
            counted = answer is standing.answer  # an active member: the household's cover is theirs
            start = standing.cover_start if counted else None
            if start is not None and member.joined_on > start:
                start = member.joined_on
            yield [
                cell(value)
                for value in (
                    member.member_no,
                    household.household_no,
                    schemes[household.scheme_id].code,
                    member.last_name,
                    member.first_name,
                    member.sex,
                    member.date_of_birth,
                    member.relationship_to_head,
                    member.phone,
                    household.commune,
                    network_code,
                    household.subsidy_category,
                    household.plan,
                    member.status,
                    member.joined_on,
                    member.left_on,
                    filters.on,
                    answer.status,
                    answer.covered,
                    start,
                    standing.cover_end if counted else None,
                    answer.waiting_until,
                    answer.reason,
                )
            ]


@dataclass(frozen=True)
class PeriodFilters:
    """The coverage period export's filters: the households, the dates the periods overlap, reversed ones or not."""

    households: HouseholdSelection = field(default_factory=HouseholdSelection)
    date_from: date | None = None  # periods ending on or after this day
    date_to: date | None = None  # periods starting on or before this day
    with_reversed: bool = False


def period_rows(session: Session, filters: PeriodFilters) -> Iterator[list[str]]:
    """Yield every selected coverage period as CSV cells (`PERIOD_COLUMNS`), by household and start."""
    query = (
        select(CoveragePeriod, Household, Scheme.code, Scheme.currency, Network.code)
        .join(Household, Household.id == CoveragePeriod.household_id)
        .join(Scheme, Scheme.id == Household.scheme_id)
        .outerjoin(Network, Network.id == Household.network_id)
        .order_by(Household.household_no, CoveragePeriod.start_on, CoveragePeriod.id)
    )
    if filters.date_from is not None:
        query = query.where(CoveragePeriod.end_on >= filters.date_from)
    if filters.date_to is not None:
        query = query.where(CoveragePeriod.start_on <= filters.date_to)
    if not filters.with_reversed:
        query = query.where(CoveragePeriod.reversed_at.is_(None))
    for batch in _batches(session, filters.households.apply(query)):
        for period, household, scheme_code, currency, network_code in batch:
            yield [
                cell(value)
                for value in (
                    period.id,
                    household.household_no,
                    scheme_code,
                    household.commune,
                    network_code,
                    household.subsidy_category,
                    period.plan,
                    period.months,
                    period.start_on,
                    period.end_on,
                    period.waiting_until,
                    period.price,
                    period.household_share,
                    period.subsidy_amount,
                    period.funder,
                    currency,
                    period.created_at,
                    period.reversed_at,
                )
            ]


def payment_rows(session: Session, filters: PaymentFilters) -> Iterator[list[str]]:
    """Yield every filtered payment as CSV cells (`PAYMENT_COLUMNS`), oldest first, with its household and network."""
    network = aliased(Network)
    query = (
        select(
            Payment,
            Scheme.code,
            Household.household_no,
            Household.head_member_no,
            Household.commune,
            network.code,
            network.name,
            network.commune,
        )
        .outerjoin(Household, Household.id == Payment.household_id)
        .outerjoin(network, network.id == func.coalesce(Payment.network_id, Household.network_id))
        .outerjoin(Scheme, Scheme.id == Payment.scheme_id)
    )
    query = filters.apply(query, Payment.paid_at).order_by(Payment.paid_at, Payment.id)
    for batch in _batches(session, query):
        for payment, scheme_code, household_no, head_no, commune, code, name, network_commune in batch:
            yield [
                cell(value)
                for value in (
                    payment.id,
                    payment.paid_at,
                    payment.provider,
                    payment.provider_txn_id,
                    payment.amount,
                    payment.currency,
                    payment.status,
                    payment.confirmed,
                    payment.match_rule,
                    payment.payer_phone,
                    payment.account_reference,
                    scheme_code,
                    household_no,
                    head_no,
                    commune or network_commune,
                    code,
                    name,
                    payment.created_at,
                )
            ]
