"""Tables and domain rules. Importing this package registers every table on `Base.metadata`."""

from models.access import Agent, ApiToken, CollectionDevice, EffectKey, EligibilityCheck, StaffSession, StaffUser
from models.base import Base
from models.household import Account, Household, HouseholdEvent, Member, Network
from models.messaging import DeliveryReport, Message, UssdSessionRecord
from models.money import Allocation, CoveragePeriod, LedgerEntry
from models.payment import Payment, PaymentEvidence, PaymentRequest, ReconciliationEvent, UnparsedForward
from models.rejections import RejectedCallback
from models.scheme import PaymentChannel, Plan, PremiumBand, Scheme, SubsidyCategory
from models.statement import StatementBreak, StatementImport, StatementLine

__all__ = [
    "Account",
    "Agent",
    "Allocation",
    "ApiToken",
    "Base",
    "CollectionDevice",
    "CoveragePeriod",
    "DeliveryReport",
    "EffectKey",
    "EligibilityCheck",
    "Household",
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
