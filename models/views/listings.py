"""The admin's list pages: filtered, ordered newest first, one page at a time, in a fixed number of queries."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, and_, func, or_, select
from sqlalchemy.orm import Session, aliased

from models.access.tables import Agent, ApiToken, EligibilityCheck
from models.base import MessageDirection, MessageStatus, PaymentStatus
from models.coverage.premiums import funder_pays_all_clause
from models.members.household import Household, Member, Network
from models.messaging.message import DeliveryReport, Message, UssdSessionRecord
from models.payments.payment import Payment, ReconciliationEvent
from models.payments.rejections import RejectedCallback
from models.schemes.mutuelle import Mutuelle
from models.schemes.scheme import Scheme, SubsidyCategory

T = TypeVar("T")
MAX_PER_PAGE = 200
EXPORT_BATCH = 1000


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of rows and whether more follow (no COUNT over the whole table)."""

    items: list[T]
    number: int
    per_page: int
    has_next: bool

    @property
    def has_previous(self) -> bool:
        """Return whether a page comes before this one."""
        return self.number > 1


def paginate(session: Session, query: Select[Any], number: int, per_page: int) -> Page[Any]:
    """Run the query for one page (one extra row tells whether another page follows)."""
    per_page = max(1, min(per_page, MAX_PER_PAGE))
    number = max(1, number)
    rows = list(session.execute(query.limit(per_page + 1).offset((number - 1) * per_page)).tuples())
    return Page(rows[:per_page], number, per_page, len(rows) > per_page)


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
            query = query.where(or_(Payment.network_id == self.network_id, Household.network_id == self.network_id))
        return query


@dataclass(frozen=True)
class FilterChoices:
    """The values the filter drop-downs offer."""

    providers: list[str]
    schemes: list[tuple[int, str]]
    communes: list[str]
    networks: list[tuple[int, str]]
    statuses: list[str] = field(default_factory=lambda: [s.value for s in PaymentStatus])


def filter_choices(session: Session) -> FilterChoices:
    """Return the providers, schemes, communes and networks to filter on (small, distinct lists)."""
    providers = list(session.scalars(select(Payment.provider).distinct().order_by(Payment.provider).limit(50)))
    schemes = list(session.execute(select(Scheme.id, Scheme.name).order_by(Scheme.name)).tuples())
    communes = [
        c
        for c in session.scalars(select(Household.commune).distinct().order_by(Household.commune).limit(500))
        if c is not None
    ]
    networks = list(session.execute(select(Network.id, Network.name).order_by(Network.name).limit(500)).tuples())
    return FilterChoices(providers, schemes, communes, networks)


def _reconciliation_query(filters: PaymentFilters) -> Select[Any]:
    query = (
        select(ReconciliationEvent, Payment, Household.household_no)
        .outerjoin(Payment, Payment.id == ReconciliationEvent.payment_id)
        .outerjoin(Household, Household.id == Payment.household_id)
    )
    return filters.apply(query, ReconciliationEvent.created_at).order_by(ReconciliationEvent.id.desc())


def reconciliation_log(
    session: Session, filters: PaymentFilters, number: int = 1, per_page: int = 50
) -> Page[tuple[ReconciliationEvent, Payment | None, str | None]]:
    """Return one page of reconciliation events with their payment and household number."""
    return paginate(session, _reconciliation_query(filters), number, per_page)


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
    session: Session, filters: PaymentFilters, number: int = 1, per_page: int = 50
) -> Page[tuple[Payment, str | None, str | None]]:
    """Return one page of payments (newest first) with their household number and network name."""
    query = (
        select(Payment, Household.household_no, Network.name)
        .outerjoin(Household, Household.id == Payment.household_id)
        .outerjoin(Network, Network.id == Payment.network_id)
    )
    query = filters.apply(query, Payment.paid_at).order_by(Payment.created_at.desc(), Payment.id.desc())
    return paginate(session, query, number, per_page)


def subsidised_payments(
    session: Session, number: int = 1, per_page: int = 50
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
        .order_by(Payment.paid_at.desc(), Payment.id.desc())
    )
    return paginate(session, query, number, per_page)


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
) -> Page[MessageRow]:
    """Return one page of SMS (newest first) with their delivery reports (two queries)."""
    query = select(Message, Household.household_no).outerjoin(Household, Household.id == Message.household_id)
    if direction is not None:
        query = query.where(Message.direction == direction)
    if status is not None:
        query = query.where(Message.status == status)
    page = paginate(session, query.order_by(Message.created_at.desc(), Message.id.desc()), number, per_page)
    reports: dict[int, list[DeliveryReport]] = {}
    ids = [message.id for message, _ in page.items]
    if ids:
        for report in session.scalars(
            select(DeliveryReport).where(DeliveryReport.message_id.in_(ids)).order_by(DeliveryReport.id)
        ):
            reports.setdefault(report.message_id or 0, []).append(report)
    rows = [MessageRow(message, household_no, reports.get(message.id, [])) for message, household_no in page.items]
    return Page(rows, page.number, page.per_page, page.has_next)


def ussd_sessions(
    session: Session, start: datetime, end: datetime, number: int = 1, per_page: int = 50
) -> Page[tuple[UssdSessionRecord]]:
    """Return one page of USSD session records created in [start, end), newest first."""
    query = (
        select(UssdSessionRecord)
        .where(UssdSessionRecord.created_at >= start, UssdSessionRecord.created_at < end)
        .order_by(UssdSessionRecord.created_at.desc(), UssdSessionRecord.id.desc())
    )
    return paginate(session, query, number, per_page)


def eligibility_checks(
    session: Session,
    member_no: str | None = None,
    facility: str | None = None,
    number: int = 1,
    per_page: int = 50,
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
    query = query.order_by(EligibilityCheck.created_at.desc(), EligibilityCheck.id.desc())
    return paginate(session, query, number, per_page)


def rejected_callbacks(
    session: Session, source: str | None = None, number: int = 1, per_page: int = 50
) -> Page[tuple[RejectedCallback]]:
    """Return one page of refused callbacks, most recently seen first."""
    query = select(RejectedCallback)
    if source:
        query = query.where(RejectedCallback.source == source)
    query = query.order_by(RejectedCallback.last_seen_at.desc(), RejectedCallback.id.desc())
    return paginate(session, query, number, per_page)


def networks_list(
    session: Session,
    number: int = 1,
    per_page: int = 50,
    scheme_id: int | None = None,
    commune: str | None = None,
    mutuelle: str | None = None,
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
    return paginate(session, query.order_by(Network.name, Network.id), number, per_page)


def distinct_values(values: Sequence[str | None]) -> list[str]:
    """Return the non-empty values, each once, in order."""
    return list(dict.fromkeys(v for v in values if v))
