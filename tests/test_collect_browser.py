"""The collectors' form in Chromium at 390×844: sign in with a key, submit online, fill two households offline and
reload the page offline (the service worker serves it), then see both sent exactly once; a 422 on its field.

`REQUIRE_BROWSER=1` fails, not skips, without Chromium; `ADMIN_SCREENSHOTS=docs` saves docs/collect-*.png.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.db import get_engine
from models.enrolment.collectors import create_collector
from models.enrolment.tables import Enrolment, EnrolmentStatus
from models.enrolment.validate import ask_for_changes
from tests import backends
from tests.browser_helpers import SCREENSHOTS, Server, demo_server, launch_chromium, serve
from tests.conftest import ROOT

if TYPE_CHECKING:  # Playwright itself is imported when a browser is launched
    from playwright.sync_api import Browser, Locator, Page
    from playwright.sync_api._generated import LocatorAssertions

pytestmark = pytest.mark.browser
# Wait until the service worker controls the page (it has cached the shell by then).
CONTROLLED = """async () => {
  await navigator.serviceWorker.ready;
  if (!navigator.serviceWorker.controller) {
    await new Promise((resolve) => navigator.serviceWorker.addEventListener("controllerchange", resolve));
  }
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, redis_space: backends.RedisSpace) -> Iterator[Server]:
    """Yield a running server on a demo-seeded SQLite database."""
    running = demo_server(tmp_path_factory.mktemp("collect"), redis_space)
    yield from serve(running, redis_space)


@pytest.fixture(scope="module")
def browser(server: Server) -> Iterator[Browser]:
    """Yield a headless Debian Chromium driven by Playwright."""
    with launch_chromium() as chromium:
        yield chromium


def new_key(server: Server, name: str) -> tuple[int, str]:
    """Create a Thiès Nord collector; return its id and key."""
    with Session(get_engine(server.db_url)) as session:
        collector, key = create_collector(session, name=name, mutuelle_code="SN-TN")
        session.commit()
        return collector.id, key


class Sent(NamedTuple):
    """An enrolment as the staff queue reads it: its form's id, status, commune, head and size."""

    client_id: str
    status: EnrolmentStatus
    commune: str
    head: str
    born: str
    phone: str | None
    size: int


def enrolments_of(server: Server, collector_id: int) -> list[Sent]:
    """Return the collector's enrolments in the database, oldest first."""
    with Session(get_engine(server.db_url)) as session:
        rows = session.scalars(select(Enrolment).where(Enrolment.collector_id == collector_id).order_by(Enrolment.id))
        return [
            Sent(
                e.client_id,
                e.status,
                e.commune,
                e.members[0].first_name,
                e.members[0].date_of_birth.isoformat(),
                e.members[0].phone,
                len(e.members),
            )
            for e in rows
        ]


def shot(page: Page, name: str) -> None:
    """Save a screenshot of the phone's screen under ADMIN_SCREENSHOTS when asked."""
    if SCREENSHOTS:
        Path(ROOT / SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ROOT / SCREENSHOTS / f"collect-{name}.png"))


def by_id(element_id: str) -> str:
    return f'[id="{element_id}"]'


def expect(locator: Locator) -> LocatorAssertions:
    """Playwright's `expect`, imported when a browser runs."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def sign_in(browser: Browser, server: Server, key: str) -> Page:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{server.url}/collect/")
    page.fill("#key", "ck_not-a-key")
    page.click("#signin")
    expect(page.locator("#signin-error")).to_contain_text("Clé refusée")
    page.fill("#key", key)
    page.click("#signin")
    page.wait_for_selector("#new-household")
    return page


def fill_household(page: Page, first: str, last: str, born: str, phone: str, id_number: str) -> None:
    """Fill a household (a head and a child) and open its summary."""
    page.click("#new-household")
    page.select_option("#subsidy_category", "standard")
    head = "members[0]"
    page.fill(by_id(f"{head}.first_name"), first)
    page.fill(by_id(f"{head}.last_name"), last)
    page.select_option(by_id(f"{head}.sex"), "F")
    page.fill(by_id(f"{head}.date_of_birth"), born)
    page.fill(by_id(f"{head}.phone"), phone)
    page.fill(by_id(f"{head}.id_number"), id_number)
    page.click("#add-member")
    child = "members[1]"
    page.fill(by_id(f"{child}.first_name"), "Modou")
    page.fill(by_id(f"{child}.last_name"), last)
    page.select_option(by_id(f"{child}.sex"), "M")
    page.fill(by_id(f"{child}.date_of_birth"), "2018-03-02")
    page.select_option(by_id(f"{child}.relationship"), "child")
    page.click("#review")
    page.wait_for_selector("#summary")


def waiting(page: Page, count: int) -> None:
    expect(page.locator("#waiting-count")).to_have_text(str(count))


def test_a_household_filled_online_reaches_the_staff_queue(browser: Browser, server: Server) -> None:
    collector_id, key = new_key(server, "Awa Online")
    page = sign_in(browser, server, key)
    assert "Thiès Nord" in page.locator("#title").inner_text()
    page.click("#new-household")
    page.fill(by_id("members[0].phone"), "12 34")
    page.fill(by_id("members[0].date_of_birth"), "2999-01-01")
    page.click("#review")  # checked on the phone: nothing sent
    expect(page.locator('[data-error-for="members[0].phone"]')).to_have_text("9 chiffres, ex. 77 123 45 67")
    expect(page.locator('[data-error-for="members[0].date_of_birth"]')).to_have_text("Date dans le futur")
    expect(page.locator('[data-error-for="subsidy_category"]')).to_have_text("Obligatoire")
    page.select_option("#lang", "wo")
    expect(page.locator('[data-error-for="subsidy_category"]')).to_have_text("War na")
    expect(page.locator("label[for='members[0].first_name']")).to_have_text("Tur")
    page.select_option("#lang", "fr")
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#discard")
    fill_household(page, "Fatou", "Ndiaye", "1984-06-12", "77 321 54 76", "1 751 1984 00456")
    shot(page, "summary-390")
    page.click("#send")
    waiting(page, 0)
    page.wait_for_selector("#forms li .status.SUBMITTED")
    sent = enrolments_of(server, collector_id)
    assert [(e.status, e.head, e.size) for e in sent] == [(EnrolmentStatus.SUBMITTED, "Fatou", 2)]
    assert sent[0].commune == "Thiès Nord" and sent[0].phone == "+221773215476"
    page.context.close()


def test_two_households_filled_offline_are_sent_once_when_the_network_is_back(browser: Browser, server: Server) -> None:
    collector_id, key = new_key(server, "Awa Offline")
    page = sign_in(browser, server, key)
    page.evaluate(CONTROLLED)
    context = page.context
    context.set_offline(True)
    fill_household(page, "Aminata", "Fall", "1990-01-15", "77 400 11 22", "1 751 1990 00777")
    page.click("#send")
    waiting(page, 1)
    fill_household(page, "Ndeye", "Sarr", "1979-09-30", "78 500 33 44", "2 751 1979 00888")
    page.click("#send")
    waiting(page, 2)
    client_ids = page.eval_on_selector_all(
        "#forms li:has(.status.WAITING)", "items => items.map(li => li.dataset.clientId)"
    )
    assert len(set(client_ids)) == 2
    assert enrolments_of(server, collector_id) == []
    page.reload()  # offline: the service worker serves the page, IndexedDB still has both
    waiting(page, 2)
    assert page.evaluate("() => navigator.serviceWorker.controller !== null")
    assert page.locator("#net").inner_text() == "hors ligne"
    shot(page, "offline-390")
    page.click("#send-now")  # still offline: nothing lost, nothing sent
    waiting(page, 2)
    assert enrolments_of(server, collector_id) == []
    context.set_offline(False)  # the `online` event sends them
    waiting(page, 0)
    expect(page.locator("#forms li .status.SUBMITTED")).to_have_count(2)
    page.click("#send-now")
    page.reload()
    waiting(page, 0)
    sent = enrolments_of(server, collector_id)
    assert sorted(e.client_id for e in sent) == sorted(client_ids)
    assert sorted(e.head for e in sent) == ["Aminata", "Ndeye"]
    shot(page, "list-390")
    context.close()


def test_a_field_the_server_refuses_is_shown_on_its_field_and_corrected(browser: Browser, server: Server) -> None:
    collector_id, key = new_key(server, "Awa Fix")
    page = sign_in(browser, server, key)
    fill_household(page, "Coumba", "Diallo", "1899-12-31", "76 600 77 88", "1 751 1899 00999")  # the phone allows it
    page.click("#send")
    page.wait_for_selector("#forms li .status.FIX")
    assert enrolments_of(server, collector_id) == []
    page.click("#forms li:has(.status.FIX)")
    expect(page.locator('[data-error-for="members[0].date_of_birth"]')).to_have_text("is before 1900-01-01")
    assert "invalid" in (page.locator(by_id("members[0].date_of_birth")).get_attribute("class") or "")
    assert page.locator("#fix-banner").is_visible()
    shot(page, "error-390")
    assert page.locator("fieldset[data-index]").count() == 2  # the draft as it was, reopened
    page.fill(by_id("members[0].date_of_birth"), "1989-12-31")
    page.click("#review")
    page.click("#send")
    page.wait_for_selector("#forms li .status.SUBMITTED")
    sent = enrolments_of(server, collector_id)
    assert [(e.born, e.status) for e in sent] == [("1989-12-31", EnrolmentStatus.SUBMITTED)]
    page.context.close()


def test_sent_back_for_changes_it_reopens_and_replaces_then_shows_its_household_number(
    browser: Browser, server: Server
) -> None:
    collector_id, key = new_key(server, "Awa Changes")
    page = sign_in(browser, server, key)
    fill_household(page, "Maimouna", "Gueye", "1992-05-05", "77 808 12 34", "1 751 1992 01234")
    page.click("#send")
    page.wait_for_selector("#forms li .status.SUBMITTED")
    with Session(get_engine(server.db_url)) as session:
        enrolment = session.scalars(select(Enrolment).where(Enrolment.collector_id == collector_id)).one()
        ask_for_changes(session, enrolment.id, "staff:test", "Write the ID number again")
        session.commit()
        enrolment_id = enrolment.id
    page.click("#send-now")  # reads the list again
    item = page.locator("#forms li", has=page.locator(".status.NEEDS_CHANGES"))
    expect(item).to_contain_text("Motif : Write the ID number again")
    item.click()
    expect(page.locator("#reason")).to_contain_text("Write the ID number again")
    page.fill(by_id("members[0].id_number"), "1 751 1992 04321")
    page.click("#review")
    page.click("#send")
    page.wait_for_selector("#forms li .status.SUBMITTED")
    sent = enrolments_of(server, collector_id)
    assert [(e.status, e.head) for e in sent] == [(EnrolmentStatus.SUBMITTED, "Maimouna")]
    with Session(get_engine(server.db_url)) as session:
        enrolment = session.get_one(Enrolment, enrolment_id)
        assert enrolment.members[0].id_number == "1751199204321"
    validated = server.app.test_cli_runner().invoke(args=["enrolments", "validate", str(enrolment_id)])
    assert validated.exit_code == 0, validated.output
    number = validated.output.strip().splitlines()[-1]
    page.reload()
    expect(page.locator("#forms li .household-no")).to_have_text(f"N° de ménage : {number}")
    expect(page.locator("#forms li .status.VALIDATED")).to_have_text("validée")
    page.context.close()
