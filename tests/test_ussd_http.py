"""USSD through the real HTTP contract: `POST /ussd` hops and `POST /ussd/events`, on the real Redis."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Unpack

import psycopg
import pytest
from flask import Flask, request_started
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis import Redis
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from werkzeug.serving import make_server
from werkzeug.test import Client
from werkzeug.wrappers import Request as WerkzeugRequest

from commands.ussd import ussd_command
from handlers import ussd as ussd_handlers
from menus.data import scheme_today
from menus.render import apology, format_date
from menus.session_store import connect
from models import db as db_module
from models.access.tables import EffectKey
from models.base import Language, PaymentStatus
from models.coverage.eligibility import household_eligibility
from models.db import get_engine
from models.members.household import Household
from models.messaging.message import UssdSessionRecord
from models.payments.payment import Payment, PaymentRequest
from redis_keys import ussd_session_key
from tests import backends
from tests.conftest import CALLBACK_TOKEN, FIXTURES, make_test_app
from tests.factories import HouseholdOptions, make_household, make_network, pay, scheme
from tests.ussd_helpers import post_hop

PHONE = "+221771234567"
SKY_PHONE = "+85512345678"
Dial = Callable[..., str]


@pytest.fixture
def dial(client: FlaskClient) -> Dial:
    """Return `dial(phone, *inputs, session_id=…)`: every hop of one session, the last screen returned."""

    def run(phone: str, *inputs: str, session_id: str | None = None) -> str:
        sid = session_id or f"ATUid_{uuid.uuid4().hex[:12]}"
        reply = post_hop(client, sid, phone, "")
        for index in range(1, len(inputs) + 1):
            reply = post_hop(client, sid, phone, "*".join(inputs[:index]))
        return reply

    return run


def cmu_household(session: Session, phone: str = PHONE, **kwargs: Unpack[HouseholdOptions]) -> Household:
    return make_household(session, scheme(session, "cmu-thies"), phone=phone, **kwargs)


def covered_cmu_household(session: Session, phone: str = PHONE) -> Household:
    """Return a CMU household of four that paid its first year 60 days ago (covered today)."""
    today = scheme_today("Africa/Dakar")
    household = cmu_household(session, phone, enrolled_on=today - timedelta(days=70))
    pay(session, household, 15_000, today - timedelta(days=60))
    return household


# ---------------------------------------------------------------- scripted sessions


def test_dial_shows_the_main_menu_in_french(session: Session, dial: Dial) -> None:
    household = cmu_household(session)
    assert dial(PHONE) == (
        f"CON Ménage {household.household_no}\n1 Ma couverture\n2 Payer\n3 Mon ménage\n4 Mes paiements\n5 Langue"
        "\n6 Payer pour un autre ménage"
    )


def test_my_coverage_in_french(session: Session, dial: Dial) -> None:
    household = covered_cmu_household(session)
    today = scheme_today("Africa/Dakar")
    eligibility = household_eligibility(session, household, today)
    assert eligibility.covered and eligibility.valid_until is not None
    until = format_date(eligibility.valid_until, "fr")
    next_payment = format_date(eligibility.next_payment_due, "fr") if eligibility.next_payment_due else None
    assert next_payment == until  # the next payment is due the last day of cover
    assert dial(PHONE, "1") == (
        f"CON Couverture au {format_date(today, 'fr')}\nCouvert jusqu'au {until}.\n"
        f"Prochain paiement : 14 000 F CFA avant le {until}.\nAwa\nMoussa\nFatou\nIbrahima\n0 Retour"
    )


def test_my_coverage_in_english_for_a_household_that_never_paid(session: Session, dial: Dial) -> None:
    sky = scheme(session, "sky-cambodia")
    household = make_household(session, sky, size=2, phone=SKY_PHONE)
    household.language = Language.EN
    session.commit()
    today = scheme_today("Asia/Phnom_Penh")
    assert dial(SKY_PHONE, "1") == (
        f"CON Coverage on {format_date(today, 'en')}\nAmount due: 3,600 riel\nAwa: NOT covered (never paid)\n"
        "Moussa: NOT covered (never paid)\n0 Back"
    )


def test_pay_shows_the_amount_due_from_eligibility(session: Session, dial: Dial) -> None:
    cmu_household(session)  # four people, standard: 1,000 fee + 4 × 3,500
    assert dial(PHONE, "2").startswith("CON Montant à payer: 15 000 F CFA\n1 15 000 F CFA (12 mois)\n")


def test_my_household(session: Session, dial: Dial) -> None:
    network = make_network(session, scheme(session, "cmu-thies"))
    household = cmu_household(session, size=2, network=network)
    assert dial(PHONE, "3") == (
        f"CON Ménage {household.household_no}\nFormule: annuelle\nRéseau: {network.name}\nMembres: 2\n"
        "Awa (01)\nMoussa (02)\n0 Retour"
    )


def test_my_payments_shows_the_last_five_newest_first(session: Session, dial: Dial) -> None:
    household = cmu_household(session)
    for day in range(1, 8):
        session.add(
            Payment(
                provider="wave",
                provider_txn_id=f"T_{day}",
                amount=1000 * day,
                currency="XOF",
                paid_at=datetime(2026, 10, day, 9, 0),
                fields_hash="x" * 64,
                status=PaymentStatus.ALLOCATED,
                household_id=household.id,
            )
        )
    session.commit()
    pages = [dial(PHONE, "4")]
    while "98 Suite" in pages[-1]:
        pages.append(dial(PHONE, "4", *["98"] * len(pages)))
    lines = [line for page in pages for line in page.split("\n") if " F CFA " in line]
    assert lines == [f"0{day}/10/2026 {day} 000 F CFA appliqué" for day in (7, 6, 5, 4, 3)]


def test_language_change_is_stored_once_and_the_menu_follows(
    session: Session, client: FlaskClient, clear_redis: Callable[[], None]
) -> None:
    cmu = scheme(session, "cmu-thies")
    cmu.languages = ["fr", "en"]
    household = cmu_household(session)
    sid = "ATUid_lang"
    for text in ("", "5"):
        post_hop(client, sid, PHONE, text)
    changed = post_hop(client, sid, PHONE, "5*2")
    assert changed.startswith(f"CON Language saved.\nHousehold {household.household_no}\n1 My coverage")
    assert post_hop(client, sid, PHONE, "5*2") == changed  # AT retried the hop
    clear_redis()
    assert post_hop(client, sid, PHONE, "5*2") == changed  # the key was lost: replayed
    session.expire_all()
    assert session.get_one(Household, household.id).language == Language.EN
    assert session.scalar(select(func.count()).select_from(EffectKey)) == 1
    assert post_hop(client, sid, PHONE, "5*2*1").startswith("CON Coverage on")


def test_the_coverage_read_on_the_dial_follows_the_data_from_one_session_to_the_next(
    session: Session, client: FlaskClient
) -> None:
    today = scheme_today("Africa/Dakar")
    household = cmu_household(session, enrolled_on=today - timedelta(days=70))
    post_hop(client, "ATUid_cov1", PHONE, "")
    assert "\nAwa: NON couvert (jamais payé)\n" in post_hop(client, "ATUid_cov1", PHONE, "1")
    assert post_hop(client, "ATUid_cov1", PHONE, "1*0*2").startswith("CON Montant à payer: 15 000 F CFA\n")
    pay(session, household, 15_000, today - timedelta(days=60))
    # A session reads its coverage once, on the dial; the next session reads it again, paid.
    post_hop(client, "ATUid_cov2", PHONE, "")
    assert "\nCouvert jusqu'au " in post_hop(client, "ATUid_cov2", PHONE, "1")
    # Nothing is due: Pay offers the next year's premium ahead, the membership fee being paid.
    assert post_hop(client, "ATUid_cov2", PHONE, "1*0*2").startswith("CON Prochain paiement : 14 000 F CFA avant le ")


def test_a_late_duplicate_dial_does_not_break_the_session(session: Session, client: FlaskClient) -> None:
    cmu_household(session, size=8)
    sid = "ATUid_dup"
    first = post_hop(client, sid, PHONE, "")
    for text in ("3", "3*98", "3*98*0"):
        post_hop(client, sid, PHONE, text)
    assert post_hop(client, sid, PHONE, "") == first  # answered afresh: the dial reads nothing first
    assert post_hop(client, sid, PHONE, "3*98*0*0") == first  # the rest replayed over the new dial's state
    assert post_hop(client, sid, PHONE, "3*98*0*0*3") == post_hop(client, "ATUid_dup2", PHONE, "3")


def test_a_session_survives_a_lost_redis_mid_session(
    session: Session, client: FlaskClient, redis_client: Redis, clear_redis: Callable[[], None]
) -> None:
    cmu_household(session, size=8)
    sid = "ATUid_flush"
    post_hop(client, sid, PHONE, "")
    post_hop(client, sid, PHONE, "3")
    expected = post_hop(client, sid, PHONE, "3*98")
    post_hop(client, "ATUid_other", PHONE, "")
    clear_redis()
    replayed = post_hop(client, "ATUid_flush2", PHONE, "")
    assert replayed.startswith("CON Ménage")
    post_hop(client, "ATUid_flush3", PHONE, "3")
    clear_redis()
    assert post_hop(client, "ATUid_flush3", PHONE, "3*98") == expected
    assert redis_client.exists(ussd_session_key("ATUid_flush3"))


def test_the_fixture_session_with_a_reset_text(session: Session, client: FlaskClient) -> None:
    cmu_household(session)
    lines = (FIXTURES / "at_ussd_session.txt").read_text().splitlines()
    forms = [dict(part.split("=", 1) for part in line.split("&")) for line in lines if not line.startswith("#")]
    replies = []
    for form in forms:
        # The fixture is form-encoded already: send it verbatim.
        response = client.post(
            f"/ussd?token={CALLBACK_TOKEN}", data=_encoded(form), content_type="application/x-www-form-urlencoded"
        )
        assert response.status_code == 200
        replies.append(response.get_data(as_text=True))
    assert replies[0].startswith("CON Ménage") and replies[1].startswith("CON Couverture")
    assert replies[2].startswith("CON Montant à payer: 15 000 F CFA")  # `2` resets: replayed from the dial
    assert replies[3].startswith("END Référence ") and "payez 15 000 F CFA par" in replies[3]
    assert replies[4] == replies[3]  # input after END: the same screen, no second request
    assert session.scalar(select(func.count()).select_from(PaymentRequest)) == 1


def _encoded(form: dict[str, str]) -> str:
    return "&".join(f"{key}={value}" for key, value in form.items())


def test_a_shared_phone_picks_the_household_first(session: Session, dial: Dial) -> None:
    first = cmu_household(session)
    second = cmu_household(session, size=2)
    assert dial(PHONE) == (f"CON Choisissez votre ménage:\n1 {first.household_no} Awa\n2 {second.household_no} Awa")
    assert dial(PHONE, "2").startswith(f"CON Ménage {second.household_no}\n")
    assert "Membres: 2" in dial(PHONE, "2", "3")


def test_an_unknown_phone_is_offered_a_check_by_member_number(session: Session, dial: Dial) -> None:
    cmu_household(session)
    assert dial("+221700000000") == (
        "CON Ce numéro n'est pas enregistré. Pour vérifier un membre, entrez son numéro de membre:"
    )


def test_invalid_input_re_asks_with_a_hint(session: Session, dial: Dial) -> None:
    household = cmu_household(session)
    assert dial(PHONE, "9").startswith(f"CON Choix invalide.\nMénage {household.household_no}\n1 Ma couverture")


def test_wrong_or_missing_token_is_403_and_nothing_is_stored(
    session: Session, client: FlaskClient, redis_space: backends.RedisSpace
) -> None:
    cmu_household(session)
    form = {"sessionId": "ATUid_x", "phoneNumber": PHONE, "serviceCode": "*384*123#", "networkCode": "1", "text": ""}
    assert client.post("/ussd?token=wrong", data=form).status_code == 403
    assert client.post("/ussd", data=form).status_code == 403
    assert client.post("/ussd/events?token=wrong", data={"sessionId": "ATUid_x"}).status_code == 403
    assert redis_space.keys() == []
    assert client.post("/ussd", data=form, headers={"X-Callback-Token": CALLBACK_TOKEN}).status_code == 200


def test_a_hop_neither_reads_nor_sets_a_cookie(session: Session, client: FlaskClient) -> None:
    cmu_household(session)
    client.set_cookie("session", "not-a-signed-session")  # not even read: the cookie session is the admin's
    form = {"sessionId": "ATUid_c", "phoneNumber": PHONE, "serviceCode": "*384*123#", "networkCode": "1", "text": ""}
    response = client.post(f"/ussd?token={CALLBACK_TOKEN}", data=form)
    assert response.status_code == 200 and response.get_data(as_text=True).startswith("CON ")
    assert "Set-Cookie" not in response.headers
    assert "Cookie" not in response.headers.get("Vary", "")


# ---------------------------------------------------------------- the WSGI fast path in front of Flask


def _form(sid: str, text: str) -> dict[str, str]:
    return {"sessionId": sid, "phoneNumber": PHONE, "serviceCode": "*384*123#", "networkCode": "1", "text": text}


def test_the_fast_path_answers_as_the_flask_view_does(session: Session, app: Flask) -> None:
    cmu_household(session, size=8)
    fast_path = app.wsgi_app
    assert isinstance(fast_path, ussd_handlers.UssdFastPath)  # in front of Flask's own WSGI callable
    fast, slow = app.test_client(), Client(fast_path.wsgi_app)
    dispatched: list[str] = []
    request_started.connect(lambda sender, **_: dispatched.append("flask"), app, weak=False)
    for sid, texts in (("ATUid_f", ["", "1", "1*98", "1*98*0", "1*98*0*0*3"]), ("ATUid_s", ["3", "3*0*9"])):
        for text in texts:
            one = fast.post(f"/ussd?token={CALLBACK_TOKEN}", data=_form(sid, text))
            other = slow.post(f"/ussd?token={CALLBACK_TOKEN}", data=_form(sid + "2", text))
            assert (one.status_code, one.headers["Content-Type"]) == (200, "text/plain; charset=utf-8")
            assert (other.status_code, other.headers["Content-Type"]) == (200, "text/plain; charset=utf-8")
            assert one.get_data(as_text=True) == other.get_data(as_text=True)
    assert len(dispatched) == 7  # the Flask client's hops only


def test_requests_the_fast_path_does_not_take_get_flasks_answer(
    session: Session, client: FlaskClient, redis_space: backends.RedisSpace
) -> None:
    cmu_household(session)
    big = dict(_form("ATUid_big", ""), pad="x" * (64 * 1024))
    assert client.post(f"/ussd?token={CALLBACK_TOKEN}", data=big).status_code == 413
    wrong_first = f"/ussd?token=wrong&token={CALLBACK_TOKEN}"
    assert client.post(wrong_first, data=_form("ATUid_w", "")).status_code == 403
    header = {"X-Callback-Token": CALLBACK_TOKEN}
    assert client.post("/ussd?token=wrong", data=_form("ATUid_w", ""), headers=header).status_code == 403
    assert redis_space.keys() == []
    # Not form-encoded: Flask's view, which finds no sessionId and apologises.
    as_json = client.post(f"/ussd?token={CALLBACK_TOKEN}", json=_form("ATUid_j", ""))
    assert (as_json.status_code, as_json.get_data(as_text=True)) == (200, apology(None))
    multipart = client.post(
        f"/ussd?token={CALLBACK_TOKEN}", data=_form("ATUid_m", ""), content_type="multipart/form-data"
    )
    assert multipart.status_code == 200 and multipart.get_data(as_text=True).startswith("CON Ménage")
    assert client.post("/ussd?token=" + CALLBACK_TOKEN.upper(), data=_form("ATUid_u", "")).status_code == 403


@pytest.mark.parametrize(
    "query",
    [
        "token=abc",
        "token=a%2Bb",
        "token=a+b",
        "x=1&token=abc",
        "token=&x=1",
        "token=abc&token=def",
        "to%6Ben=abc",
        "token=%C3%A9",
        "token=\u00c3\u00a9",
        "token",
        "tokens=abc",
        "",
    ],
)
def test_the_fast_path_reads_the_query_token_as_werkzeug_does(query: str) -> None:
    environ = {"QUERY_STRING": query, "HTTP_X_CALLBACK_TOKEN": "from-header"}
    expected = WerkzeugRequest(environ).args.get("token") or "from-header"
    assert ussd_handlers._presented_token(environ) == expected


def test_a_failing_teardown_still_answers_the_hop(session: Session, app: Flask) -> None:
    cmu_household(session)

    def broken(_exc: BaseException | None) -> None:
        raise RuntimeError("teardown failed")

    app.teardown_appcontext(broken)
    response = app.test_client().post(f"/ussd?token={CALLBACK_TOKEN}", data=_form("ATUid_td", ""))
    assert response.status_code == 200 and response.get_data(as_text=True).startswith("CON Ménage")


def test_an_undecodable_body_gets_an_apology(session: Session, client: FlaskClient) -> None:
    body = b"sessionId=ATUid_bad&phoneNumber=%2B221771234567&text=\xff\xfe"
    response = client.post(f"/ussd?token={CALLBACK_TOKEN}", data=body, content_type="application/x-www-form-urlencoded")
    assert (response.status_code, response.get_data(as_text=True)) == (200, apology(None))


# ---------------------------------------------------------------- failures: an apology, fast, never a 5xx


def _assert_apology_fast(app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    client = app.test_client()
    caplog.set_level(logging.WARNING)
    started = time.monotonic()
    body = post_hop(client, "ATUid_down", PHONE, "1")
    elapsed = time.monotonic() - started
    assert body == "END Désolé, le service est indisponible. Réessayez plus tard."
    assert elapsed < 1.0
    lines = [r.getMessage() for r in caplog.records if r.name.startswith(("menus", "handlers"))]
    assert len(lines) == 1 and "hop failed" in lines[0]
    assert "771234567" not in caplog.text


def test_redis_down_answers_an_apology_in_under_a_second(sqlite_url: str, caplog: pytest.LogCaptureFixture) -> None:
    _assert_apology_fast(make_test_app(sqlite_url, f"redis://127.0.0.1:{backends.free_port()}/0"), caplog)


def test_database_down_answers_an_apology_in_under_a_second(redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    url = f"postgresql://postgres@127.0.0.1:{backends.free_port()}/nowhere"
    _assert_apology_fast(make_test_app(url, redis_url), caplog)


def test_a_dial_right_after_the_database_dropped_the_pooled_connections_still_answers(
    pg_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 3600.0)  # no ping: the read itself finds them dead
    app = make_test_app(pg_url, redis_url)
    with Session(get_engine(pg_url)) as s:
        number = cmu_household(s).household_no
    client = app.test_client()
    assert post_hop(client, "ATUid_pg1", PHONE, "").startswith(f"CON Ménage {number}")
    with psycopg.connect(pg_url, autocommit=True) as conn:  # a database restart, as far as the pool can tell
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        )
    assert post_hop(client, "ATUid_pg2", PHONE, "").startswith(f"CON Ménage {number}")


def test_a_hop_after_redis_dropped_the_connection_still_answers(
    session: Session, app: Flask, client: FlaskClient, redis_url: str
) -> None:
    cmu_household(session)
    expected = [post_hop(client, "ATUid_rk1", PHONE, text) for text in ("", "3")]
    store_client = connect(redis_url, app.config["USSD_REDIS_TIMEOUT_MS"] / 1000)
    admin = Redis.from_url(redis_url)
    replies = []
    for text in ("", "3"):  # a SET, then a GETEX, each on a connection Redis has just closed (a restart)
        admin.client_kill_filter(_id=str(store_client.client_id()))
        replies.append(post_hop(client, "ATUid_rk2", PHONE, text))
    assert replies == expected


def test_the_apology_speaks_the_session_language(session: Session, client: FlaskClient, redis_url: str) -> None:
    sky = scheme(session, "sky-cambodia")
    household = make_household(session, sky, phone=SKY_PHONE)
    household.language = Language.EN
    session.commit()
    assert post_hop(client, "ATUid_en", SKY_PHONE, "").startswith("CON Household")
    # The next hop needs the payments, and the database has gone away meanwhile.
    broken = make_test_app(f"postgresql://postgres@127.0.0.1:{backends.free_port()}/nowhere", redis_url)
    body = post_hop(broken.test_client(), "ATUid_en", SKY_PHONE, "4")
    assert body == "END Sorry, the service is not available right now. Please try again later."


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=st.one_of(
        st.text(alphabet="0123456789*#", max_size=80),
        st.text(max_size=200),
        st.lists(st.sampled_from(["1", "2", "3", "4", "5", "98", "0", "00", "", "x"]), max_size=20).map("*".join),
        st.text(alphabet="0123456789*", min_size=2000, max_size=6000),
    )
)
def test_any_text_gets_con_or_end_within_budget(hyp_client: FlaskClient, text: str) -> None:
    post_hop(hyp_client, f"ATUid_h{uuid.uuid4().hex[:10]}", PHONE, text)


@pytest.fixture
def hyp_client(sqlite_url: str, redis_url: str) -> FlaskClient:
    app = make_test_app(sqlite_url, redis_url)
    from models.db import get_engine

    with Session(get_engine(sqlite_url)) as s:
        cmu_household(s, size=10)
    return app.test_client()


# ---------------------------------------------------------------- end-of-session events


EVENT = {
    "date": "2026-11-20T10:15:42Z",
    "serviceCode": "*384*123#",
    "networkCode": "60801",
    "phoneNumber": PHONE,
    "status": "Success",
    "cost": "XOF 5.0000",
    "durationInMillis": "41250",
    "hopsCount": "3",
    "lastAppResponse": "END ...",
    "errorMessage": "",
}


def test_events_store_the_session_and_clear_its_state(
    session: Session, client: FlaskClient, redis_client: Redis
) -> None:
    cmu_household(session)
    for text in ("", "1"):
        post_hop(client, "ATUid_ev", PHONE, text)
    assert redis_client.exists(ussd_session_key("ATUid_ev"))
    response = client.post(f"/ussd/events?token={CALLBACK_TOKEN}", data=dict(EVENT, sessionId="ATUid_ev", input="1"))
    assert response.status_code == 200
    assert not redis_client.exists(ussd_session_key("ATUid_ev"))
    record = session.scalars(select(UssdSessionRecord)).one()
    assert (record.session_id, record.status, record.input) == ("ATUid_ev", "Success", "1")
    assert record.last_screen == "coverage"
    assert (record.duration_ms, record.hops_count, record.ended_at) == (41250, 3, datetime(2026, 11, 20, 10, 15, 42))


def test_events_record_the_last_screen_of_a_hop_that_was_not_saved(
    session: Session, client: FlaskClient, redis_client: Redis
) -> None:
    cmu_household(session)
    for text in ("", "3"):  # `3` replays one input over the dial's saved state: no write
        post_hop(client, "ATUid_nav", PHONE, text)
    assert json.loads(redis_client.get(ussd_session_key("ATUid_nav")) or "{}")["text"] == ""
    form = dict(EVENT, sessionId="ATUid_nav", input="3")
    assert client.post(f"/ussd/events?token={CALLBACK_TOKEN}", data=form).status_code == 200
    assert session.scalars(select(UssdSessionRecord)).one().last_screen == "household"


def test_events_mask_dates_of_birth_and_pins_without_state(session: Session, client: FlaskClient) -> None:
    response = client.post(
        f"/ussd/events?token={CALLBACK_TOKEN}",
        data=dict(EVENT, sessionId="ATUid_lost", input="2*SN000123-01*12031985", status="Incomplete"),
    )
    assert response.status_code == 200
    record = session.scalars(select(UssdSessionRecord)).one()
    assert record.input == "2*SNxxxx-01*xxxx"
    assert "12031985" not in str(record.raw)


def test_the_fixture_events_are_all_stored(session: Session, client: FlaskClient) -> None:
    lines = [line for line in (FIXTURES / "at_ussd_event.txt").read_text().splitlines() if not line.startswith("#")]
    for line in lines:
        response = client.post(
            f"/ussd/events?token={CALLBACK_TOKEN}", data=line, content_type="application/x-www-form-urlencoded"
        )
        assert response.status_code == 200
    records = session.scalars(select(UssdSessionRecord).order_by(UssdSessionRecord.id)).all()
    assert [r.status for r in records] == ["Success", "Incomplete", "Failed"]
    assert records[2].error_message == "Application response timeout"


# ---------------------------------------------------------------- the terminal phone


def test_terminal_phone_in_process(session: Session, app: Flask) -> None:
    household = cmu_household(session, size=2)
    result = app.test_cli_runner().invoke(ussd_command, ["--phone", PHONE], input="3\n0\n2\n1\n")
    assert result.exit_code == 0, result.output
    assert f"CON Ménage {household.household_no}" in result.output
    assert "Awa (01)" in result.output
    assert "CON Montant à payer" in result.output and "END Référence " in result.output
    record = session.scalars(select(UssdSessionRecord)).one()
    assert (record.status, record.input) == ("Success", "3*0*2*1")


def test_terminal_phone_against_a_running_server(session: Session, app: Flask) -> None:
    household = cmu_household(session, size=2)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        result = app.test_cli_runner().invoke(ussd_command, ["--phone", PHONE, "--url", url], input="1\n00\n")
    finally:
        server.shutdown()
        thread.join(5)
    assert result.exit_code == 0, result.output
    assert result.output.count(f"CON Ménage {household.household_no}") == 2
    assert "CON Couverture au" in result.output
