"""Tables and domain rules, grouped by domain. Importing this package registers every table on `Base.metadata`.

Each wing uses only the wings listed before it (no cycle, no upward import):

    base, db, bulk, inputs   declarative base and vocabularies, engines and sessions, bulk writes, untrusted input
    schemes/                 schemes and their TOML files, amounts in their currencies
    members/                 households, members, networks, phones
    access/                  staff, facility agents, API tokens, collection devices, rate limits
    texts/                   SMS templates and translations, GSM-7/UCS-2 measure
    payments/                payments as operators report them: intake, adapters, operator texts, statements, references
    coverage/                premiums, ledger, coverage periods, eligibility, allocation, suspensions, facility checks
    messaging/               the SMS log and outbox, inbound commands, renewal reminders
    imports/                 the member import and operators' statement imports
    enrolment/               collectors' enrolments: submission, duplicates, numbering, validation into households
    reconciliation/          matching, batch allocation, staff actions on payments
    views/                   what the admin reads: dossiers, list pages, report figures
"""

from models.access.tables import Agent, ApiToken, CollectionDevice, EffectKey, EligibilityCheck, StaffSession, StaffUser
from models.base import Base
from models.coverage.money import Allocation, CoveragePeriod, LedgerEntry
from models.enrolment.campaigns import Campaign, CampaignSession, CampaignTarget
from models.enrolment.tables import Collector, Enrolment, EnrolmentEvent, EnrolmentMember, HouseholdChange
from models.members.household import Account, Household, HouseholdEvent, Member, Network
from models.messaging.message import DeliveryReport, Message, UssdSessionRecord
from models.payments.payment import Payment, PaymentEvidence, PaymentRequest, ReconciliationEvent, UnparsedForward
from models.payments.rejections import RejectedCallback
from models.payments.statement import StatementBreak, StatementImport, StatementLine
from models.schemes.scheme import PaymentChannel, Plan, PremiumBand, Scheme, SubsidyCategory
from models.views.report_snapshots import ReportCell, ReportMonth

__all__ = [
    "Account",
    "Agent",
    "Allocation",
    "ApiToken",
    "Base",
    "Campaign",
    "CampaignSession",
    "CampaignTarget",
    "CollectionDevice",
    "Collector",
    "CoveragePeriod",
    "DeliveryReport",
    "EffectKey",
    "EligibilityCheck",
    "Enrolment",
    "EnrolmentEvent",
    "EnrolmentMember",
    "Household",
    "HouseholdChange",
    "HouseholdEvent",
    "LedgerEntry",
    "Member",
    "Message",
    "Network",
    "Payment",
    "PaymentChannel",
    "PaymentEvidence",
    "PaymentRequest",
    "Plan",
    "PremiumBand",
    "ReconciliationEvent",
    "RejectedCallback",
    "ReportCell",
    "ReportMonth",
    "Scheme",
    "StaffSession",
    "StaffUser",
    "StatementBreak",
    "StatementImport",
    "StatementLine",
    "SubsidyCategory",
    "UnparsedForward",
    "UssdSessionRecord",
]
