"""Helpers of the enrolment tests: a collector's key from the CLI, the API's POST and GET, a valid household form."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from click.testing import Result
from flask.testing import FlaskClient

HEAD_PHONE = "+221771112233"


def collector_key(cli: Callable[..., Result], mutuelle: str = "SN-TN", *extra: str) -> str:
    """Create a collector with the CLI and return its key (printed last)."""
    result = cli("collectors", "create", "Awa Collect", "--mutuelle", mutuelle, "--phone", "77 555 44 33", *extra)
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]


def household_form(client_id: str = "form-1", **changes: Any) -> dict[str, Any]:
    """Return a valid CMU enrolment: a head (with phone and ID), a spouse and a child."""
    body: dict[str, Any] = {
        "client_id": client_id,
        "commune": "Thies Nord",
        "subsidy_category": "standard",
        "members": [
            {
                "first_name": "Mariama",
                "last_name": "Sow",
                "sex": "F",
                "date_of_birth": "1986-04-09",
                "relationship": "head",
                "phone": "77 111 22 33",
                "id_number": "1 234 1986 00123",
            },
            {
                "first_name": "Ibrahima",
                "last_name": "Sow",
                "sex": "M",
                "date_of_birth": "1982-11-20",
                "relationship": "spouse",
            },
            {
                "first_name": "Khady",
                "last_name": "Sow",
                "sex": "F",
                "date_of_birth": "2016-02-01",
                "relationship": "child",
            },
        ],
    }
    body.update(changes)
    return body


def post(client: FlaskClient, key: str, body: Any) -> Any:
    """Return `POST /api/enrolments` with the collector's key."""
    return client.post("/api/enrolments", json=body, headers={"Authorization": f"Bearer {key}"})


def read_back(client: FlaskClient, key: str, enrolment_id: int) -> Any:
    """Return `GET /api/enrolments/<id>` as the collector reads it (200 checked)."""
    response = client.get(f"/api/enrolments/{enrolment_id}", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.json
    return response.json


def validate(cli: Callable[..., Result], enrolment_id: int) -> str:
    """Validate an enrolment with the CLI and return the household number it prints last."""
    result = cli("enrolments", "validate", str(enrolment_id))
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()[-1]
