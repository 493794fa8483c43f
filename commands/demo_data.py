"""Demo data: both schemes, ~200 households across every eligibility status, agents, a collection device, and a
collector per CMU mutuelle whose enrolments fill the staff validation queue.

Money goes through the real path: each demo payment is a sandbox report stored by the intake and
reconciled by the worker's matching and allocation (its receipt SMS queued), subsidised households are
funded by `book_subsidised_period`, so every answer agrees with the rules.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from models.access.agents import create_agent
from models.access.tables import CollectionDevice
from models.base import EvidenceSource, HouseholdStatus, Language, MemberStatus, MessageStatus, Sex
from models.bulk import analyze
from models.coverage.ledger import get_or_create_account
from models.coverage.money import CoveragePeriod
from models.coverage.periods import book_subsidised_period
from models.enrolment.campaigns import DEFAULT_TARGET, add_session, create_campaign, set_target
from models.enrolment.collectors import create_collector
from models.enrolment.duplicates import swapped
from models.enrolment.submit import submit_enrolment
from models.enrolment.tables import Collector
from models.enrolment.validate import ask_for_changes, validate_enrolment
from models.members.household import Household, Member, Network
from models.members.networks import set_grant
from models.messaging.message import Message
from models.messaging.outbox import DISPATCH_KEY, attach_dispatch
from models.payments.intake import Report, record_report
from models.schemes.mutuelle import home_mutuelle
from models.schemes.scheme import Scheme
from models.schemes.scheme_file import load_scheme, parse_scheme_file

SCHEMES_DIR = Path(__file__).resolve().parent.parent / "schemes"

FIRST_F = ["Aminata", "Fatou", "Awa", "Khady", "Ndeye", "Mariama", "Coumba", "Astou", "Bineta", "Dieynaba"]
FIRST_M = ["Ousmane", "Mamadou", "Moussa", "Ibrahima", "Cheikh", "Abdoulaye", "Modou", "Lamine", "Pape", "Babacar"]
LAST_SN = ["Ndiaye", "Diop", "Fall", "Sarr", "Faye", "Gueye", "Sow", "Ba", "Diallo", "Mbaye", "Cisse", "Seck"]
FIRST_KH_F = ["Sophea", "Dara", "Chantha", "Sreymom", "Bopha", "Kanha"]
FIRST_KH_M = ["Sokha", "Vanna", "Rithy", "Sambath", "Piseth", "Veasna"]
LAST_KH = ["Sok", "Chan", "Keo", "Heng", "Lim", "Meas", "Prak"]
COMMUNES = [("TN", "Thies Nord"), ("PK", "Pekesse"), ("MR", "Mont Rolland")]

# (label, how many households, days since each payment (none: never paid), plan, category)
CMU_PROFILES: list[tuple[str, int, tuple[int, ...], str, str]] = [
    ("active-yearly", 40, (75,), "yearly", "standard"),
    ("active-half-yearly", 15, (100,), "half-yearly", "standard"),
    ("waiting", 15, (6,), "yearly", "standard"),
    ("grace", 12, (380,), "yearly", "standard"),
    ("lapsed", 15, (460,), "yearly", "standard"),
    ("pending", 15, (), "yearly", "standard"),
    ("bsf", 12, (), "yearly", "bsf"),
    ("cec", 6, (), "yearly", "cec"),
    ("suspended", 5, (75,), "yearly", "standard"),
    ("instalment", 5, (), "yearly", "standard"),
]
SKY_PROFILES: list[tuple[str, int, tuple[int, ...], str, str]] = [
    ("active", 15, (40, 12), "monthly", "standard"),
    ("waiting", 5, (3,), "monthly", "standard"),
    ("grace", 6, (36,), "monthly", "standard"),
    ("lapsed", 6, (90,), "monthly", "standard"),
    ("pending", 5, (), "monthly", "standard"),
    ("idpoor", 3, (), "monthly", "idpoor"),
]

SHARED_PHONE = "+221779999999"
# The phone `make phone` dials as (the Makefile's PHONE): the head of an active CMU household, its only one.
DEMO_PHONE, DEMO_HOUSEHOLD = "+221770000002", "SN-MR-000002"
# The household whose last member died (an INACTIVE member in a covered household).
DECEASED_IN = "SN-TN-000003"
AGENTS = [
    ("Poste de sante Thies Nord", "+221760000001", "4821", "Infirmier Diouf"),
    ("Centre de sante Mont Rolland", "+221760000002", "3907", "Sage-femme Ndour"),
]
DEVICE = ("+221700000001", "Telephone collecteur Thies", ["OrangeMoney", "Wave", "FreeMoney"])
# One collector per CMU mutuelle (mutuelle, name, phone; the network of its commune). Their keys are not kept:
# `flask --app app collectors create` makes one to submit with.
COLLECTORS = (
    ("SN-TN", "Awa Sarr (collectrice Thies Nord)", "+221760000201"),
    ("SN-PK", "Moussa Faye (collecteur Pekesse)", "+221760000202"),
    ("SN-MR", "Coumba Diouf (collectrice Mont Rolland)", "+221760000203"),
)
# The demo member the waiting enrolment looks like (a near-duplicate: the last name typed with a doubled letter).
LOOK_ALIKE_OF = "SN-TN-000006-01"
DEMO_STAFF_ACTOR = "demo-seed"
CAMPAIGN_DAYS_AGO = 42
# Each commune's households enrolled during the campaign and validated: (days ago, subsidy category, days ago it paid
# — none: never paid). Paid over a month ago: covered (the yearly plan's month of waiting is over); paid lately:
# first payment made, waiting; fully subsidised: funded from enrolment; the last never paid (the manager's list).
CAMPAIGN_ENROLMENTS: tuple[tuple[int, str, int | None], ...] = (
    (40, "standard", 38),
    (36, "standard", 34),
    (20, "standard", 15),
    (12, "bsf", None),
    (9, "standard", None),
)
CAMPAIGN_PEOPLE = (
    ("Ndeye", "Sow", "F", "1985-02-11"),
    ("Cheikh", "Ba", "M", "1977-06-30"),
    ("Mariama", "Diallo", "F", "1992-09-04"),
    ("Ousmane", "Ndour", "M", "1969-11-23"),
    ("Khady", "Sene", "F", "1988-04-17"),
)
DEMO_CAMPAIGN = "Enrôlement CMU 2026"
# The pilot's networks each received an economic grant and save 10 % of it (the scheme file's `[networks]`), part
# of it to pay their members' premiums. The grant, and each network's payments during the demo campaign (which
# started 42 days ago): (days ago, households it pays).
# What a payment leaves on the account stays below any household's due, so the clock pays nobody else from it and
# the network's grace and lapsed households keep their status.
DEMO_GRANT, GRANT_DAYS_AGO = 20_000_000, 120
NETWORK_PAYMENTS: dict[str, tuple[tuple[int, int], ...]] = {
    "Thies Nord": ((10, 1),),
    "Pekesse": ((8, 2),),
    "Mont Rolland": ((12, 1), (3, 0)),
}
NETWORK_REMAINDER = 1_000  # what each network payment adds to the network's balance
# The admin web's demo users (`make run` creates them, each with a password kept in instance/): the union-wide
# admin, and one manager per CMU mutuelle who sees only that mutuelle's members and payments.
DEMO_STAFF: tuple[tuple[str, str, str | None], ...] = (
    ("admin", "admin", None),
    ("gestionnaire-tn", "operator", "SN-TN"),
    ("gestionnaire-pk", "operator", "SN-PK"),
    ("gestionnaire-mr", "operator", "SN-MR"),
)


def demo_password_file(instance: Path, username: str) -> Path:
    """Return where `make run` keeps a demo user's generated password (development only)."""
    return instance / f"{username}-password.txt"


@dataclass
class DemoSummary:
    """What the seeder created."""

    households: int = 0
    members: int = 0
    payments: int = 0
    network: str = ""


@dataclass(frozen=True)
class DemoExample:
    """A demo member to try: the head of the first household of a profile (or the deceased member)."""

    label: str
    member_no: str
    phone: str | None
    date_of_birth: date | None


def cmu_household_no(serial: int) -> str:
    """Return the number of the CMU demo household of this serial (its commune follows the serial)."""
    return f"SN-{COMMUNES[serial % len(COMMUNES)][0]}-{serial:06d}"


def sky_household_no(serial: int) -> str:
    """Return the number of the SKY demo household of this serial."""
    return f"KH-PP-{serial:06d}"


def example_households() -> list[tuple[str, str]]:
    """Return (label, household number) of the first household of each demo profile, numbered as seeded."""
    examples = []
    serial = 1
    for label, count, *_ in CMU_PROFILES:
        examples.append((f"cmu {label}", cmu_household_no(serial)))
        serial += count
    for label, count, *_ in SKY_PROFILES:
        examples.append((f"sky {label}", sky_household_no(serial)))
        serial += count
    return examples


def demo_examples(session: Session) -> list[DemoExample]:
    """Return the demo members to try, read from the database (empty when it holds no demo seed)."""
    wanted = example_households()
    heads = {
        member.member_no: member
        for member in session.scalars(select(Member).where(Member.member_no.in_([f"{no}-01" for _, no in wanted])))
    }
    examples = [
        DemoExample(label, head.member_no, head.phone, head.date_of_birth)
        for label, number in wanted
        if (head := heads.get(f"{number}-01")) is not None
    ]
    deceased = session.scalar(
        select(Member)
        .join(Household, Member.household_id == Household.id)
        .where(Household.household_no == DECEASED_IN, Member.status == MemberStatus.DECEASED)
        .order_by(Member.member_no)
        .limit(1)
    )
    if deceased is not None:
        examples.append(DemoExample("cmu inactive (deceased member)", deceased.member_no, None, deceased.date_of_birth))
    return examples


def load_shipped_schemes(session: Session) -> dict[str, Scheme]:
    """Load (create or update) every scheme file in schemes/ and return them by code."""
    schemes = {}
    for path in sorted(SCHEMES_DIR.glob("*.toml")):
        scheme = load_scheme(session, parse_scheme_file(path))
        schemes[scheme.code] = scheme
    session.commit()
    return schemes


def is_empty(session: Session) -> bool:
    """Return whether the database holds no household yet."""
    return not session.scalar(select(func.count()).select_from(Household))


def seed_demo(session: Session, today: date, seed: int = 7, ussd_code: str = "*384*123#") -> DemoSummary:
    """Create the demo households, payments, agents, device, collectors and enrolments (on an empty database)."""
    rng = random.Random(seed)
    # Receipts of historical demo payments are marked delivered instead of flooding the outbox queue.
    receipts: list[int] = []
    previous_dispatch = session.info.get(DISPATCH_KEY)
    attach_dispatch(session, receipts.extend)
    schemes = load_shipped_schemes(session)
    summary = DemoSummary()
    cmu, sky = schemes["cmu-thies"], schemes["sky-cambodia"]

    # One network per commune, in its commune's mutuelle (the first is the one the banner and docs name).
    networks: dict[str, Network] = {}
    for index, (_prefix, commune) in enumerate(COMMUNES):
        slug = commune.lower().replace(" ", "-")
        network = Network(
            scheme_id=cmu.id,
            mutuelle_id=home_mutuelle(session, cmu.id, commune).id,
            code=f"reseau-{slug}-1",
            name=f"Reseau {commune} 1",
            commune=commune,
            contact_phone=f"+2217700002{index:02d}",
        )
        session.add(network)
        session.flush()
        get_or_create_account(session, network=network)
        networks[commune] = network
    summary.network = networks[COMMUNES[0][1]].code
    session.commit()

    serial = 0
    for label, count, days_ago, plan, category in CMU_PROFILES:
        for index in range(count):
            serial += 1
            commune = COMMUNES[serial % len(COMMUNES)][1]
            phone = SHARED_PHONE if label in {"active-yearly", "waiting"} and index == 0 else f"+22177{serial:07d}"
            household = _household(
                session,
                rng,
                cmu,
                cmu_household_no(serial),
                commune,
                plan,
                category,
                phone,
                language=Language.WO if serial % 4 == 0 else Language.FR,
                enrolled_on=today - timedelta(days=max(days_ago, default=60) + 10),
                network=networks[commune] if serial % 10 in (1, 2, 3) else None,
            )
            _fund(session, rng, summary, cmu, household, label, days_ago, today)
    # One member who died in an otherwise covered household: INACTIVE.
    inactive = session.scalar(select(Household).where(Household.household_no == DECEASED_IN))
    if inactive is not None and len(inactive.members) > 1:
        member = inactive.members[-1]
        member.status, member.left_on = MemberStatus.DECEASED, today - timedelta(days=20)

    for label, count, days_ago, plan, category in SKY_PROFILES:
        for _ in range(count):
            serial += 1
            phone = f"+85512{serial:06d}"
            household = _household(
                session,
                rng,
                sky,
                sky_household_no(serial),
                "Phnom Penh",
                plan,
                category,
                phone,
                language=Language.KM if serial % 3 else Language.EN,
                enrolled_on=today - timedelta(days=max(days_ago, default=60) + 5),
                network=None,
            )
            _fund(session, rng, summary, sky, household, label, days_ago, today)
    session.commit()

    for facility, phone, pin, name in AGENTS:
        create_agent(session, facility=facility, phone=phone, pin=pin, country="SN", name=name)
    session.add(
        CollectionDevice(
            device_key=DEVICE[0],
            label=DEVICE[1],
            scheme_id=cmu.id,
            mutuelle_id=home_mutuelle(session, cmu.id, "Thies Nord").id,
            operator_senders=DEVICE[2],
            trusted=False,
        )
    )
    session.commit()
    _network_money(session, summary, cmu, today, networks)
    collectors = _enrolments(session, today, networks, ussd_code)
    _campaign_enrolments(session, summary, cmu, today, collectors, ussd_code)
    _campaign(session, cmu, today, networks, collectors)
    if receipts:
        session.execute(
            update(Message)
            .where(Message.id.in_(receipts), Message.status == MessageStatus.QUEUED)
            .values(status=MessageStatus.SUCCESS, transport="demo-seed", sent_at=Message.created_at)
        )
        session.commit()
    if previous_dispatch is not None:
        attach_dispatch(session, previous_dispatch)
    analyze(session)  # every table: the demo writes most of them
    summary.households = session.scalar(select(func.count()).select_from(Household)) or 0
    summary.members = session.scalar(select(func.count()).select_from(Member)) or 0
    return summary


def _enrolment_form(client_id: str, commune: str, head: dict[str, str], *others: dict[str, str]) -> dict[str, object]:
    people = [{**head, "relationship": "head"}, *others]
    return {"client_id": client_id, "commune": commune, "subsidy_category": "standard", "members": people}


def _enrolments(session: Session, today: date, networks: dict[str, Network], ussd_code: str) -> dict[str, Collector]:
    """Add a collector per CMU mutuelle and three enrolments: one waiting (a near-duplicate of a demo member), one
    sent back for changes, one validated into a numbered household (its welcome SMS marked sent with the receipts)."""
    collectors: dict[str, Collector] = {}
    for (code, name, phone), (_prefix, commune) in zip(COLLECTORS, COMMUNES, strict=True):
        collectors[code], _key = create_collector(
            session, name=name, mutuelle_code=code, network_code=networks[commune].code, phone=phone
        )
    session.commit()
    alike = session.scalars(select(Member).where(Member.member_no == LOOK_ALIKE_OF)).one()
    born = alike.date_of_birth or date(1980, 1, 1)
    look_alike = {
        "first_name": alike.first_name,
        "last_name": alike.last_name + alike.last_name[-1],
        "sex": alike.sex.value,
        "date_of_birth": (swapped(born) or born).isoformat(),
        "phone": "+221770100001",
        "id_number": "1 751 1984 00417",
    }
    child = {"first_name": "Fatou", "last_name": alike.last_name, "sex": "F", "date_of_birth": "2019-05-14"}
    waiting = _enrolment_form("demo-tn-1", "Thies Nord", look_alike, {**child, "relationship": "child"})
    submit_enrolment(session, collectors["SN-TN"], waiting, today)
    head = {"first_name": "Bineta", "last_name": "Gueye", "sex": "F", "date_of_birth": "1990-03-21"}
    head.update(phone="+221770100002", id_number="2 790 1990 00031")
    sent_back = _enrolment_form("demo-pk-1", "Pekesse", head)
    to_fix = submit_enrolment(session, collectors["SN-PK"], sent_back, today).enrolment
    head = {"first_name": "Lamine", "last_name": "Mbaye", "sex": "M", "date_of_birth": "1979-08-02"}
    spouse = {"first_name": "Astou", "last_name": "Mbaye", "sex": "F", "date_of_birth": "1983-12-11"}
    welcomed = _enrolment_form(
        "demo-mr-1",
        "Mont Rolland",
        {**head, "phone": "+221770100003", "id_number": "1 790 1979 00872"},
        {**spouse, "relationship": "spouse"},
    )
    validated = submit_enrolment(session, collectors["SN-MR"], welcomed, today).enrolment
    session.commit()
    assert to_fix is not None and validated is not None
    ask_for_changes(session, to_fix.id, DEMO_STAFF_ACTOR, "Photo de la carte d'identite illisible : la reprendre")
    session.commit()
    validate_enrolment(session, validated.id, DEMO_STAFF_ACTOR, today, ussd_code)
    session.commit()
    return collectors


def _campaign_enrolments(
    session: Session,
    summary: DemoSummary,
    scheme: Scheme,
    today: date,
    collectors: dict[str, Collector],
    ussd_code: str,
) -> None:
    """Enrol and validate each commune's campaign households on their days, then pay some: the funnel from
    enrolled to covered has something at every stage, and each network has households that enrolled but never paid."""
    from models.coverage.premiums import amount_due

    for n, ((code, _name, _phone), (prefix, commune)) in enumerate(zip(COLLECTORS, COMMUNES, strict=True)):
        for k, ((days_ago, category, paid_days_ago), person) in enumerate(
            zip(CAMPAIGN_ENROLMENTS, CAMPAIGN_PEOPLE, strict=True)
        ):
            first_name, last_name, sex, born = person
            day = today - timedelta(days=days_ago)
            head = {"first_name": first_name, "last_name": last_name, "sex": sex, "date_of_birth": born}
            head.update(phone=f"+22177011{n}{k:03d}", id_number=f"{1 if sex == 'M' else 2} {born[:4]} {n}{k:03d}")
            if category != "standard":  # the family-grant card that makes the household fully subsidised
                head["card_number"] = f"PNBSF-{prefix}-{k:04d}"
            child = {"first_name": "Awa", "last_name": last_name, "sex": "F", "date_of_birth": "2018-01-15"}
            form = _enrolment_form(f"demo-{prefix.lower()}-c{k}", commune, head, {**child, "relationship": "child"})
            form["subsidy_category"] = category
            submitted = submit_enrolment(session, collectors[code], form, day)
            session.commit()
            enrolment = submitted.enrolment
            assert enrolment is not None, submitted.errors
            validate_enrolment(session, enrolment.id, DEMO_STAFF_ACTOR, day, ussd_code)
            # Submitted and validated that day (at 10:00 and 16:00 UTC), as the day-by-day progress reads them.
            enrolment.created_at = datetime.combine(day, time(10))
            enrolment.decided_at = datetime.combine(day, time(16))
            session.commit()
            household = enrolment.household
            if paid_days_ago is not None and household is not None:
                paid_on = today - timedelta(days=paid_days_ago)
                due = amount_due(session, household, paid_on).total
                session.commit()
                _pay(session, summary, scheme, household, due, paid_on)


def _campaign(
    session: Session, scheme: Scheme, today: date, networks: dict[str, Network], collectors: dict[str, Collector]
) -> None:
    """Add the CMU enrolment campaign: each network 250 beneficiaries to enrol, a session before and after today."""
    campaign = create_campaign(
        session,
        name=DEMO_CAMPAIGN,
        scheme_code=scheme.code,
        start_on=today - timedelta(days=CAMPAIGN_DAYS_AGO),
        end_on=today + timedelta(days=45),
    )
    for (code, _name, _phone), (_prefix, commune) in zip(COLLECTORS, COMMUNES, strict=True):
        network = networks[commune]
        set_target(session, campaign, network.code, DEFAULT_TARGET)
        for days, place in ((-7, f"Marche de {commune}"), (10, f"Mairie de {commune}")):
            add_session(
                session,
                campaign,
                held_on=today + timedelta(days=days),
                place=place,
                network_code=network.code,
                collector_id=collectors[code].id,
            )
    session.commit()


def _network_money(
    session: Session, summary: DemoSummary, scheme: Scheme, today: date, networks: dict[str, Network]
) -> None:
    """Record each network's grant and its payments: each pays its first households never paid, plus a little more."""
    from models.coverage.premiums import amount_due

    for commune, payments in NETWORK_PAYMENTS.items():
        network = networks[commune]
        set_grant(network, DEMO_GRANT, today - timedelta(days=GRANT_DAYS_AGO), today)
        session.commit()
        for days, count in payments:
            paid_on = today - timedelta(days=days)
            never_paid = session.scalars(
                select(Household)
                .where(
                    Household.network_id == network.id,
                    Household.status == HouseholdStatus.ACTIVE,
                    ~select(CoveragePeriod.id)
                    .where(CoveragePeriod.household_id == Household.id, CoveragePeriod.reversed_at.is_(None))
                    .exists(),
                )
                .order_by(Household.id)
            ).all()
            dues = [due for h in never_paid if (due := amount_due(session, h, paid_on).total) > 0][:count]
            session.commit()
            _pay(session, summary, scheme, None, sum(dues) + NETWORK_REMAINDER, paid_on, network=network)


def _household(
    session: Session,
    rng: random.Random,
    scheme: Scheme,
    number: str,
    commune: str,
    plan: str,
    category: str,
    phone: str,
    language: Language,
    enrolled_on: date,
    network: Network | None,
) -> Household:
    khmer = scheme.country == "KH"
    size = rng.choice([1, 2, 3, 4, 4, 5, 6, 8]) if not khmer else rng.choice([1, 2, 3, 4, 5, 8])
    last = rng.choice(LAST_KH if khmer else LAST_SN)
    household = Household(
        household_no=number,
        scheme_id=scheme.id,
        mutuelle_id=network.mutuelle_id if network else home_mutuelle(session, scheme.id, commune).id,
        network_id=network.id if network else None,
        head_member_no=f"{number}-01",
        commune=commune,
        subsidy_category=category,
        plan=plan,
        language=language,
        sms_opt_in=True,
        enrolled_on=enrolled_on,
    )
    session.add(household)
    session.flush()
    for position in range(1, size + 1):
        sex = Sex.F if (position == 1) == (rng.random() < 0.5) else Sex.M
        names = (FIRST_KH_F if sex is Sex.F else FIRST_KH_M) if khmer else (FIRST_F if sex is Sex.F else FIRST_M)
        head = position == 1
        born = (
            date(rng.randint(1960, 1995), rng.randint(1, 12), rng.randint(1, 28))
            if position <= 2
            else date(rng.randint(2005, 2024), rng.randint(1, 12), rng.randint(1, 28))
        )
        session.add(
            Member(
                member_no=f"{number}-{position:02d}",
                household_id=household.id,
                last_name=last,
                first_name=rng.choice(names),
                sex=sex,
                date_of_birth=born,
                relationship_to_head="head" if head else ("spouse" if position == 2 else "child"),
                phone=phone if head else None,
                joined_on=enrolled_on,
            )
        )
    session.flush()
    get_or_create_account(session, household=household)
    session.commit()
    session.refresh(household)
    return household


def _fund(
    session: Session,
    rng: random.Random,
    summary: DemoSummary,
    scheme: Scheme,
    household: Household,
    label: str,
    days_ago: tuple[int, ...],
    today: date,
) -> None:
    """Give the household the money history its label describes, through the real rules."""
    from models.coverage.premiums import amount_due

    if label in {"bsf", "cec", "idpoor"}:
        # What the daily clock would have done since enrolment: a period at enrolment, then at each end.
        day = household.enrolled_on
        while day <= today:
            session.commit()  # the money functions start their own write transaction
            period = book_subsidised_period(session, household, day)
            session.commit()
            if period is None:
                break
            day = period.end_on
        return
    if label == "instalment":
        due = amount_due(session, household, today - timedelta(days=3)).total
        _pay(session, summary, scheme, household, max(1, due // 3), today - timedelta(days=3))
        return
    for days in days_ago:
        paid_on = today - timedelta(days=days)
        due = amount_due(session, household, paid_on).total
        _pay(session, summary, scheme, household, due, paid_on)
    if label == "suspended":
        household.status = HouseholdStatus.SUSPENDED
        household.status_reason = "Card lent to a non-member (under review)"
        session.commit()


def _pay(
    session: Session,
    summary: DemoSummary,
    scheme: Scheme,
    household: Household | None,
    amount: int,
    paid_on: date,
    network: Network | None = None,
) -> None:
    """Report a sandbox payment for the household (or from the network's contact, naming it) and reconcile it."""
    from models.reconciliation.batch import reconcile_payment

    summary.payments += 1
    if household is not None:
        phone, reference = household.members[0].phone, household.household_no
    else:
        assert network is not None
        phone, reference = network.contact_phone, network.code
    txn_id = f"DEMO{summary.payments:06d}"
    raw = {
        "txn_id": txn_id,
        "amount": amount,
        "currency": scheme.currency,
        "phone": phone,
        "reference": reference,
        "paid_at": f"{paid_on.isoformat()}T10:30:00Z",
    }
    report = Report(
        provider="sandbox",
        provider_txn_id=txn_id,
        amount=amount,
        currency=scheme.currency,
        payer_phone=phone,
        reference=reference,
        paid_at=datetime.combine(paid_on, time(10, 30)),
        source=EvidenceSource.WEBHOOK,
        route="demo-seed",
        raw=json.dumps(raw),
    )
    result = record_report(session, report)
    session.commit()
    reconcile_payment(session, result.payment_id)
    session.commit()
