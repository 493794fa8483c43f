"""What a FHIR client asks: the member a CoverageEligibilityRequest or a Coverage search names, and the date.

Read leniently (only what the answer needs must be there) but strictly typed: a patient reference by member number
identifier — a `system` among the schemes' member systems, or none: then the value is a member number — or
`Patient/<member no>`; the date from `servicedDate`, else `servicedPeriod.start`, else `created`, else today.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.inputs import MAX_DATE, MIN_DATE
from models.schemes.scheme import Scheme

MEMBER_NO_MAX = 44


class FhirInputError(ValueError):
    """A request the server cannot read; the message names the element."""


@dataclass(frozen=True)
class PatientName:
    """The patient a request names: the member number, unless the identifier's system is not a member system."""

    value: str
    system: str | None

    def reference(self) -> dict[str, Any]:
        """Return the patient as the request named it (a Reference by identifier)."""
        identifier = {"value": self.value} if self.system is None else {"system": self.system, "value": self.value}
        return {"identifier": identifier}


@dataclass(frozen=True)
class EligibilityQuestion:
    """A CoverageEligibilityRequest as the server reads it."""

    patient: PatientName
    on: date | None
    request: dict[str, Any]  # a Reference to the request, for the response's `request`
    insurer: str | None  # the request's insurer display, echoed when no scheme answers


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 1000:
        raise FhirInputError(f"{where} must be a non-empty string")
    return value.strip()


def _member_no(value: str, where: str) -> str:
    if len(value) > MEMBER_NO_MAX or not value.isprintable():
        raise FhirInputError(f"{where} is not a member number")
    return value.upper()


def _day(value: Any, where: str) -> date:
    # A date or a dateTime: its calendar day as written (the facility's own).
    text = _text(value, where)
    try:
        if len(text) < 10 or not text.isascii():
            raise ValueError(text)
        day = date.fromisoformat(text[:10])
    except ValueError as exc:
        raise FhirInputError(f"{where} must be a full date YYYY-MM-DD (or a dateTime)") from exc
    if not MIN_DATE <= day <= MAX_DATE:
        raise FhirInputError(f"{where} must be between {MIN_DATE.isoformat()} and {MAX_DATE.isoformat()}")
    return day


def patient_from_reference(reference: Any) -> PatientName:
    """Return the patient a Reference names: by identifier, else `Patient/<member no>` (or a URL ending so)."""
    if not isinstance(reference, dict):
        raise FhirInputError("patient must be a Reference (identifier or Patient/<member no>)")
    identifier = reference.get("identifier")
    if identifier is not None:
        if not isinstance(identifier, dict):
            raise FhirInputError("patient.identifier must be an Identifier")
        value = _member_no(_text(identifier.get("value"), "patient.identifier.value"), "patient.identifier.value")
        system = identifier.get("system")
        return PatientName(value, None if system is None else _text(system, "patient.identifier.system"))
    raw = reference.get("reference")
    if raw is None:
        raise FhirInputError("patient needs an identifier (the member number) or a reference Patient/<member no>")
    kind, _, ident = _text(raw, "patient.reference").rstrip("/").rpartition("/")
    if not kind.endswith("Patient") or not ident:
        raise FhirInputError("patient.reference must be Patient/<member no>")
    return PatientName(_member_no(ident, "patient.reference"), None)


def read_eligibility_request(body: Any) -> EligibilityQuestion:
    """Return the member and date a CoverageEligibilityRequest asks about, or raise naming what is wrong."""
    if not isinstance(body, dict) or body.get("resourceType") != "CoverageEligibilityRequest":
        raise FhirInputError("the body must be a CoverageEligibilityRequest resource (JSON)")
    if "patient" not in body:
        raise FhirInputError("patient is required")
    patient = patient_from_reference(body["patient"])
    on = None
    if "servicedDate" in body:
        on = _day(body["servicedDate"], "servicedDate")
    elif isinstance(body.get("servicedPeriod"), dict) and "start" in body["servicedPeriod"]:
        on = _day(body["servicedPeriod"]["start"], "servicedPeriod.start")
    elif "created" in body:
        on = _day(body["created"], "created")
    request: dict[str, Any] = {"type": "CoverageEligibilityRequest"}
    if isinstance(body.get("id"), str) and body["id"].strip():
        request["reference"] = f"CoverageEligibilityRequest/{body['id'].strip()}"
    identifiers = body.get("identifier")
    if isinstance(identifiers, list) and identifiers and isinstance(identifiers[0], dict):
        first = {k: v for k, v in identifiers[0].items() if k in {"system", "value"} and isinstance(v, str)}
        if first.get("value"):
            request["identifier"] = first
    insurer = body.get("insurer")
    display = insurer.get("display") if isinstance(insurer, dict) else None
    return EligibilityQuestion(patient, on, request, display if isinstance(display, str) and display else None)


def beneficiary_search(params: dict[str, str]) -> PatientName:
    """Return who a Coverage search is about: `beneficiary=[Patient/]<no>`, `beneficiary:identifier=[system|]<no>`."""
    if params.get("beneficiary:identifier"):
        system, bar, value = params["beneficiary:identifier"].rpartition("|")
        value = _member_no(_text(value, "beneficiary:identifier"), "beneficiary:identifier")
        return PatientName(value, system if bar and system else None)
    if params.get("beneficiary"):
        raw = params["beneficiary"].strip().rstrip("/")
        if "/" not in raw:  # a bare id: the member number
            return PatientName(_member_no(_text(raw, "beneficiary"), "beneficiary"), None)
        return patient_from_reference({"reference": raw})
    raise FhirInputError("search Coverage by beneficiary=Patient/<member no> or beneficiary:identifier=<system>|<no>")


def member_number(session: Session, patient: PatientName) -> str | None:
    """Return the member number a patient name means: its value, unless its system is no scheme's member system."""
    if patient.system is None:
        return patient.value
    schemes = session.scalars(select(Scheme)).all()
    return patient.value if any(scheme.member_identifier_system == patient.system for scheme in schemes) else None


def unknown_system_text(patient: PatientName) -> str:
    """Return why a patient was not looked up: its identifier's system is not a member number system here."""
    return f"no member: {patient.system} is not the member number system of any scheme here"
