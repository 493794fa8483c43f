"""`flask --app app ussd --phone +221…`: a terminal phone that dials the service through the real `/ussd` contract."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import click
import requests
from flask import current_app
from flask.cli import with_appcontext

from extensions import settings

Post = Callable[[str, dict[str, str]], str]


def _in_process() -> Post:
    client = current_app.test_client()
    token = settings().CALLBACK_TOKEN

    def post(path: str, form: dict[str, str]) -> str:
        response = client.post(path, data=form, headers={"X-Callback-Token": token})
        return response.get_data(as_text=True) if response.status_code == 200 else f"HTTP {response.status_code}"

    return post


def _remote(base_url: str, token: str) -> Post:
    session = requests.Session()

    def post(path: str, form: dict[str, str]) -> str:
        response = session.post(base_url.rstrip("/") + path, data=form, headers={"X-Callback-Token": token}, timeout=10)
        return response.text if response.status_code == 200 else f"HTTP {response.status_code}"

    return post


@click.command("ussd")
@click.option("--phone", required=True, help="The caller's phone number, E.164 (e.g. +221771234567).")
@click.option("--url", default=None, help="Base URL of a running server (default: this app, in process).")
@click.option("--token", default=None, help="Callback token of the server at --url (default: this app's).")
@click.option("--network", default="60801", show_default=True, help="AT network code.")
@with_appcontext
def ussd_command(phone: str, url: str | None, token: str | None, network: str) -> None:
    """Dial the USSD service as PHONE: screens are printed, each input is read from stdin."""
    config = settings()
    post = _remote(url, token or config.CALLBACK_TOKEN) if url else _in_process()
    session_id = f"ATUid_term_{uuid.uuid4().hex[:12]}"
    started = datetime.now(UTC)
    inputs: list[str] = []
    status, hops, reply = "Incomplete", 0, ""
    while True:
        form = {
            "sessionId": session_id,
            "phoneNumber": phone,
            "networkCode": network,
            "serviceCode": config.USSD_SERVICE_CODE,
            "text": "*".join(inputs),
        }
        reply = post("/ussd", form)
        hops += 1
        click.echo(reply)
        click.echo("-" * 20)
        if not reply.startswith("CON "):
            status = "Success" if reply.startswith("END ") else "Failed"
            break
        try:
            line = input("> ")
        except EOFError:
            break
        inputs.append(line.strip())
    # Tell the service the session ended, as AT does.
    post(
        "/ussd/events",
        {
            "date": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "sessionId": session_id,
            "serviceCode": config.USSD_SERVICE_CODE,
            "networkCode": network,
            "phoneNumber": phone,
            "status": status,
            "cost": "",
            "durationInMillis": str(int((datetime.now(UTC) - started).total_seconds() * 1000)),
            "hopsCount": str(hops),
            "input": "*".join(inputs),
            "lastAppResponse": reply,
            "errorMessage": "",
        },
    )
