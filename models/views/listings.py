"""The admin's list pages: filtered, ordered newest first, one page at a time, in a fixed number of queries."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, and_, func, literal, or_, select, tuple_, union
from sqlalchemy.orm import QueryableAttribute, Session, aliased

from models.access.tables import Agent, ApiToken, EligibilityCheck
from models.base import MessageDirection, MessageStatus, PaymentStatus
from models.coverage.premiums import funder_pays_all_clause
from models.inputs import InputError
from models.members.household import Household, Member, Network
from models.messaging.message import DeliveryReport, Message, UssdSessionRecord
from models.payments.payment import Payment, ReconciliationEvent
from models.payments.rejections import RejectedCallback
from models.schemes.mutuelle import Mutuelle
from models.schemes.scheme import Scheme, SubsidyCategory

T = TypeVar("T")
MAX_PER_PAGE = 200
EXPORT_BATCH = 1000
SortKey = ColumnElement[Any] | QueryableAttribute[Any]
CURSOR_MAX = 400  # characters of an `after=` / `before=` cursor


@dataclass(frozen=True)
class Cursor:
    """Where a page starts: after the row with these sort keys (`after=`), or just before it (`before=`)."""

    values: tuple[Any, ...]
    before: bool = False
    inclusive: bool = False  # the row itself belongs to the page (a deep `page=` anchored on its first row)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of rows, whether more follow, and the cursors of the next and previous pages (no COUNT)."""

    items: list[T]
    number: int
    per_page: int
    has_next: bool
    next_after: str | None = None  # the next page's `after=` (the last row's sort keys)
    previous_before: str | None = None  # the previous page's `before=` (the first row's sort keys)
    more_before: bool | None = None  # known from a `before=` or `after=` page; else page 1 has none before

    @property
    def has_previous(self) -> bool:
        """Return whether a page comes before this one."""
        return self.number > 1 if self.more_before is None else self.more_before

    def with_items(self, items: list[Any]) -> Page[Any]:
        """Return the same page holding other items (the rows made into a view's records)."""
        return replace(self, items=items)


def encode_cursor(values: Sequence[Any]) -> str:
    """Return a row's sort keys as an opaque URL-safe cursor (JSON, base64)."""
    plain = [v.isoformat() if isinstance(v, date | datetime) else v for v in values]
    return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(raw: str, before: bool = False) -> Cursor:
    """Return the cursor of an `after=` (or `before=`) argument; InputError when it is not one this app made.

    The values are checked against the sort keys' types when the page is read (`paginate`).
    """
    name = "before" if before else "after"
    try:
        if len(raw) > CURSOR_MAX:
            raise ValueError("too long")
        values = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        if not isinstance(values, list) or not values or not all(isinstance(v, str | int) for v in values):
            raise ValueError("not a list of keys")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{name}: not a page cursor") from exc
    return Cursor(tuple(values), before=before)


def _typed(keys: Sequence[ColumnElement[Any]], values: tuple[Any, ...]) -> list[Any]:
    """Return a cursor's values as the keys' types; InputError when they do not fit."""
    if len(values) != len(keys):
        raise InputError("after: not a cursor of this list")
    typed = []
    for key, value in zip(keys, values, strict=True):
        try:
            kind = key.type.python_type
        except NotImplementedError:
            kind = object
        try:
            if kind is datetime:
                value = datetime.fromisoformat(str(value))
            elif kind is date:
                value = date.fromisoformat(str(value))
            elif kind in {int, str} and not isinstance(value, kind):
                raise ValueError(f"not a {kind.__name__}")
        except ValueError as exc:
            raise InputError("after: not a cursor of this list") from exc
        typed.append(value)
    return typed


def paginate(
    session: Session,
    query: Select[Any],
    number: int,
    per_page: int,
    *,
    order: Sequence[SortKey],
    descending: bool = False,
    cursor: Cursor | None = None,
    narrow: bool = False,
) -> Page[Any]:
    """Run the query for one page, ordered by `order` (unique together; all descending or all ascending).

    Keyset pagination: a page starts after the last row of the one before (`cursor`), so a deep page reads only
    its own rows wherever it is. A page asked by number only (`page=`, no cursor) first finds its first row's
    keys with an offset over the keys alone (an index-only walk, not the rows and their joins), then reads from
    there. One extra row tells whether another page follows; nothing is counted.

    `narrow`: find the page's keys first (the query over its sort keys only), then read the whole rows of those
    keys: for a query whose columns cost (eligibility worked out per row) and whose filter keeps many rows in an
    order no index gives (a name search), so that only the page's rows are worked out, not every row found.
    """
    per_page = max(1, min(per_page, MAX_PER_PAGE))
    number = max(1, number)
    keys = [key.expression if isinstance(key, QueryableAttribute) else key for key in order]

    def ordered(statement: Select[Any], reverse: bool = False) -> Select[Any]:
        down = descending != reverse
        return statement.order_by(None).order_by(*[key.desc() if down else key.asc() for key in keys])

    if cursor is None and number > 1:
        anchor = session.execute(
            ordered(query.with_only_columns(*keys)).offset((number - 1) * per_page).limit(1)
        ).first()
        if anchor is None:
            return Page([], number, per_page, False)
        cursor = Cursor(tuple(anchor), inclusive=True)
    statement = query.add_columns(*keys)
    reverse = cursor is not None and cursor.before
    if cursor is not None:
        row = tuple_(*keys)
        mark = tuple_(*[literal(value, key.type) for key, value in zip(keys, _typed(keys, cursor.values), strict=True)])
        later = descending != cursor.before  # the page lies below the mark in key order
        if cursor.inclusive:
            statement = statement.where(row <= mark if later else row >= mark)
        else:
            statement = statement.where(row < mark if later else row > mark)
    if narrow:
        found = session.execute(ordered(statement.with_only_columns(*keys), reverse).limit(per_page + 1)).all()
        if not found:
            return Page([], number, per_page, False, more_before=None if cursor is None else True)
        statement = statement.where(tuple_(*keys).in_([tuple(r) for r in found]))
    rows = list(session.execute(ordered(statement, reverse).limit(per_page + 1)))
    width = len(keys)
    more = len(rows) > per_page
    rows = rows[:per_page]
    if cursor is not None and cursor.before:
        rows.reverse()
    items = [tuple(r)[:-width] for r in rows]
    has_next = True if cursor is not None and cursor.before else more
    more_before = None if cursor is None else more if cursor.before else True
    has_previous = number > 1 if more_before is None else more_before
    return Page(
        items,
        number,
        per_page,
        has_next,
        next_after=encode_cursor(tuple(rows[-1])[-width:]) if rows and has_next else None,
        previous_before=encode_cursor(tuple(rows[0])[-width:]) if rows and has_previous else None,
        more_before=more_before,
    )


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min)


@dataclass(frozen=True)
class PaymentFilters:
    """Filters of the reconciliation log and the payments list; None means "any"."""

    date_from: date | None = None
    date_to: date | None = None  # inclusive
    provider: str | None = None
    status: PaymentStatus | None = None
    scheme_id: int | None = None
    commune: str | None = None
    network_id: int | None = None

    def apply(self, query: Select[Any], moment: Any) -> Select[Any]:
        """Return the query restricted by these filters, the date range applying to the `moment` column."""
        if self.date_from is not None:
            query = query.where(moment >= _day_start(self.date_from))
        if self.date_to is not None:
            query = query.where(moment < _day_start(self.date_to + timedelta(days=1)))
        if self.provider:
            query = query.where(Payment.provider == self.provider)
        if self.status is not None:
            query = query.where(Payment.status == self.status)
        if self.scheme_id is not None:
            query = query.where(Payment.scheme_id == self.scheme_id)
        if self.commune:
            # A network payment is in its network's commune, as the lists and exports show it.
            networks_there = select(Network.id).where(Network.commune == self.commune)
            query = query.where(or_(Household.commune == self.commune, Payment.network_id.in_(networks_there)))
        if self.network_id is not None:
            # The network's payments and its households' by their indexes (a network has a few dozen households),
            # as ids: an OR over the joined household would be checked on every payment.
            members = select(Household.id).where(Household.network_id == self.network_id)
            paid = union(
                select(Payment.id).where(Payment.network_id == self.network_id),
                select(Payment.id).where(Payment.household_id.in_(members)),
            )
            query = query.where(Payment.id.in_(select(paid.subquery().c[0])))
        return query


@dataclass(frozen=True)
class FilterChoices:
    """The values the filter drop-downs offer."""

    providers: list[str]
    schemes: list[tuple[int, str]]
    communes: list[str]
    networks: list[tuple[int, str]]
    statuses: list[str] = field(default_factory=lambda: [s.value for s in PaymentStatus])


def loose_distinct(column: Any) -> Any:
    """Return a subquery of a column's distinct values (`value`) read as a loose index scan: a recursive CTE
    stepping from one value to the next through the column's index, a few lookups for a few values, where
    `SELECT DISTINCT` would read every row (a million households for their handful of communes)."""
    first = select(func.min(column).label("value")).cte("distinct_values", recursive=True)
    following = select(select(func.min(column)).where(column > first.c.value).scalar_subquery()).where(
        first.c.value.is_not(None)
    )
    values = first.union_all(following)
    return select(values.c.value).where(values.c.value.is_not(None)).subquery()


def filter_choices(session: Session) -> FilterChoices:
    """Return the providers, schemes, communes and networks to filter on (small, distinct lists)."""
    by_provider = loose_distinct(Payment.provider)  # the (provider, provider_txn_id) unique index
    providers = list(session.scalars(select(by_provider.c.value).limit(50)))
    schemes = list(session.execute(select(Scheme.id, Scheme.name).order_by(Scheme.name)).tuples())
    communes = [
        c for c in session.scalars(select(loose_distinct(Household.commune).c.value).limit(500)) if c is not None
    ]
    networks = list(session.execute(select(Network.id, Network.name).order_by(Network.name).limit(500)).tuples())
    return FilterChoices(providers, schemes, communes, networks)


def _reconciliation_query(filters: PaymentFilters) -> Select[Any]:
    query = (
        select(ReconciliationEvent, Payment, Household.household_no)
        .outerjoin(Payment, Payment.id == ReconciliationEvent.payment_id)
        .outerjoin(Household, Household.id == Payment.household_id)
    )
    if filters.status is not None:
        # The events of the payments in that status, found from the payments (their status index), not by
        # walking every event newest first and reading its payment: a status held by a few old payments
        # (UNMATCHED) had the walk read half the events of a million households before finding a page.
        in_status = select(Payment.id).where(Payment.status == filters.status)
        query = query.where(ReconciliationEvent.payment_id.in_(in_status))
    return filters.apply(query, ReconciliationEvent.created_at).order_by(ReconciliationEvent.id.desc())


def reconciliation_log(
    session: Session, filters: PaymentFilters, number: int = 1, per_page: int = 50, cursor: Cursor | None = None
) -> Page[tuple[ReconciliationEvent, Payment | None, str | None]]:
    """Return one page of reconciliation events with their payment and household number."""
    query = _reconciliation_query(filters)
    return paginate(session, query, number, per_page, order=[ReconciliationEvent.id], descending=True, cursor=cursor)


RECONCILIATION_CSV_HEADER = [
    "event_id",
    "event_at",
    "actor",
    "rule",
    "before_status",
    "after_status",
    "note",
    "payment_id",
    "provider",
    "provider_txn_id",
    "amount",
    "currency",
    "paid_at",
    "payment_status",
    "household_no",
    "commune",
    "network_code",
    "network_name",
    "head_member_no",
    "head_name",
    "payer_member_no",
]


def _reconciliation_export_query(filters: PaymentFilters) -> Select[Any]:
    """Return the log's query with where each payment belongs: commune, network, head and paying member.

    The network is the household's, or the one a network payment paid; the commune the household's, or that
    network's; the paying member the household's member whose phone paid, if any.
    """
    paid_to, households_network = aliased(Network), aliased(Network)
    head, payer = aliased(Member), aliased(Member)
    payer_no = (
        select(payer.member_no)
        .where(payer.household_id == Payment.household_id, payer.phone == Payment.payer_phone)
        .order_by(payer.member_no)
        .limit(1)
        .scalar_subquery()
    )
    return (
        _reconciliation_query(filters)
        .outerjoin(paid_to, paid_to.id == Payment.network_id)
        .outerjoin(households_network, households_network.id == Household.network_id)
        .outerjoin(head, and_(head.household_id == Household.id, head.member_no == Household.head_member_no))
        .add_columns(
            func.coalesce(Household.commune, paid_to.commune),
            func.coalesce(households_network.code, paid_to.code),
            func.coalesce(households_network.name, paid_to.name),
            head.member_no,
            head.first_name,
            head.last_name,
            payer_no,
        )
    )


def reconciliation_rows(session: Session, filters: PaymentFilters) -> Iterator[list[str]]:
    """Yield every filtered reconciliation event as CSV cells, reading the database in batches."""
    query = _reconciliation_export_query(filters).execution_options(yield_per=EXPORT_BATCH)
    for event, payment, household_no, commune, code, name, head_no, first, last, payer_no in session.execute(
        query
    ).tuples():
        yield [
            str(event.id),
            event.created_at.isoformat(sep=" ", timespec="seconds"),
            event.actor,
            event.rule or "",
            event.before_status or "",
            event.after_status or "",
            event.note or "",
            str(payment.id) if payment else "",
            payment.provider if payment else "",
            payment.provider_txn_id if payment else "",
            str(payment.amount) if payment else "",
            payment.currency if payment else "",
            payment.paid_at.isoformat(sep=" ", timespec="seconds") if payment else "",
            payment.status.value if payment else "",
            household_no or "",
            commune or "",
            code or "",
            name or "",
            head_no or "",
            f"{first} {last}" if head_no else "",
            payer_no or "",
        ]


def payments_list(
    session: Session, filters: PaymentFilters, number: int = 1, per_page: int = 50, cursor: Cursor | None = None
) -> Page[tuple[Payment, str | None, str | None]]:
    """Return one page of payments (newest first) with their household number and network name."""
    query = (
        select(Payment, Household.household_no, Network.name)
        .outerjoin(Household, Household.id == Payment.household_id)
        .outerjoin(Network, Network.id == Payment.network_id)
    )
    query = filters.apply(query, Payment.paid_at)
    order = [Payment.created_at, Payment.id]
    return paginate(session, query, number, per_page, order=order, descending=True, cursor=cursor)


def subsidised_payments(
    session: Session, number: int = 1, per_page: int = 50, cursor: Cursor | None = None
) -> Page[tuple[Payment, str | None, str | None]]:
    """Return one page of the "to refund or keep" list: money a fully subsidised household paid, newest first.

    Its funder pays all of its cover, so such a payment only sits as credit: staff refund it (from the payment's
    page) or keep it (say, a gift from a relative). Refunded or reversed payments leave the list.
    """
    full = select(SubsidyCategory.id).where(
        SubsidyCategory.scheme_id == Household.scheme_id,
        SubsidyCategory.code == Household.subsidy_category,
        funder_pays_all_clause(SubsidyCategory.share_bp),
    )
    query = (
        select(Payment, Household.household_no, Network.name)
        .join(Household, Household.id == Payment.household_id)
        .outerjoin(Network, Network.id == Payment.network_id)
        .where(
            full.exists(),
            Payment.status.in_([PaymentStatus.MATCHED, PaymentStatus.ALLOCATED, PaymentStatus.PROVISIONAL]),
        )
    )
    order = [Payment.paid_at, Payment.id]
    return paginate(session, query, number, per_page, order=order, descending=True, cursor=cursor)


@dataclass(frozen=True)
class MessageRow:
    """An SMS with its delivery reports."""

    message: Message
    household_no: str | None
    reports: list[DeliveryReport]


def messages_list(
    session: Session,
    direction: MessageDirection | None = None,
    status: MessageStatus | None = None,
    number: int = 1,
    per_page: int = 50,
    cursor: Cursor | None = None,
) -> Page[MessageRow]:
    """Return one page of SMS (newest first) with their delivery reports (two queries)."""
    query = select(Message, Household.household_no).outerjoin(Household, Household.id == Message.household_id)
    if direction is not None:
        query = query.where(Message.direction == direction)
    if status is not None:
        query = query.where(Message.status == status)
    order = [Message.created_at, Message.id]
    page = paginate(session, query, number, per_page, order=order, descending=True, cursor=cursor)
    reports: dict[int, list[DeliveryReport]] = {}
    ids = [message.id for message, _ in page.items]
    if ids:
        for report in session.scalars(
            select(DeliveryReport).where(DeliveryReport.message_id.in_(ids)).order_by(DeliveryReport.id)
        ):
            reports.setdefault(report.message_id or 0, []).append(report)
    rows = [MessageRow(message, household_no, reports.get(message.id, [])) for message, household_no in page.items]
    return page.with_items(rows)


def ussd_sessions(
    session: Session,
    start: datetime,
    end: datetime,
    number: int = 1,
    per_page: int = 50,
    cursor: Cursor | None = None,
) -> Page[tuple[UssdSessionRecord]]:
    """Return one page of USSD session records created in [start, end), newest first."""
    query = select(UssdSessionRecord).where(UssdSessionRecord.created_at >= start, UssdSessionRecord.created_at < end)
    order = [UssdSessionRecord.created_at, UssdSessionRecord.id]
    return paginate(session, query, number, per_page, order=order, descending=True, cursor=cursor)


def eligibility_checks(
    session: Session,
    member_no: str | None = None,
    facility: str | None = None,
    number: int = 1,
    per_page: int = 50,
    cursor: Cursor | None = None,
) -> Page[tuple[EligibilityCheck, str | None, str | None]]:
    """Return one page of facility checks (newest first) with the agent's phone or the token's name."""
    query = (
        select(EligibilityCheck, Agent.phone, ApiToken.name)
        .outerjoin(Agent, Agent.id == EligibilityCheck.agent_id)
        .outerjoin(ApiToken, ApiToken.id == EligibilityCheck.api_token_id)
    )
    if member_no:
        query = query.where(EligibilityCheck.member_no == member_no.strip().upper())
    if facility:
        query = query.where(EligibilityCheck.facility == facility)
    order = [EligibilityCheck.created_at, EligibilityCheck.id]
    return paginate(session, query, number, per_page, order=order, descending=True, cursor=cursor)


def rejected_callbacks(
    session: Session,
    source: str | None = None,
    number: int = 1,
    per_page: int = 50,
    cursor: Cursor | None = None,
) -> Page[tuple[RejectedCallback]]:
    """Return one page of refused callbacks, most recently seen first."""
    query = select(RejectedCallback)
    if source:
        query = query.where(RejectedCallback.source == source)
    order = [RejectedCallback.last_seen_at, RejectedCallback.id]
    return paginate(session, query, number, per_page, order=order, descending=True, cursor=cursor)


def networks_list(
    session: Session,
    number: int = 1,
    per_page: int = 50,
    scheme_id: int | None = None,
    commune: str | None = None,
    mutuelle: str | None = None,
    cursor: Cursor | None = None,
) -> Page[tuple[Network, str, str]]:
    """Return one page of networks with their scheme's name and mutuelle's code, of a scheme, commune and mutuelle
    when given."""
    query = (
        select(Network, Scheme.name, Mutuelle.code)
        .join(Scheme, Scheme.id == Network.scheme_id)
        .join(Mutuelle, Mutuelle.id == Network.mutuelle_id)
    )
    if scheme_id is not None:
        query = query.where(Network.scheme_id == scheme_id)
    if mutuelle:
        query = query.where(Mutuelle.code == mutuelle)
    if commune:
        query = query.where(Network.commune == commune)
    return paginate(session, query, number, per_page, order=[Network.name, Network.id], cursor=cursor)


def distinct_values(values: Sequence[str | None]) -> list[str]:
    """Return the non-empty values, each once, in order."""
    return list(dict.fromkeys(v for v in values if v))
