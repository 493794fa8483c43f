"""What a reader kept to some mutuelles may see: every ORM statement of a scoped session is filtered here, once.

Staff users (`staff_mutuelles`), API tokens and agents may be kept to mutuelles; none means every mutuelle (a
union's or the agency's). A session marked with `scope_session` gets, on every ORM select, update and delete
(pages, actions, exports, reports, relationship loads and `session.get` alike), criteria that keep each table to
the rows of those mutuelles: a household or network by its mutuelle, a payment by the mutuelle it was paid to,
everything else by the household, network, payment, account, device or statement it belongs to; a collector or an
enrolment by its mutuelle, an enrolment's members and audit trail by their enrolment; a campaign by its mutuelle
(or, of none, its scheme), its targets and sessions by their network, its audit trail by its mutuelle; a text to no
household by the mutuelle it was sent for; a report snapshot's cells by their mutuelle. A row of no
mutuelle (a payment to a shared account still in suspense, a text from an unknown phone) is the union's.
Statements written with Core tables (`Model.__table__`) or `text()` are not filtered: views of the admin use
ORM entities (tests/test_mutuelles_access.py visits every admin page as a scoped user).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, and_, event, or_, select
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker, with_loader_criteria

from models.access.tables import (
    Agent,
    ApiToken,
    CollectionDevice,
    EligibilityCheck,
    StaffUser,
    staff_mutuelles,
)
from models.coverage.money import Allocation, CoveragePeriod, LedgerEntry
from models.db import EVERY_MUTUELLE
from models.enrolment.campaigns import Campaign, CampaignEvent, CampaignSession, CampaignTarget
from models.enrolment.tables import Collector, Enrolment, EnrolmentEvent, EnrolmentMember, HouseholdChange
from models.members.household import Account, Household, HouseholdEvent, Member, Network
from models.messaging.message import DeliveryReport, Message, UssdSessionRecord
from models.payments.payment import (
    Payment,
    PaymentEvidence,
    PaymentRequest,
    ReconciliationEvent,
    UnparsedForward,
)
from models.payments.rejections import RejectedCallback
from models.payments.statement import StatementBreak, StatementImport, StatementLine
from models.schemes.mutuelle import Mutuelle, MutuelleAccount
from models.schemes.scheme import Scheme
from models.views.report_snapshots import ReportCell, ReportMonth

SCOPE_KEY = "mutuelle_scope"
Ids = tuple[int, ...]


def scope_session(session: Session, mutuelle_ids: Iterable[int] | None) -> None:
    """Keep every later ORM statement of the session to these mutuelles (None: every mutuelle)."""
    if mutuelle_ids is None:
        session.info.pop(SCOPE_KEY, None)
    else:
        session.info[SCOPE_KEY] = tuple(sorted(set(mutuelle_ids)))


def session_scope(session: Session) -> Ids | None:
    """Return the mutuelles the session is kept to, or None when it sees every mutuelle."""
    scope = session.info.get(SCOPE_KEY)
    return None if scope is None else tuple(scope)


def install_scoping(factory: sessionmaker[Session]) -> None:
    """Filter the ORM statements of the factory's scoped sessions (see the module's docstring)."""
    event.listen(factory, "do_orm_execute", _filter_statement)


def _filter_statement(state: ORMExecuteState) -> None:
    ids = state.session.info.get(SCOPE_KEY)
    if ids is None or state.execution_options.get(EVERY_MUTUELLE):
        return
    if state.is_select and (state.is_column_load or state.is_relationship_load):
        return  # the criteria of the statement that loaded the object travel with it
    if not (state.is_select or state.is_update or state.is_delete):
        return
    state.statement = state.statement.options(*_criteria(tuple(ids)))


def _households(ids: Ids) -> Any:
    return select(Household.id).where(Household.mutuelle_id.in_(ids))


def _networks(ids: Ids) -> Any:
    return select(Network.id).where(Network.mutuelle_id.in_(ids))


def _owned(cls: Any, ids: Ids) -> ColumnElement[bool]:
    """A row owned by a household or a network (accounts, payment requests)."""
    return or_(cls.household_id.in_(_households(ids)), cls.network_id.in_(_networks(ids)))


def _payments(ids: Ids) -> Any:
    return select(Payment.id).where(Payment.mutuelle_id.in_(ids))


def _accounts(ids: Ids) -> Any:
    return select(Account.id).where(_owned(Account, ids))


def _devices(ids: Ids) -> Any:
    return select(CollectionDevice.id).where(CollectionDevice.mutuelle_id.in_(ids))


def _members(ids: Ids) -> Any:
    return select(Member.id).where(Member.household_id.in_(_households(ids)))


def _enrolments(ids: Ids) -> Any:
    return select(Enrolment.id).where(Enrolment.mutuelle_id.in_(ids))


def _schemes(ids: Ids) -> Any:
    return select(Mutuelle.scheme_id).where(Mutuelle.id.in_(ids))


def _campaigns(ids: Ids) -> Any:
    """A campaign of these mutuelles (its audit trail; a scheme-wide one's is the union's)."""
    return select(Campaign.id).where(Campaign.mutuelle_id.in_(ids))


def _staff_in(ids: Ids) -> Any:
    return select(staff_mutuelles.c.user_id).where(staff_mutuelles.c.mutuelle_id.in_(ids))


def _staff_beyond(ids: Ids) -> Any:
    return select(staff_mutuelles.c.user_id).where(staff_mutuelles.c.mutuelle_id.not_in(ids))


def _criteria(ids: Ids) -> list[Any]:
    """Return the loader criteria keeping each table to the rows of these mutuelles."""
    rules: list[tuple[type, Any]] = [
        (Mutuelle, lambda cls: cls.id.in_(ids)),
        (MutuelleAccount, lambda cls: cls.mutuelle_id.in_(ids)),
        (Scheme, lambda cls: cls.id.in_(_schemes(ids))),
        (Household, lambda cls: cls.mutuelle_id.in_(ids)),
        (Network, lambda cls: cls.mutuelle_id.in_(ids)),
        (Member, lambda cls: cls.household_id.in_(_households(ids))),
        (HouseholdEvent, lambda cls: cls.household_id.in_(_households(ids))),
        (HouseholdChange, lambda cls: cls.household_id.in_(_households(ids))),
        (CoveragePeriod, lambda cls: cls.household_id.in_(_households(ids))),
        # A household's texts, and those sent for one of these mutuelles to no household (a collector's summary).
        (Message, lambda cls: or_(cls.household_id.in_(_households(ids)), cls.mutuelle_id.in_(ids))),
        (DeliveryReport, lambda cls: cls.message_id.in_(select(Message.id))),
        (UssdSessionRecord, lambda cls: cls.phone.in_(select(Member.phone).where(Member.phone.is_not(None)))),
        (Account, lambda cls: _owned(cls, ids)),
        (PaymentRequest, lambda cls: _owned(cls, ids)),
        (Allocation, lambda cls: cls.account_id.in_(_accounts(ids))),
        (LedgerEntry, lambda cls: cls.account_id.in_(_accounts(ids))),
        (Payment, lambda cls: cls.mutuelle_id.in_(ids)),
        (PaymentEvidence, lambda cls: cls.payment_id.in_(_payments(ids))),
        (ReconciliationEvent, lambda cls: cls.payment_id.in_(_payments(ids))),
        (StatementImport, lambda cls: cls.mutuelle_id.in_(ids)),
        (StatementLine, lambda cls: cls.import_id.in_(select(StatementImport.id))),
        (StatementBreak, lambda cls: cls.import_id.in_(select(StatementImport.id))),
        (CollectionDevice, lambda cls: cls.mutuelle_id.in_(ids)),
        (UnparsedForward, lambda cls: cls.device_id.in_(_devices(ids))),
        (RejectedCallback, lambda cls: cls.device_id.in_(_devices(ids))),
        (ApiToken, lambda cls: cls.mutuelle_id.in_(ids)),
        (Agent, lambda cls: cls.mutuelle_id.in_(ids)),
        (EligibilityCheck, lambda cls: cls.member_id.in_(_members(ids))),
        (Collector, lambda cls: cls.mutuelle_id.in_(ids)),
        (Enrolment, lambda cls: cls.mutuelle_id.in_(ids)),
        (EnrolmentMember, lambda cls: cls.enrolment_id.in_(_enrolments(ids))),
        (EnrolmentEvent, lambda cls: cls.enrolment_id.in_(_enrolments(ids))),
        # A campaign of one of these mutuelles, or of their whole scheme (its lines: their own networks').
        (
            Campaign,
            lambda cls: or_(
                cls.mutuelle_id.in_(ids), and_(cls.mutuelle_id.is_(None), cls.scheme_id.in_(_schemes(ids)))
            ),
        ),
        (CampaignEvent, lambda cls: cls.campaign_id.in_(_campaigns(ids))),
        (CampaignTarget, lambda cls: cls.network_id.in_(_networks(ids))),
        (CampaignSession, lambda cls: cls.network_id.in_(_networks(ids))),
        # The report's months counted ahead: a cell by the mutuelle its households (or payments) belong to, as live.
        (ReportMonth, lambda cls: cls.scheme_id.in_(_schemes(ids))),
        (ReportCell, lambda cls: cls.mutuelle_id.in_(ids)),
        # Staff kept to some of these mutuelles and no other (a scoped admin never sees union staff, nor staff
        # who also see a mutuelle they do not).
        (StaffUser, lambda cls: and_(cls.id.in_(_staff_in(ids)), cls.id.not_in(_staff_beyond(ids)))),
    ]
    return [
        with_loader_criteria(entity, rule, include_aliases=True, track_closure_variables=True) for entity, rule in rules
    ]
