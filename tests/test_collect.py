"""The collectors' form over plain HTTP: the page, manifest and service worker, and the API calls it makes
(`GET /api/enrolments`, `GET /api/enrolments/form`) on both databases."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from click.testing import Result
from flask.testing import FlaskClient
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from tests import factories
from tests.enrolment_helpers import collector_key, household_form, post
from tests.members_helpers import cli

__all__ = ["cli"]  # the fixture


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def json_of(response: TestResponse) -> Any:
    """Return a response's JSON body (asserted present)."""
    body = response.json
    assert body is not None, response.get_data(as_text=True)[:300]
    return body


def get(client: FlaskClient, url: str) -> TestResponse:
    """GET a URL and read the body, closing the file a static response holds open."""
    response = client.get(url)
    response.get_data()
    response.close()
    return response


def test_the_shell_is_served_without_cookie_with_its_modules(client: FlaskClient) -> None:
    page = get(client, "/collect/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    text = page.get_data(as_text=True)
    assert '<script type="module" src="/collect/assets/app.js">' in text
    assert '<link rel="manifest" href="/collect/manifest.webmanifest">' in text
    assert "Set-Cookie" not in page.headers
    assert "script-src 'self'" in str(page.headers["Content-Security-Policy"])
    assert page.headers["Cache-Control"] == "no-cache"
    for asset in ("app.js", "store.js", "words.js"):
        module = get(client, f"/collect/assets/{asset}")
        assert module.status_code == 200 and "javascript" in (module.mimetype or ""), asset


def test_the_manifest_makes_it_installable(client: FlaskClient) -> None:
    response = client.get("/collect/manifest.webmanifest")
    assert response.status_code == 200 and response.mimetype == "application/manifest+json"
    manifest = json_of(response)
    assert manifest["start_url"] == "/collect/" and manifest["scope"] == "/collect/"
    assert manifest["display"] == "standalone"
    for icon in manifest["icons"]:
        assert get(client, icon["src"]).status_code == 200, icon


def test_the_service_worker_is_scoped_to_the_form_and_never_cached_by_http(client: FlaskClient) -> None:
    response = client.get("/collect/sw.js")
    assert response.status_code == 200 and response.mimetype == "text/javascript"
    assert response.headers["Service-Worker-Allowed"] == "/collect/"
    assert response.headers["Cache-Control"] == "no-cache"
    text = response.get_data(as_text=True)
    version = re.search(r'const VERSION = "([0-9a-f]{16})";', text)
    assert version, text[:300]
    shell = re.search(r"const SHELL = (\[.*\]);", text)
    assert shell and '"/collect/"' in shell.group(1) and '"/collect/assets/app.js"' in shell.group(1)
    assert '"/collect/assets/sw.js"' not in shell.group(1)
    for url in re.findall(r'"(/collect/[^"]*)"', shell.group(1)):
        assert get(client, url).status_code == 200, url


def test_the_form_choices_are_the_collectors_mutuelle_and_scheme(
    cli: Callable[..., Result], client: FlaskClient, session: Session
) -> None:
    network = factories.make_network(session, factories.scheme(session, "cmu-thies"), "RES-COLLECT")
    assert client.get("/api/enrolments/form").status_code == 401
    assert client.get("/api/enrolments/form", headers=bearer("ck_wrong")).status_code == 401
    key = collector_key(cli, "SN-TN")
    response = client.get("/api/enrolments/form", headers=bearer(key))
    assert response.status_code == 200, response.json
    choices: dict[str, Any] = json_of(response)
    assert choices["mutuelle"]["code"] == "SN-TN"
    assert choices["communes"] == ["Thiès Nord"]
    assert {"code": "RES-COLLECT", "name": network.name} in choices["networks"]
    other = json_of(client.get("/api/enrolments/form", headers=bearer(collector_key(cli, "SN-PK"))))
    assert other["communes"] == ["Pékesse"] and other["networks"] == []
    assert {c["code"] for c in choices["subsidy_categories"]} >= {"standard", "bsf", "cec"}
    assert [p["code"] for p in choices["plans"] if p["default"]]
    assert choices["head_required"] == ["phone", "id_number"]
    assert set(choices["card_required_for"]) >= {"bsf", "cec"}
    assert choices["phone"]["calling_code"] == "221" and re.fullmatch(choices["phone"]["pattern"], "771234567")
    assert choices["relationships"][0] == "head"


def test_the_list_is_the_collectors_own_newest_first(cli: Callable[..., Result], client: FlaskClient) -> None:
    assert client.get("/api/enrolments").status_code == 401
    key = collector_key(cli)
    other = collector_key(cli)
    assert client.get("/api/enrolments", headers=bearer(key)).json == {"enrolments": []}
    first = post(client, key, household_form("list-1"))
    assert first.status_code == 201, first.json
    second_head = {"first_name": "Awa", "last_name": "Diop", "id_number": "2 345 1990 00456", "phone": "77 222 33 44"}
    body = household_form("list-2")
    body["members"][0].update(second_head)
    second = post(client, key, body)
    assert second.status_code == 201, second.json
    assert post(client, other, household_form("list-3")).status_code == 201
    listed = json_of(client.get("/api/enrolments", headers=bearer(key)))["enrolments"]
    assert [e["client_id"] for e in listed] == ["list-2", "list-1"]
    assert listed[1] == {
        "id": first.json["id"],
        "client_id": "list-1",
        "kind": "household",
        "status": "SUBMITTED",
        "reason": None,
        "household_no": None,
        "created_at": listed[1]["created_at"],
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", listed[1]["created_at"])
    needs = cli("enrolments", "needs-changes", str(first.json["id"]), "--reason", "ID card unreadable")
    assert needs.exit_code == 0, needs.output
    validated = cli("enrolments", "validate", str(second.json["id"]))
    assert validated.exit_code == 0, validated.output
    number = validated.output.strip().splitlines()[-1]
    listed = json_of(client.get("/api/enrolments", headers=bearer(key)))["enrolments"]
    by_client = {e["client_id"]: e for e in listed}
    assert by_client["list-1"]["status"] == "NEEDS_CHANGES" and by_client["list-1"]["reason"] == "ID card unreadable"
    assert by_client["list-2"]["status"] == "VALIDATED" and by_client["list-2"]["household_no"] == number
