"""Two mutuelles' managers and a union's user, each signed in to the admin in a real Chromium on the demo seed.

Issue 24's "done when": each manager sees and acts only on their own members and payments; the union's user sees
the mutuelles side by side. tests/test_mutuelles_access.py proves every route over HTTP; this is what they see.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.access.staff import create_staff_user
from models.base import StaffRole
from models.db import get_engine
from models.members.household import Household
from models.payments.payment import Payment
from models.schemes.mutuelle import Mutuelle
from models.schemes.scheme import Scheme
from tests import backends
from tests.browser_helpers import Server, demo_server, launch_chromium, serve

if TYPE_CHECKING:  # Playwright itself is imported by the fixtures: only the browser tests need it
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser

PASSWORD = "mutuelle-pass-123"
USERS = {"awa-tn": ("SN-TN",), "binta-pk": ("SN-PK",), "union": ()}
NUMBER = re.compile(r"\b(SN|KH)-[A-Z]{2}-\d{6}\b")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, redis_space: backends.RedisSpace) -> Iterator[Server]:
    """Yield a running server on the demo seed with a manager for Thiès Nord, one for Pékesse, and a union user."""
    running = demo_server(tmp_path_factory.mktemp("mutuelles"), redis_space)
    with Session(get_engine(running.db_url)) as session:
        for username, codes in USERS.items():
            create_staff_user(session, username, PASSWORD, StaffRole.OPERATOR, language="en", mutuelles=codes)
        session.commit()
    yield from serve(running, redis_space)


@pytest.fixture(scope="module")
def browser(server: Server) -> Iterator[Browser]:
    """Yield a headless Debian Chromium driven by Playwright."""
    with launch_chromium() as chromium:
        yield chromium


def signed_in(browser: Browser, server: Server, username: str) -> Page:
    """Return a page of a new browser context signed in as the user."""
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{server.url}/admin/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.url}/admin/")
    return page


def _ids(server: Server) -> dict[str, tuple[int, int]]:
    """Return, per CMU mutuelle, a household id and a payment id of it."""
    found = {}
    with Session(get_engine(server.db_url)) as session:
        for mutuelle in session.scalars(select(Mutuelle).where(Mutuelle.code.in_(["SN-TN", "SN-PK"]))):
            household = session.scalars(select(Household.id).where(Household.mutuelle_id == mutuelle.id)).first()
            payment = session.scalars(select(Payment.id).where(Payment.mutuelle_id == mutuelle.id)).first()
            assert household is not None and payment is not None
            found[mutuelle.code] = (household, payment)
    return found


@pytest.mark.parametrize(("username", "own", "other"), [("awa-tn", "SN-TN", "SN-PK"), ("binta-pk", "SN-PK", "SN-TN")])
def test_a_manager_sees_and_acts_only_on_their_own_mutuelle(
    browser: Browser, server: Server, username: str, own: str, other: str
) -> None:
    ids = _ids(server)
    page = signed_in(browser, server, username)
    assert own in page.inner_text("header")  # the header names the user's mutuelle
    page.click("nav >> text=Households")
    page.goto(f"{server.url}/admin/households?per=200")
    numbers = {match.group(0) for match in NUMBER.finditer(page.inner_text("main"))}
    assert numbers and all(number.startswith(own + "-") for number in numbers), numbers
    page.goto(f"{server.url}/admin/payments?per=200")
    assert f"/admin/payments/{ids[own][1]}" in page.content()
    assert f'/admin/payments/{ids[other][1]}"' not in page.content()
    # Another mutuelle's household and payment, typed into the address bar: not found, and no action offered.
    for path in (f"/admin/households/{ids[other][0]}", f"/admin/payments/{ids[other][1]}"):
        response = page.goto(f"{server.url}{path}")
        assert response is not None and response.status == 404
        assert page.locator("form[method=post] button").count() == 0
    # Their own household: its page and its suspend action are there.
    page.goto(f"{server.url}/admin/households/{ids[own][0]}")
    assert own in page.inner_text("main")
    page.context.close()


def test_a_union_user_sees_the_mutuelles_side_by_side_with_the_totals(browser: Browser, server: Server) -> None:
    with Session(get_engine(server.db_url)) as session:
        cmu = session.scalars(select(Scheme.id).where(Scheme.code == "cmu-thies")).one()
    page = signed_in(browser, server, "union")
    page.goto(f"{server.url}/admin/reports?scheme={cmu}")
    table = page.inner_text("main table")
    for name in ("Thiès Nord", "Pékesse", "Mont Rolland"):
        assert name in table
    assert re.search(r"(?i)total", table)
    page.goto(f"{server.url}/admin/households?per=200")
    numbers = {match.group(0)[:5] for match in NUMBER.finditer(page.inner_text("main"))}
    assert {"SN-TN", "SN-PK", "SN-MR"} <= numbers
    page.context.close()
