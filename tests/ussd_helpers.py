"""Helpers of the USSD tests: hops posted as Africa's Talking posts them, a household to dial from."""

from __future__ import annotations

import uuid
from typing import Unpack

from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from menus.render import fits
from models.base import Language
from models.members.household import Household
from tests.conftest import CALLBACK_TOKEN
from tests.factories import HouseholdOptions, make_household, scheme

PHONE = "+221771234567"


def post_hop(client: FlaskClient, session_id: str, phone: str, text: str, token: str = CALLBACK_TOKEN) -> str:
    """Post one hop as AT does and return the reply, checking the contract's shape."""
    response = client.post(
        f"/ussd?token={token}",
        data={
            "sessionId": session_id,
            "serviceCode": "*384*123#",
            "phoneNumber": phone,
            "networkCode": "60801",
            "text": text,
        },
    )
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    body = response.get_data(as_text=True)
    assert body.startswith(("CON ", "END ")), body
    assert fits(body), body
    return body


def hops(client: FlaskClient, phone: str, *inputs: str, session_id: str | None = None) -> list[str]:
    """Play a session hop by hop and return every reply."""
    sid = session_id or f"ATUid_{uuid.uuid4().hex[:12]}"
    return [post_hop(client, sid, phone, "*".join(inputs[:index])) for index in range(len(inputs) + 1)]


def cmu_household(
    session: Session, phone: str = PHONE, language: Language = Language.FR, **kw: Unpack[HouseholdOptions]
) -> Household:
    """Return a CMU Thiès household (four people by default) whose head's phone is `phone`, in a language."""
    household = make_household(session, scheme(session, "cmu-thies"), phone=phone, **kw)
    household.language = language
    session.commit()
    return household
