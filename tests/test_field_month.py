"""The field simulation of matching (bench/field_month.py), smaller: never a wrong account."""

from __future__ import annotations

from sqlalchemy.orm import Session

from bench.field_month import simulate, slip_stress


def test_a_simulated_month_puts_no_payment_on_a_wrong_account(session: Session) -> None:
    month = simulate(session, households=300, payments=150, seed=7)
    stress = slip_stress(session, count=30, seed=8)

    assert month.total == 150 and month.wrong == 0, month.wrong_cases
    assert month.matched_pct >= 70  # the rest waits in suspense (shared phones, junk, slips, unvouched numbers)
    assert stress.total == 30 and stress.wrong == 0, stress.wrong_cases
    assert stress.suspense == 30  # a slipped number is never taken on its own
