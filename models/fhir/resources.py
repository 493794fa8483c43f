"""FHIR resources built from what the eligibility API shares, each validated with `fhir.resources`' R4B models.

R4B is R4-compatible for every resource here (Patient, Coverage, CoverageEligibilityResponse, Bundle,
OperationOutcome, CapabilityStatement): a client of FHIR R4 (4.0.1) reads them as they are. docs/fhir.md maps each
element to the rules it comes from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.coverage import Coverage
from fhir.resources.R4B.coverageeligibilityresponse import CoverageEligibilityResponse
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.resource import Resource

from models.base import EligibilityStatus
from models.coverage.eligibility import Eligibility
from models.schemes.scheme import FHIR_SYSTEM_BASE, Scheme

FHIR_VERSION = "4.0.1"
CAPABILITY_DATE = "2026-12-10"  # when this server's capabilities last changed
# Why a CoverageEligibilityRequest got no answer about a member (CoverageEligibilityResponse.error.code).
ERROR_SYSTEM = f"{FHIR_SYSTEM_BASE}/CodeSystem/eligibility-error"
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
GENDERS = {"F": "female", "M": "male"}
# Coverage.status (the resource's own state, not whether it is in force: CoverageEligibilityResponse says that).
COVERAGE_STATUS = {
    EligibilityStatus.PENDING: "draft",
    EligibilityStatus.SUSPENDED: "cancelled",
    EligibilityStatus.INACTIVE: "cancelled",
}


@dataclass(frozen=True)
class Person:
    """Who a member is, as far as a resource tells: the eligibility API's fields, the export's in full."""

    member_no: str
    first_name: str
    sex: str
    birth_year: int | None
    last_name: str | None = None  # bulk export only
    date_of_birth: date | None = None  # bulk export only


@dataclass(frozen=True)
class Cover:
    """A member's answer on a date and the benefit period behind it (first day of the run, `valid_until`)."""

    on: date
    answer: Eligibility
    start: date | None
    end: date | None
    household_no: str | None = None  # bulk export only (Coverage.subscriberId)


def resource_id(member_no: str) -> str | None:
    """Return the id of a member's Patient and Coverage (the member number), None if a FHIR id cannot hold it."""
    return member_no if _ID.fullmatch(member_no) else None


def member_identifier(scheme: Scheme, member_no: str) -> dict[str, str]:
    """Return the member number as a FHIR Identifier of the scheme's member system."""
    return {"system": scheme.member_identifier_system, "value": member_no}


def patient_reference(scheme: Scheme, member_no: str) -> dict[str, Any]:
    """Return a Reference to the member's Patient: by id when it has one, always by identifier."""
    reference: dict[str, Any] = {"identifier": member_identifier(scheme, member_no)}
    if (ident := resource_id(member_no)) is not None:
        reference["reference"] = f"Patient/{ident}"
    return reference


def _with_id(resource: dict[str, Any], member_no: str) -> dict[str, Any]:
    if (ident := resource_id(member_no)) is not None:
        resource["id"] = ident
    return resource


def patient(scheme: Scheme, person: Person) -> Patient:
    """Return the member's Patient: member number, given name, gender, birth year (or what the export adds)."""
    name: dict[str, Any] = {"given": [person.first_name]}
    if person.last_name:
        name["family"] = person.last_name
    born = person.date_of_birth.isoformat() if person.date_of_birth else person.birth_year
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"use": "official", **member_identifier(scheme, person.member_no)}],
        "name": [name],
        "gender": GENDERS.get(person.sex, "unknown"),
    }
    if born is not None:
        resource["birthDate"] = str(born).zfill(4) if isinstance(born, int) else born
    return Patient.model_validate(_with_id(resource, person.member_no))


def _period(start: date | None, end: date | None) -> dict[str, str] | None:
    period = {key: day.isoformat() for key, day in (("start", start), ("end", end)) if day is not None}
    return period or None


def coverage(scheme: Scheme, member_no: str, cover: Cover) -> Coverage:
    """Return the member's Coverage in the scheme: its status, beneficiary, payor and benefit period."""
    resource: dict[str, Any] = {
        "resourceType": "Coverage",
        "identifier": [{"system": scheme.coverage_identifier_system, "value": member_no}],
        "status": COVERAGE_STATUS.get(cover.answer.status, "active"),
        "beneficiary": patient_reference(scheme, member_no),
        "payor": [{"display": scheme.name}],
        "period": _period(cover.start, cover.end),
    }
    if cover.household_no:
        resource["subscriberId"] = cover.household_no
    return Coverage.model_validate(_with_id(resource, member_no))


def instant(now: datetime) -> str:
    """Return a UTC time (naive or aware) as a FHIR dateTime."""
    return now.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


def disposition(answer: Eligibility) -> str:
    """Return the eligibility status and its reason as one line (CoverageEligibilityResponse.disposition)."""
    if answer.covered and answer.valid_until is not None:
        return f"{answer.status.value}: covered until {answer.valid_until.isoformat()}"
    return f"{answer.status.value}: {answer.reason}" if answer.reason else answer.status.value


def eligibility_response(
    scheme: Scheme, member_no: str, cover: Cover, request: dict[str, Any], now: datetime
) -> CoverageEligibilityResponse:
    """Return the answer to a CoverageEligibilityRequest about a known member: in force or not on the date."""
    insurance: dict[str, Any] = {"inforce": cover.answer.covered, "benefitPeriod": _period(cover.start, cover.end)}
    coverage_ref: dict[str, Any] = {"identifier": {"system": scheme.coverage_identifier_system, "value": member_no}}
    if (ident := resource_id(member_no)) is not None:
        coverage_ref["reference"] = f"Coverage/{ident}"
    insurance["coverage"] = coverage_ref
    resource = {
        "resourceType": "CoverageEligibilityResponse",
        "status": "active",
        "purpose": ["validation"],
        "patient": patient_reference(scheme, member_no),
        "servicedDate": cover.on.isoformat(),
        "created": instant(now),
        "request": request,
        "outcome": "complete",
        "disposition": disposition(cover.answer),
        "insurer": {"display": scheme.name},
        "insurance": [insurance],
    }
    return CoverageEligibilityResponse.model_validate(resource)


def unknown_member_response(
    patient_ref: dict[str, Any], text: str, request: dict[str, Any], insurer: str, now: datetime
) -> CoverageEligibilityResponse:
    """Return the answer about no known member: outcome `error`, no insurance, the patient as the request named it."""
    return CoverageEligibilityResponse.model_validate(
        {
            "resourceType": "CoverageEligibilityResponse",
            "status": "active",
            "purpose": ["validation"],
            "patient": patient_ref,
            "created": instant(now),
            "request": request,
            "outcome": "error",
            "disposition": text,
            "insurer": {"display": insurer},
            "error": [
                {
                    "code": {
                        "coding": [{"system": ERROR_SYSTEM, "code": "unknown-member", "display": "Unknown member"}],
                        "text": text,
                    }
                }
            ],
        }
    )


def searchset(resources: list[Resource], self_url: str, base_url: str) -> Bundle:
    """Return a search's answer: a `searchset` Bundle of the matches (each with its full URL when it has an id)."""
    entries = []
    for resource in resources:
        entry: dict[str, Any] = {"resource": resource, "search": {"mode": "match"}}
        if resource.id:
            entry["fullUrl"] = f"{base_url}/{resource.get_resource_type()}/{resource.id}"
        entries.append(entry)
    return Bundle.model_validate(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(entries),
            "link": [{"relation": "self", "url": self_url}],
            "entry": entries or None,
        }
    )


def operation_outcome(code: str, diagnostics: str, severity: str = "error") -> OperationOutcome:
    """Return an OperationOutcome of one issue (an issue-type code such as `invalid`, `login`, `not-found`)."""
    return OperationOutcome.model_validate(
        {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
        }
    )


def capability_statement(base_url: str) -> CapabilityStatement:
    """Return what this server answers: Patient read, Coverage search by beneficiary, eligibility requests."""
    resources = [
        {"type": "Patient", "interaction": [{"code": "read"}]},
        {
            "type": "Coverage",
            "interaction": [{"code": "search-type"}],
            "searchParam": [
                {"name": "beneficiary", "type": "reference", "documentation": "Patient/<member no> or <member no>"},
                {
                    "name": "beneficiary:identifier",
                    "type": "token",
                    "documentation": "[system|]member number (a value without system is a member number)",
                },
            ],
        },
        {
            "type": "CoverageEligibilityRequest",
            "interaction": [{"code": "create"}],
            "documentation": "POST a request: the answer is a CoverageEligibilityResponse (not stored)",
        },
    ]
    return CapabilityStatement.model_validate(
        {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": CAPABILITY_DATE,
            "publisher": "Mutuelle",
            "kind": "instance",
            "software": {"name": "Mutuelle"},
            "implementation": {"description": "Mutuelle: health facilities' coverage checks", "url": base_url},
            "fhirVersion": FHIR_VERSION,
            "format": ["application/fhir+json", "json"],
            "rest": [
                {
                    "mode": "server",
                    "documentation": "Every interaction but this statement needs a facility API token",
                    "security": {"description": "Authorization: Bearer <API token> (one per facility, revocable)"},
                    "resource": resources,
                }
            ],
        }
    )
