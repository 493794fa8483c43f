"""What a collector's phone reads: the choices its form offers, and the collector's own enrolments and outcomes."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.enrolment.changes import changed_household
from models.enrolment.submit import MAX_MEMBERS, RELATIONSHIPS
from models.enrolment.tables import Collector, Enrolment
from models.members.household import Network

LIST_MAX = 200  # a collector's phone shows its latest enrolments, not years of them
# Phone formats the form checks before sending (the API checks again with phonenumbers): national digits, E.164 code.
PHONE_FORMATS = {"SN": {"calling_code": "221", "national_digits": 9, "pattern": r"^(7[05-8]|3[03])\d{7}$"}}


def form_choices(session: Session, collector: Collector) -> dict[str, Any]:
    """Return what the collector's form offers: mutuelle, communes, networks, plans, categories, languages, rules."""
    mutuelle = collector.mutuelle
    scheme = mutuelle.scheme
    networks = session.scalars(select(Network).where(Network.mutuelle_id == mutuelle.id).order_by(Network.name))
    default_plan = next((p.code for p in scheme.plans if p.is_default), scheme.plans[0].code if scheme.plans else None)
    return {
        "collector": {"name": collector.name, "network": collector.network.code if collector.network else None},
        "mutuelle": {"code": mutuelle.code, "name": mutuelle.name},
        "scheme": {"code": scheme.code, "name": scheme.name, "country": scheme.country},
        "communes": [str(c) for c in mutuelle.communes or []],
        "networks": [{"code": n.code, "name": n.name} for n in networks],
        "plans": [{"code": p.code, "months": p.months, "default": p.code == default_plan} for p in scheme.plans],
        "subsidy_categories": [{"code": c.code, "label": c.label or c.code} for c in scheme.subsidy_categories],
        "languages": [str(lang) for lang in scheme.languages],
        "default_language": str(scheme.default_language),
        "relationships": list(RELATIONSHIPS),
        "max_members": MAX_MEMBERS,
        "head_required": [str(name) for name in scheme.enrolment_required or []],
        "card_required_for": [str(code) for code in scheme.enrolment_card_categories or []],
        "phone": PHONE_FORMATS.get(scheme.country),
    }


def collector_enrolments(session: Session, collector: Collector, limit: int = LIST_MAX) -> list[dict[str, Any]]:
    """Return the collector's latest enrolments, newest first: id, client id, kind, status, reason, household."""
    rows = session.scalars(
        select(Enrolment)
        .where(Enrolment.collector_id == collector.id)
        .order_by(Enrolment.created_at.desc(), Enrolment.id.desc())
        .limit(max(1, min(limit, LIST_MAX)))
    )
    listed = []
    for enrolment in rows:
        household = changed_household(enrolment)
        listed.append(
            {
                "id": enrolment.id,
                "client_id": enrolment.client_id,
                "kind": enrolment.kind,
                "status": enrolment.status.value,
                "reason": enrolment.reason,
                "household_no": household.household_no if household is not None else None,
                "created_at": enrolment.created_at.isoformat(timespec="seconds") + "Z",
            }
        )
    return listed
