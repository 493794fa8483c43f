"""`POST /sms/delivery`: AT delivery reports update the outbound message log, through the HTTP contract."""

from __future__ import annotations

import urllib.parse

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.base import MessageDirection, MessageStatus
from models.messaging.message import DeliveryReport, Message
from tests.conftest import CALLBACK_TOKEN, FIXTURES

PHONE = "+221771234567"


def report(client: FlaskClient, token: str | None = CALLBACK_TOKEN, **fields: str) -> tuple[int, str]:
    """Post a form-encoded delivery report as AT does; return the status code and body."""
    url = "/sms/delivery" + (f"?token={token}" if token is not None else "")
    response = client.post(url, data=fields)
    return response.status_code, response.get_data(as_text=True)


def sent_message(
    session: Session, provider_id: str | None = "ATXid_1", status: MessageStatus = MessageStatus.SENT
) -> Message:
    """Store an outbound message as the send job leaves it."""
    message = Message(
        direction=MessageDirection.OUTBOUND,
        phone=PHONE,
        body="Paiement recu",
        status=status,
        transport="africastalking",
        provider_message_id=provider_id,
    )
    session.add(message)
    session.commit()
    return message


def stored(session: Session, message: Message) -> Message:
    """Return the message as stored now."""
    session.commit()
    fresh = session.get(Message, message.id, populate_existing=True)
    assert fresh is not None
    return fresh


def reports(session: Session) -> list[DeliveryReport]:
    """Return every stored delivery report, oldest first."""
    session.commit()
    return list(session.scalars(select(DeliveryReport).order_by(DeliveryReport.id)))


def test_submitted_then_success(client: FlaskClient, session: Session) -> None:
    message = sent_message(session)

    assert report(client, id="ATXid_1", status="Submitted", phoneNumber=PHONE, networkCode="60801", retryCount="0") == (
        200,
        "OK",
    )
    assert stored(session, message).status is MessageStatus.SUBMITTED
    assert (
        report(client, id="ATXid_1", status="Success", phoneNumber=PHONE, networkCode="60801", retryCount="0")[0] == 200
    )
    assert stored(session, message).status is MessageStatus.SUCCESS

    assert [(r.status, r.message_id, r.network_code) for r in reports(session)] == [
        ("Submitted", message.id, "60801"),
        ("Success", message.id, "60801"),
    ]


def test_a_late_intermediate_report_does_not_undo_a_final_one(client: FlaskClient, session: Session) -> None:
    message = sent_message(session)
    report(client, id="ATXid_1", status="Success", phoneNumber=PHONE)
    report(client, id="ATXid_1", status="Buffered", phoneNumber=PHONE, retryCount="1")
    assert stored(session, message).status is MessageStatus.SUCCESS
    assert len(reports(session)) == 2


def test_failure_reason_and_retry_count_are_kept(client: FlaskClient, session: Session) -> None:
    message = sent_message(session)
    report(client, id="ATXid_1", status="Failed", phoneNumber=PHONE, failureReason="UserInBlackList", retryCount="2")
    fresh = stored(session, message)
    assert (fresh.status, fresh.failure_reason, fresh.retry_count) == (MessageStatus.FAILED, "UserInBlackList", 2)


def test_report_settles_a_message_left_unknown_by_a_read_timeout(client: FlaskClient, session: Session) -> None:
    message = sent_message(session, provider_id=None, status=MessageStatus.UNKNOWN)
    report(client, id="ATXid_late", status="Success", phoneNumber=PHONE, networkCode="60801")
    fresh = stored(session, message)
    assert (fresh.status, fresh.provider_message_id) == (MessageStatus.SUCCESS, "ATXid_late")
    assert reports(session)[0].message_id == message.id


def test_unknown_ids_from_the_fixture_are_stored_and_answered_200(client: FlaskClient, session: Session) -> None:
    lines = [
        line
        for line in (FIXTURES / "at_sms_delivery.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    for line in lines:
        fields = {key: values[0] for key, values in urllib.parse.parse_qs(line).items()}
        assert report(client, **fields)[0] == 200
    stored_reports = reports(session)
    assert [(r.provider_message_id, r.status, r.message_id) for r in stored_reports] == [
        ("ATXid_5d1b0c7e2a", "Success", None),
        ("ATXid_5d1b0c7e2b", "Buffered", None),
        ("ATXid_5d1b0c7e2c", "Failed", None),
        ("ATXid_5d1b0c7e2d", "Rejected", None),
    ]
    assert stored_reports[3].failure_reason == "InsufficientCredit"
    assert stored_reports[1].retry_count == 1


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_wrong_token_is_refused_and_nothing_is_stored(client: FlaskClient, session: Session, token: str | None) -> None:
    message = sent_message(session)
    status, _ = report(client, token=token, id="ATXid_1", status="Success", phoneNumber=PHONE)
    assert status == 403
    assert reports(session) == []
    assert stored(session, message).status is MessageStatus.SENT


def test_token_header_is_accepted(client: FlaskClient, session: Session) -> None:
    response = client.post(
        "/sms/delivery", data={"id": "ATXid_9", "status": "Success"}, headers={"X-Callback-Token": CALLBACK_TOKEN}
    )
    assert response.status_code == 200
    assert session.scalar(select(func.count()).select_from(DeliveryReport)) == 1


def test_body_over_64_kib_is_refused(client: FlaskClient, session: Session) -> None:
    status, _ = report(client, id="ATXid_1", status="Success", failureReason="x" * 70_000)
    assert status == 413
    assert reports(session) == []


def test_report_without_id_is_a_client_error(client: FlaskClient, session: Session) -> None:
    assert report(client, status="Success")[0] == 400
    assert reports(session) == []
