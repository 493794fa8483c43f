"""The admin in a real headless Chromium (Debian's) against a real server thread, demo seed and burst RQ worker.

Run with `REQUIRE_BROWSER=1` (CI) to fail, not skip, when Chromium is missing; with `ADMIN_SCREENSHOTS=docs` to
save screenshots of the main pages there.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.access.staff import create_staff_user
from models.base import HouseholdStatus, PaymentStatus, StaffRole
from models.db import get_engine
from models.members.household import Household
from models.payments.payment import Payment
from tests import backends
from tests.browser_helpers import SCREENSHOTS, Server, demo_server, launch_chromium, serve
from tests.conftest import CALLBACK_TOKEN, FIXTURES, ROOT

if TYPE_CHECKING:  # Playwright itself is imported by the fixtures: only the browser tests need it
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser

OPERATOR = ("ops", "operator-pass-123")
PHONE = "+221770000041"  # a demo head of household with one household


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, redis_space: backends.RedisSpace) -> Iterator[Server]:
    """Yield a running server on a demo-seeded SQLite database with an operator account."""
    running = demo_server(tmp_path_factory.mktemp("browser"), redis_space)
    with Session(get_engine(running.db_url)) as session:
        create_staff_user(session, OPERATOR[0], OPERATOR[1], StaffRole.OPERATOR, language="en")
        session.commit()
    yield from serve(running, redis_space)


@pytest.fixture(scope="module")
def browser(server: Server) -> Iterator[Browser]:
    """Yield a headless Debian Chromium driven by Playwright."""
    with launch_chromium() as chromium:
        yield chromium


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    """Yield a signed-in operator's page."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{server.url}/admin/login")
    page.fill("input[name=username]", OPERATOR[0])
    page.fill("input[name=password]", OPERATOR[1])
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.url}/admin/")
    yield page
    context.close()


def shot(page: Page, name: str) -> None:
    """Save a full-page screenshot under ADMIN_SCREENSHOTS when asked."""
    if SCREENSHOTS:
        Path(ROOT / SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ROOT / SCREENSHOTS / f"{name}.png"), full_page=True)


def test_sign_in_and_find_a_household(page: Page, server: Server) -> None:
    p = page
    assert "in suspense" in p.inner_text("main")
    shot(p, "admin-overview")
    p.click("nav >> text=Households")
    p.fill("input[name=q]", PHONE)
    p.keyboard.press("Enter")
    p.click("main table a >> nth=0")
    p.wait_for_selector("h1:has-text('Household')")
    assert "Status history" in p.inner_text("main")
    shot(p, "admin-household")


def test_resolve_a_suspense_payment_by_hand_and_see_its_audit_trail(page: Page, server: Server) -> None:
    p = page
    # A payment with a reference nobody has, paid through the simulator's sandbox button, reconciled by the worker.
    p.goto(f"{server.url}/admin/simulator")
    p.fill("#sim-phone", "+221770999999")  # nobody's phone either
    p.fill("#pay-amount", "3500")
    p.fill("#pay-reference", "NOBODY-4242")
    p.click("#pay-form button")
    p.wait_for_selector("#pay-result:has-text('RECEIVED')")
    txn = p.get_attribute("#pay-result", "data-txn-id")
    server.run_worker()
    with Session(get_engine(server.db_url)) as session:
        payment = session.scalars(select(Payment).where(Payment.provider_txn_id == txn)).one()
        assert payment.status == PaymentStatus.UNMATCHED
        household = session.scalars(
            select(Household).where(Household.status == HouseholdStatus.ACTIVE).order_by(Household.id)
        ).first()
        assert household is not None
        number = household.household_no
    p.goto(f"{server.url}/admin/payments?status=UNMATCHED")
    p.click(f"main tr:has-text('{txn}') a >> nth=0")
    p.click("#match-form button")  # no reason yet
    p.wait_for_selector("#match-form .error")
    p.fill("#match-form input[name=number]", number)
    p.fill("#match-form textarea[name=reason]", "payer phoned: typo in the reference")
    p.click("#match-form button")
    p.wait_for_selector("h1:has-text('ALLOCATED')")
    trail = p.inner_text("#audit-trail")
    assert "UNMATCHED → MATCHED by ops (rule manual): payer phoned: typo in the reference" in trail
    assert "MATCHED → ALLOCATED" in trail
    assert f"household {number}" in p.inner_text("main")
    shot(p, "admin-payment")


def test_upload_a_statement_and_read_its_break_report(page: Page, server: Server) -> None:
    p = page
    p.goto(f"{server.url}/admin/statements")
    p.select_option("select[name=provider]", "sandbox")
    p.set_input_files("input[name=file]", str(FIXTURES / "statement_sample.csv"))
    p.click("#upload-form button")
    p.wait_for_selector("h1:has-text('Statement #')")
    counts = p.inner_text("#break-counts")
    assert "duplicate line" in counts and "missing in system" in counts
    assert "2026-11-20" in p.inner_text("#day-totals")
    shot(p, "admin-statement")
    server.run_worker()  # the statement's new payments are reconciled by the real worker


def test_phone_simulator_dials_and_shows_coverage(page: Page, server: Server) -> None:
    from playwright.sync_api import expect

    p = page
    p.goto(f"{server.url}/admin/simulator")
    p.fill("#sim-phone", PHONE)
    p.click("#phone-call")
    # The admin's CSP forbids eval, so waits use Playwright's locator assertions, not wait_for_function.
    expect(p.locator("#phone-screen")).not_to_have_text(re.compile("^…"))
    p.wait_for_selector("#phone-screen:has-text('1 ')")
    menu = p.inner_text("#phone-screen")
    p.click(".key[data-key='1']")
    p.click("#phone-call")
    screen_box = p.locator("#phone-screen")
    expect(screen_box).not_to_have_text(menu)
    expect(screen_box).not_to_have_text("…")
    screen = p.inner_text("#phone-screen")
    assert "Couverture" in screen and "ouvert jusqu'au" in screen, screen  # the shared words: Couvert jusqu'au …
    shot(p, "admin-simulator")
    assert CALLBACK_TOKEN not in p.content()


def test_a_manager_goes_from_collection_by_network_to_reminding_those_who_have_not_renewed(
    page: Page, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    import csv
    import io

    from playwright.sync_api import expect

    import handlers.admin.renewals as renewals_handlers
    from models.base import utcnow
    from models.views.renewals import RENEWAL_COLUMNS

    # The server runs in this process: noon UTC today is within the demo scheme's daytime (Thies, 08:00–20:00).
    noon = utcnow().replace(hour=12, minute=0, second=0, microsecond=0)
    monkeypatch.setattr(renewals_handlers, "utcnow", lambda: noon)
    p = page
    p.goto(f"{server.url}/admin/reports?by=network")
    link = p.locator("main table tbody a[href^='/admin/renewals?network=']").first
    expect(link).to_be_visible()
    href = link.get_attribute("href")
    assert href is not None
    code = href.split("network=", 1)[1]
    link.click()
    p.wait_for_url(re.compile(r"/admin/renewals\?network="))
    expect(p.locator(f"select[name=network] option[value='{code}']")).to_have_attribute("selected", "")
    expect(p.locator("#renewal-count")).not_to_have_text("Households in this list: 0")
    rows = p.locator("main table tbody tr")
    expect(rows.first.locator("td.lead a")).to_be_visible()
    network_name = p.locator(f"select[name=network] option[value='{code}']").inner_text().strip()
    for cell in p.locator("main table tbody td[data-label=Network]").all_inner_texts():
        assert cell.strip() == network_name
    shot(p, "admin-renewals")
    p.locator("#remind-all button").click()
    p.wait_for_url(re.compile(r"/admin/renewals\?network="))
    expect(p.locator("p.flash")).to_have_text(re.compile(r"^Reminders: \d+ queued"))
    with p.expect_download() as info:
        p.get_by_role("link", name="Download CSV").click()
    download = info.value
    assert download.suggested_filename.startswith("renewals-")
    text = Path(download.path()).read_text(encoding="utf-8-sig")
    table = list(csv.reader(io.StringIO(text)))
    assert table[0] == [name for name, _ in RENEWAL_COLUMNS]
    assert len(table) > 1 and all(row[table[0].index("network_code")] == code for row in table[1:])
