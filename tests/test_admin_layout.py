"""Every admin page in a real headless Chromium on a phone (390×844) and a desktop (1280×900).

Nothing scrolls sideways, neither the page nor a box inside it; the navigation folds on the phone; lists become
cards there; message texts and notes get room on the desktop; Khmer renders with a real font; the staff user's
language. Pages are found from the app's URL map, so a page added later is checked too. With `ADMIN_SCREENSHOTS=docs`
(`make screenshots`) the main pages are saved at both widths as docs/admin-<page>-<width>.png.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from models.access.staff import create_staff_user
from models.base import (
    EvidenceSource,
    HouseholdStatus,
    Language,
    MessageDirection,
    PaymentStatus,
    StaffRole,
    utcnow,
)
from models.db import get_engine
from models.enrolment.campaigns import Campaign
from models.enrolment.tables import Enrolment, EnrolmentStatus
from models.imports.statements import import_statement
from models.members.household import Household, Network
from models.messaging.message import Message
from models.payments.intake import Report, record_report
from models.payments.payment import Payment
from models.payments.statement import StatementImport
from models.reconciliation.batch import reconcile_payment
from models.reconciliation.staff_actions import manual_match
from tests import backends
from tests.browser_helpers import SCREENSHOTS, Server, demo_server, launch_chromium, serve
from tests.conftest import FIXTURES, ROOT

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
TABLET = {"width": 1024, "height": 768}  # and small laptops: lists are cards there, several abreast
MAX_NAV_HEIGHT = 170
MANAGER = ("awa", "manager-pass-123")  # an admin reading the admin in French, its default language
KHMER_NAME = ("សុភា", "ចាន់")
LONG_NOTE = (
    "Le trésorier du réseau a appelé : le payeur a tapé le numéro de sa carte au lieu du numéro du ménage, "
    "vérifié avec le reçu Wave et le relevé du 12, rapproché à la main après accord du gérant"
)
# Pages whose URL needs an id, and how to find a good one (the most content) in the seeded database.
SAMPLES = {
    "household_id": lambda s: s.scalar(
        select(Household.id).where(Household.language == Language.KM).order_by(Household.id).limit(1)
    ),
    "network_id": lambda s: s.scalar(select(Network.id).order_by(Network.id).limit(1)),
    "payment_id": lambda s: s.scalar(
        select(Payment.id).where(Payment.status == PaymentStatus.ALLOCATED).order_by(Payment.id.desc()).limit(1)
    ),
    "import_id": lambda s: s.scalar(select(StatementImport.id).limit(1)),
    # The demo's CMU campaign: three networks against their targets, sessions, a household never paid.
    "campaign_id": lambda s: s.scalar(select(Campaign.id).order_by(Campaign.id).limit(1)),
    # The demo's waiting near-duplicate: its people beside their candidates, and the three decisions.
    "enrolment_id": lambda s: s.scalar(
        select(Enrolment.id).where(Enrolment.status == EnrolmentStatus.SUBMITTED).order_by(Enrolment.id).limit(1)
    ),
}
# Variants that show what the bare page does not (a search's results, a suspense list).
EXTRA_PATHS = (
    "/admin/households?q=Sok",
    "/admin/payments?status=UNMATCHED",
    "/admin/sms?direction=out",
    "/admin/enrolments?status=any",
)
# Not pages: downloads and the simulator's JSON endpoints.
NOT_PAGES = re.compile(r"\.(csv|ndjson)$|^/admin/simulator/|^/admin/logout$|^/admin/language$")

# Runs in the page (Playwright evaluates it over the DevTools protocol, so the admin's CSP, which forbids eval,
# does not apply): the document and every visible box that is wider inside than outside, or pokes out of the
# viewport sideways. Boxes hidden or clipped for screen readers (thead of the cards, .sr) are skipped.
OVERFLOWS = """() => {
  const width = document.documentElement.clientWidth;
  const found = [];
  const doc = document.documentElement;
  if (doc.scrollWidth > width) found.push(`document: scrollWidth ${doc.scrollWidth} > ${width}`);
  const clipped = new Map();
  const isClipped = (el) => {
    if (!el || el === document.body) return false;
    if (clipped.has(el)) return clipped.get(el);
    const style = getComputedStyle(el);
    const hidden = style.clip !== 'auto' || style.display === 'none' || style.visibility === 'hidden'
      || isClipped(el.parentElement);
    clipped.set(el, hidden);
    return hidden;
  };
  const name = (el) => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
    + (el.className && typeof el.className === 'string' ? '.' + el.className.trim().split(/\\s+/).join('.') : '');
  for (const el of document.body.querySelectorAll('*')) {
    if (isClipped(el) || !el.checkVisibility()) continue;
    const rect = el.getBoundingClientRect();
    if (rect.width === 0 && rect.height === 0) continue;
    const path = name(el.parentElement) + ' > ' + name(el);
    const text = (el.innerText || el.value || '').trim().slice(0, 50);
    if (el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1) {
      found.push(`${path} scrolls sideways: ${el.scrollWidth} > ${el.clientWidth} «${text}»`);
    }
    if (rect.right > width + 1 || rect.left < -1) {
      found.push(`${path} pokes out: ${Math.round(rect.left)}..${Math.round(rect.right)} of ${width} «${text}»`);
    }
  }
  return found.slice(0, 12);
}"""

# Whether a Khmer letter and another are drawn as different glyphs in an element's font (not both as the same box).
KHMER_GLYPHS = """(el) => {
  const font = getComputedStyle(el).font;
  const canvas = document.createElement('canvas');
  canvas.width = 80; canvas.height = 60;
  const context = canvas.getContext('2d');
  const draw = (text) => {
    context.clearRect(0, 0, 80, 60);
    context.font = font;
    context.fillText(text, 10, 40);
    return Array.from(context.getImageData(0, 0, 80, 60).data).join(',');
  };
  const ka = draw('\\u1780'), kha = draw('\\u1781'), ko = draw('\\u1782');
  return ka !== kha && kha !== ko && ka !== ko && ka !== draw('');
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, redis_space: backends.RedisSpace) -> Iterator[Server]:
    """Yield a demo-seeded server with an admin reading French, a Khmer-named member, a statement and a long note."""
    running = demo_server(tmp_path_factory.mktemp("layout"), redis_space)
    with running.app.extensions["sessions"]() as session:  # with the outbox attached: the match sends a receipt
        create_staff_user(session, MANAGER[0], MANAGER[1], StaffRole.ADMIN, if_missing=True)
        household = session.scalars(
            select(Household).where(Household.language == Language.KM).order_by(Household.id).limit(1)
        ).one()
        head = household.members[0]
        head.first_name, head.last_name = KHMER_NAME
        if session.scalar(select(StatementImport.id).limit(1)) is None:
            data = (FIXTURES / "statement_sample.csv").read_bytes()
            import_statement(session, "sandbox", "statement_sample.csv", data, imported_by=MANAGER[0])
        session.commit()
        # Two payments nobody's reference names: one left in suspense, one matched by hand with a long reason.
        suspended = [suspense_payment(session, f"LAYOUT-{n}") for n in (1, 2)]
        active = session.scalar(
            select(Household.household_no).where(Household.status == HouseholdStatus.ACTIVE).order_by(Household.id)
        )
        assert active is not None
        session.rollback()  # the match opens its own write transaction
        manual_match(session, suspended[1], MANAGER[0], LONG_NOTE, household_no=active)
        session.commit()
    yield from serve(running, redis_space)


def suspense_payment(session: Session, txn_id: str) -> int:
    """Record a sandbox payment with a reference nobody has, reconcile it (UNMATCHED) and return its id."""
    raw = json.dumps({"txn": txn_id})
    report = Report(
        "sandbox", txn_id, 350000, "XOF", None, "nobody knows", utcnow(), EvidenceSource.WEBHOOK, "test", raw
    )
    payment_id = record_report(session, report).payment_id
    session.commit()
    reconcile_payment(session, payment_id)
    session.commit()
    return payment_id


@pytest.fixture(scope="module")
def browser(server: Server) -> Iterator[Any]:
    """Yield a headless Debian Chromium driven by Playwright."""
    with launch_chromium() as chromium:
        yield chromium


def signed_in(browser: Any, server: Server, viewport: dict[str, int], user: tuple[str, str] = MANAGER) -> Any:
    """Return a page of a new context of this size, signed in."""
    context = browser.new_context(viewport=viewport, locale="fr-FR")
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{server.url}/admin/login")
    page.fill("input[name=username]", user[0])
    page.fill("input[name=password]", user[1])
    page.click("form[action$='/login'] button[type=submit]")
    page.wait_for_url(f"{server.url}/admin/")
    return page


def admin_pages(server: Server) -> list[str]:
    """Return the path of every admin page: each GET route of the blueprint, ids filled from the database."""
    paths = set(EXTRA_PATHS)
    with Session(get_engine(server.db_url)) as session:
        for (payment_id,) in session.execute(select(Payment.id).where(Payment.status == PaymentStatus.UNMATCHED)):
            paths.add(f"/admin/payments/{payment_id}")  # with the candidates and the match form
    with Session(get_engine(server.db_url)) as session, server.app.test_request_context():
        for rule in server.app.url_map.iter_rules():
            if not rule.endpoint.startswith("admin.") or "GET" not in (rule.methods or ()):
                continue
            values = {}
            for argument in rule.arguments:
                assert argument in SAMPLES, f"{rule.rule}: add a sample {argument} to SAMPLES"
                values[argument] = SAMPLES[argument](session)
                assert values[argument] is not None, f"{rule.rule}: no {argument} in the seeded database"
            path = server.app.url_for(rule.endpoint, **values)
            if not NOT_PAGES.search(path):
                paths.add(path)
    return sorted(paths)


def shot(page: Any, name: str, width: int, full_page: bool = True) -> None:
    """Save a screenshot as docs/admin-<name>-<width>.png under ADMIN_SCREENSHOTS when asked."""
    if SCREENSHOTS:
        Path(ROOT / SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ROOT / SCREENSHOTS / f"admin-{name}-{width}.png"), full_page=full_page)


@pytest.mark.parametrize("viewport", [PHONE, TABLET, DESKTOP], ids=["390", "1024", "1280"])
def test_no_admin_page_scrolls_sideways(browser: Any, server: Server, viewport: dict[str, int]) -> None:
    page = signed_in(browser, server, viewport)
    problems: dict[str, list[str]] = {}
    paths = admin_pages(server)
    assert len(paths) >= 20, paths
    for path in paths:
        response = page.goto(server.url + path)
        assert response is not None and response.status == 200, (path, response and response.status)
        assert "text/html" in response.headers["content-type"], path
        found = page.evaluate(OVERFLOWS)
        if found:
            problems[path] = found
    page.context.close()
    anonymous = browser.new_context(viewport=viewport)
    login = anonymous.new_page()
    login.goto(f"{server.url}/admin/login")
    if found := login.evaluate(OVERFLOWS):
        problems["/admin/login"] = found
    anonymous.close()
    assert not problems, "\n".join(f"{path}:\n  " + "\n  ".join(lines) for path, lines in problems.items())


def test_the_phone_menu_folds_under_170_px_and_opens(browser: Any, server: Server) -> None:
    page = signed_in(browser, server, PHONE)
    for path in ("/admin/", "/admin/sms", "/admin/staff"):
        page.goto(server.url + path)
        height = page.locator("header.top").bounding_box()["height"]
        assert height <= MAX_NAV_HEIGHT, (path, height)
        assert not page.locator("header nav").is_visible()
    shot(page, "menu-closed", PHONE["width"], full_page=False)
    page.click("label.menu-button")
    nav = page.locator("header nav")
    assert nav.is_visible()
    assert nav.locator("a").count() == 21  # the admin's pages, all reachable
    shot(page, "menu-open", PHONE["width"], full_page=False)
    nav.locator("a[href$='/admin/sms']").click()
    page.wait_for_url(f"{server.url}/admin/sms")
    assert page.locator("h1").inner_text() == "Journal des SMS"
    page.context.close()
    desktop = signed_in(browser, server, DESKTOP)
    assert desktop.locator("header nav").is_visible() and not desktop.locator("label.menu-button").is_visible()
    assert desktop.locator("header.top").bounding_box()["height"] <= MAX_NAV_HEIGHT
    desktop.context.close()


def test_lists_are_cards_on_a_phone_with_the_key_fields_first(browser: Any, server: Server) -> None:
    page = signed_in(browser, server, PHONE)
    page.goto(f"{server.url}/admin/reconciliation?per=10")
    assert (
        not page.locator("main thead").first.is_visible()
        or page.locator("main thead").first.bounding_box()["width"] <= 1
    )
    row = page.locator("main tbody tr", has_text=LONG_NOTE[:40])
    card = row.bounding_box()
    assert card["width"] <= PHONE["width"]
    # More than When and Payment: the amount, the change, the household and the whole note, each labelled.
    for label in ("Montant", "Changement", "Ménage", "Note", "Date"):
        cell = row.locator(f"td[data-label='{label}']")
        assert cell.is_visible(), label
    note = row.locator("td[data-label='Note']")
    assert LONG_NOTE in note.inner_text()
    assert note.evaluate("el => el.scrollWidth <= el.clientWidth && el.scrollHeight <= el.clientHeight + 1")
    # The key fields come first: the payment, then the amount, the change, the household and the note; When after.
    labels = row.locator("td").evaluate_all(
        "cells => cells.filter(c => c.offsetHeight > 0)"
        ".sort((a, b) => a.getBoundingClientRect().top - b.getBoundingClientRect().top)"
        ".map(c => c.dataset.label || 'lead')"
    )
    assert labels[0] == "lead" and labels.index("Note") < labels.index("Date"), labels
    shot(page, "reconciliation", PHONE["width"])
    page.goto(f"{server.url}/admin/sms?direction=out&per=8")
    text = page.locator("main tbody tr td.text").first
    assert text.bounding_box()["width"] >= 0.8 * (PHONE["width"] - 40)
    shot(page, "sms", PHONE["width"])
    page.context.close()


def test_message_texts_and_notes_get_room_on_a_desktop(browser: Any, server: Server) -> None:
    page = signed_in(browser, server, DESKTOP)
    page.goto(f"{server.url}/admin/sms?direction=out&per=8")
    widths = page.locator("main tbody td.text").evaluate_all("cells => cells.map(c => c.clientWidth)")
    assert widths and min(widths) >= 320, widths  # not squeezed to a few characters
    heights = page.locator("main tbody tr").evaluate_all("rows => rows.map(r => r.offsetHeight)")
    line = page.locator("main tbody td.text").first.evaluate("el => parseFloat(getComputedStyle(el).lineHeight)")
    shot(page, "sms", DESKTOP["width"])
    assert max(heights) <= 4 * line + 16, (heights, line)  # a 160-character SMS in at most 3-4 lines
    page.goto(f"{server.url}/admin/reconciliation?per=10")
    shot(page, "reconciliation", DESKTOP["width"])
    row = page.locator("main tbody tr", has_text=LONG_NOTE[:40])
    note = row.locator("td.text")
    assert LONG_NOTE in note.inner_text()  # whole, not cut
    assert note.bounding_box()["width"] >= 0.3 * page.locator("main table").bounding_box()["width"]
    # One event, one row of two lines: the payment and its operator, the change and who made it.
    heights = sorted(page.locator("main tbody tr").evaluate_all("rows => rows.map(r => r.offsetHeight)"))
    assert heights[len(heights) // 2] <= 2 * line + 16, heights
    page.context.close()


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["390", "1280"])
def test_khmer_names_and_sms_render_with_a_khmer_font_and_their_lang(
    browser: Any, server: Server, viewport: dict[str, int]
) -> None:
    page = signed_in(browser, server, viewport)
    assert page.locator("html").get_attribute("lang") == "fr"
    with Session(get_engine(server.db_url)) as session:
        household_id = SAMPLES["household_id"](session)
        khmer_sms = session.scalar(
            select(Message.id).where(Message.language == "km", Message.direction == MessageDirection.OUTBOUND).limit(1)
        )
    assert khmer_sms is not None, "the demo seed sends Khmer receipts"
    page.goto(f"{server.url}/admin/households/{household_id}")
    name = page.locator("main [lang='km']", has_text=KHMER_NAME[0]).first
    assert name.is_visible()
    assert name.evaluate(KHMER_GLYPHS), "Khmer letters drawn as boxes: install a Khmer font (fonts-khmeros)"
    body = page.locator("main td.text[lang='km']").first
    assert body.evaluate(KHMER_GLYPHS)
    shot(page, "household", viewport["width"])
    page.goto(f"{server.url}/admin/sms?direction=out")
    assert page.locator("main td.text[lang='km']").count() > 0
    assert page.locator("main td.text[lang='fr']").count() + page.locator("main td.text[lang='wo']").count() > 0
    page.goto(f"{server.url}/admin/")
    shot(page, "overview", viewport["width"])
    page.context.close()


def test_each_user_reads_the_admin_in_their_language_and_switches_it(browser: Any, server: Server) -> None:
    page = signed_in(browser, server, PHONE)
    page.goto(f"{server.url}/admin/payments")
    assert page.locator("h1").inner_text() == "Paiements"
    page.click("label.menu-button")
    page.click("#language-form button[value=en]")
    page.wait_for_url(f"{server.url}/admin/payments")
    assert page.locator("h1").inner_text() == "Payments"
    assert page.locator("html").get_attribute("lang") == "en"
    assert "Language saved: English." in page.locator(".flash").inner_text()
    page.click("label.menu-button")
    page.click("#language-form button[value=fr]")
    assert page.locator("h1").inner_text() == "Paiements"
    page.context.close()


def test_the_favicon_is_served(browser: Any, server: Server) -> None:
    page = signed_in(browser, server, DESKTOP)
    for link in page.locator("link[rel~=icon]").evaluate_all("links => links.map(l => l.href)"):
        response = page.request.get(link)
        assert response.status == 200 and response.headers["content-type"].startswith("image/"), link
    page.context.close()
