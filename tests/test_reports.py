"""The admin overview's figures: days in each scheme's time zone, and an honest automatic-match rate."""

from __future__ import annotations

import itertools
from datetime import datetime

from sqlalchemy.orm import Session

from models.base import PaymentStatus
from models.payments.payment import Payment
from models.views.reports import overview
from tests import factories

NUMBERS = itertools.count(1)
NOW = datetime(2026, 12, 2, 10, 0)  # naive UTC: 17:00 in Phnom Penh, 10:00 in Dakar


def payment(
    session: Session, scheme_id: int | None, paid_at: datetime, status: PaymentStatus, rule: str | None
) -> None:
    n = next(NUMBERS)
    session.add(
        Payment(
            provider="sandbox",
            provider_txn_id=f"R{n}",
            amount=1_000,
            currency="KHR" if scheme_id else "XOF",
            paid_at=paid_at,
            fields_hash="r" * 64,
            status=status,
            match_rule=rule,
            scheme_id=scheme_id,
            created_at=NOW,
        )
    )


def test_today_and_this_month_are_the_schemes_own_days(session: Session) -> None:
    sky = factories.scheme(session, "sky-cambodia")  # Asia/Phnom_Penh, UTC+7
    # 1 December 20:00 UTC is 2 December 03:00 in Phnom Penh: today there, and this month's second day.
    payment(session, sky.id, datetime(2026, 12, 1, 20, 0), PaymentStatus.ALLOCATED, "reference")
    # 30 November 18:00 UTC is 1 December 01:00 there: this month, not today.
    payment(session, sky.id, datetime(2026, 11, 30, 18, 0), PaymentStatus.ALLOCATED, "reference")
    # 30 November 16:00 UTC is 23:00 there: last month.
    payment(session, sky.id, datetime(2026, 11, 30, 16, 0), PaymentStatus.ALLOCATED, "manual")
    session.commit()
    (collections,) = overview(session, NOW).collections
    assert (collections.timezone, collections.day) == ("Asia/Phnom_Penh", datetime(2026, 12, 2).date())
    assert (collections.today_count, collections.month_count) == (1, 2)
    assert dict(collections.daily)[datetime(2026, 11, 30).date()] == 1_000


def test_matched_automatically_counts_suspense_and_conflicts_in_its_denominator(session: Session) -> None:
    sky = factories.scheme(session, "sky-cambodia")
    payment(session, sky.id, NOW, PaymentStatus.ALLOCATED, "reference")
    payment(session, sky.id, NOW, PaymentStatus.ALLOCATED, "manual")
    payment(session, None, NOW, PaymentStatus.UNMATCHED, None)
    payment(session, None, NOW, PaymentStatus.CONFLICT, None)
    session.commit()
    figures = overview(session, NOW)
    assert (figures.matched_auto, figures.matched_manual, figures.unresolved) == (1, 1, 2)
    assert figures.auto_match_percent == 25.0
