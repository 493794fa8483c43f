"""Keyset pagination of the admin's lists, through the real routes on both databases.

A page's `rel="next"` link carries `after=<cursor>` (the last row's sort keys) and its `rel="prev"` link
`before=<cursor>`, so a deep page reads only its rows; `page=` and `per=` alone still work (the page's first row
found by an offset over the sort keys). Rows tied on their timestamp keep a stable order (the id breaks the tie).
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterator
from datetime import datetime

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from models.base import PaymentStatus
from models.db import get_engine
from models.members.household import Household
from models.payments.payment import Payment
from tests.admin_helpers import MAX_QUERIES_PER_PAGE, QueryCounter, admin_app, db_session, seeded_url, signed_in

__all__ = ["admin_app", "db_session", "seeded_url"]  # the shared seeded database fixtures

NEXT = re.compile(r'<a href="([^"]+)" rel="next">')
PREVIOUS = re.compile(r'<a href="([^"]+)" rel="prev">')
PAYMENT = re.compile(r'<a href="/admin/payments/(\d+)">#')
HOUSEHOLD = re.compile(r'<td class="lead"><a href="/admin/households/(\d+)">')
TIED = datetime(2031, 1, 1, 9, 0, 0)  # after every demo payment: the list's first rows


@pytest.fixture
def tied_payments(db_session: Session) -> Iterator[list[int]]:
    """Add 7 unmatched payments created at the same second; remove them after the test."""
    payments = [
        Payment(
            provider="wave",
            provider_txn_id=f"TIE-{n}",
            amount=1000 + n,
            currency="XOF",
            paid_at=TIED,
            fields_hash="0" * 64,
            status=PaymentStatus.UNMATCHED,
            created_at=TIED,
            updated_at=TIED,
        )
        for n in range(7)
    ]
    db_session.add_all(payments)
    db_session.commit()
    yield [p.id for p in payments]
    db_session.execute(delete(Payment).where(Payment.provider_txn_id.like("TIE-%")))
    db_session.commit()


def _link(pattern: re.Pattern[str], body: str) -> str | None:
    found = pattern.search(body)
    return html.unescape(found.group(1)) if found else None


def _walk(client: FlaskClient, start: str, rows: re.Pattern[str]) -> list[tuple[str, list[int], str]]:
    """Follow the `rel="next"` links from a page; return each page's URL, row ids and body."""
    pages = []
    url: str | None = start
    while url is not None:
        response = client.get(url)
        assert response.status_code == 200, url
        body = response.get_data(as_text=True)
        pages.append((url, [int(i) for i in rows.findall(body)], body))
        url = _link(NEXT, body)
        assert len(pages) < 200, "the next links never end"
    return pages


def test_payments_pages_follow_cursors_through_tied_timestamps(
    admin_app: Flask, seeded_url: str, tied_payments: list[int]
) -> None:
    client = signed_in(admin_app)
    pages = _walk(client, "/admin/payments?per=3", PAYMENT)
    with Session(get_engine(seeded_url)) as session:
        expected = list(session.scalars(select(Payment.id).order_by(Payment.created_at.desc(), Payment.id.desc())))
    walked = [i for _, ids, _ in pages for i in ids]
    assert walked == expected  # every payment once, newest first, ties by id
    assert walked[:7] == sorted(tied_payments, reverse=True)
    assert all(len(ids) == 3 for _, ids, _ in pages[:-1])
    # The next links are cursors (no offset), numbered on; the first page has no previous link.
    assert "after=" in pages[0][2] and _link(PREVIOUS, pages[0][2]) is None
    assert all(f"page={n + 1}" in url for n, (url, _, _) in enumerate(pages[1:], 1))
    # Back from the last page by the previous links: the same pages, in reverse.
    url = _link(PREVIOUS, pages[-1][2])
    for _, ids, _ in reversed(pages[:-1]):
        assert url is not None
        body = client.get(url).get_data(as_text=True)
        assert [int(i) for i in PAYMENT.findall(body)] == ids
        url = _link(PREVIOUS, body)
    assert url is None


def test_page_and_per_alone_give_the_same_pages(admin_app: Flask, tied_payments: list[int]) -> None:
    client = signed_in(admin_app)
    pages = _walk(client, "/admin/payments?per=2", PAYMENT)
    for number in (1, 2, 3, len(pages)):
        body = client.get(f"/admin/payments?page={number}&per=2").get_data(as_text=True)
        assert [int(i) for i in PAYMENT.findall(body)] == pages[number - 1][1], number
    past = client.get(f"/admin/payments?page={len(pages) + 5}&per=2")
    assert past.status_code == 200 and PAYMENT.findall(past.get_data(as_text=True)) == []
    # A filter stays on the cursor links.
    unmatched = _walk(client, "/admin/payments?status=UNMATCHED&per=2", PAYMENT)
    assert all("status=UNMATCHED" in url for url, _, _ in unmatched)
    assert unmatched[0][1] == sorted(tied_payments, reverse=True)[:2]


def test_households_pages_by_number_and_search(admin_app: Flask, seeded_url: str) -> None:
    client = signed_in(admin_app)
    pages = _walk(client, "/admin/households?per=4", HOUSEHOLD)
    with Session(get_engine(seeded_url)) as session:
        expected = list(session.scalars(select(Household.id).order_by(Household.household_no)))
    assert [i for _, ids, _ in pages for i in ids] == expected
    assert len(pages) > 2
    deep = client.get(f"/admin/households?page={len(pages)}&per=4").get_data(as_text=True)
    assert [int(i) for i in HOUSEHOLD.findall(deep)] == pages[-1][1]
    # A search lists members: its cursor holds the household and member numbers.
    found = _walk(client, "/admin/households?q=a&per=3", HOUSEHOLD)
    assert len(found) > 1 and all("q=a" in url for url, _, _ in found)


@pytest.mark.parametrize(
    "path",
    ["/admin/households", "/admin/payments", "/admin/reconciliation", "/admin/sms", "/admin/networks"],
)
def test_deep_pages_stay_within_the_query_budget(admin_app: Flask, seeded_url: str, path: str) -> None:
    client = signed_in(admin_app)
    first = client.get(f"{path}?per=2").get_data(as_text=True)
    following = _link(NEXT, first)
    assert following is not None and "after=" in following
    for url in (following, f"{path}?page=2&per=2"):
        with QueryCounter(get_engine(seeded_url)) as counter:
            assert client.get(url).status_code == 200
        assert counter.count <= MAX_QUERIES_PER_PAGE, url


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        base64.urlsafe_b64encode(b'["x", 1]').decode(),  # a text where a time is expected
        base64.urlsafe_b64encode(b"[1]").decode(),  # too few keys
        base64.urlsafe_b64encode(b'{"a": 1}').decode(),
        "A" * 500,
    ],
)
def test_a_malformed_cursor_is_refused(admin_app: Flask, cursor: str) -> None:
    client = signed_in(admin_app)
    for name in ("after", "before"):
        assert client.get(f"/admin/payments?{name}={cursor}").status_code == 400
