"""Statement import: lines stored once, credits through intake, every break kind, the CLI and the worker."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.base import EvidenceSource, PaymentStatus
from models.coverage.money import Allocation
from models.db import get_engine
from models.imports.statements import (
    FormatFileError,
    StatementError,
    import_statement,
    load_formats,
    statement_report,
)
from models.payments.intake import Report, record_report
from models.payments.payment import Payment, PaymentEvidence
from models.payments.statement import BreakKind, StatementBreak, StatementImport, StatementLine
from models.schemes.scheme import Scheme
from tests import factories
from tests.conftest import FIXTURES, make_test_app
from tests.factories import make_household
from tests.payment_helpers import WAVE_SECRET, add_device, forward, payments, post_json, waiting_for_reconcile
from tests.statement_helpers import HEADER, counts, import_cli, write

SAMPLE = FIXTURES / "statement_sample.csv"
PAYER = "+221771234567"
WAVE_SMS = "Vous avez reçu 3.500F de Moussa Diop (77 123 45 67). Réf. T_4ZQ7WX2KX. Solde: 48.250F"


@pytest.fixture
def app(db_url: str, redis_url: str) -> Flask:
    """Return the app with the test Wave signing secret."""
    return make_test_app(db_url, redis_url, WAVE_WEBHOOK_SECRET=WAVE_SECRET)


def sandbox(client: FlaskClient, txn: str, amount: str, paid_at: str = "2026-11-20T09:00:00Z", **extra: Any) -> None:
    """Notify a sandbox payment through the HTTP contract."""
    payload = {"txn_id": txn, "amount": amount, "currency": "XOF", "paid_at": paid_at, **extra}
    assert post_json(client, "/payments/sandbox", payload).status_code == 200


def sample_payments(client: FlaskClient) -> None:
    """Notify the two sandbox payments of statement_sample.csv that the system knows."""
    sandbox(client, "TCN4Y4ZC3FM", "7000", "2026-11-20T10:41:07Z", phone=PAYER, reference="4827315")
    sandbox(client, "T_4ZQ7WX2KX", "3500", "2026-11-20T11:02:44Z", phone=PAYER)


def breaks(session: Session) -> list[tuple[str, str | None]]:
    """Return (kind, transaction id) of every stored break, line's id first, else the payment's."""
    session.commit()
    rows = session.execute(
        select(StatementBreak.kind, StatementLine.provider_txn_id, Payment.provider_txn_id)
        .outerjoin(StatementLine, StatementBreak.line_id == StatementLine.id)
        .outerjoin(Payment, StatementBreak.payment_id == Payment.id)
        .order_by(StatementBreak.id)
    )
    return [(kind, line_txn or payment_txn) for kind, line_txn, payment_txn in rows]


# ---------------------------------------------------------------- the sample statement


def test_sample_after_its_sandbox_payments_shows_the_expected_breaks(
    app: Flask, client: FlaskClient, session: Session, redis_url: str
) -> None:
    sample_payments(client)
    before = {p.provider_txn_id: p.id for p in payments(session)}

    result = import_cli(app, SAMPLE)

    assert result.exit_code == 0, result.output
    assert breaks(session) == [
        (BreakKind.MISSING_IN_SYSTEM, "TCN9Z1ABCDE"),
        (BreakKind.DUPLICATE_LINE, "TCN4Y4ZC3FM"),
    ]
    assert "1 missing_in_system, 0 missing_in_statement, 0 amount_mismatch" in result.output
    assert "1 duplicate_line" in result.output and "TCN4Y4ZC3FM already on line 2" in result.output
    totals = "2026-11-20 XOF\tstatement 3 = 21 000 F CFA\tsystem 2 = 10 500 F CFA\tdifference 10 500 F CFA"
    assert totals in result.output
    assert PAYER not in result.output

    created = next(p for p in payments(session) if p.provider_txn_id == "TCN9Z1ABCDE")
    assert (created.provider, created.amount, created.currency, created.account_reference) == (
        "sandbox",
        10500,
        "XOF",
        "SN-PK-000045",
    )
    assert (created.status, created.confirmed, created.paid_at) == (
        PaymentStatus.RECEIVED,
        True,
        datetime(2026, 11, 20, 12, 15),
    )
    [evidence] = created.evidence
    assert (evidence.source, evidence.route) == (EvidenceSource.STATEMENT, "generic")
    assert created.id in waiting_for_reconcile(redis_url)  # asked for after the commit

    imported = session.scalars(select(StatementImport)).one()
    assert (imported.provider, imported.format, imported.line_count, imported.credit_count) == (
        "sandbox",
        "generic",
        4,
        3,
    )
    assert (imported.period_start, imported.period_end) == (date(2026, 11, 20), date(2026, 11, 20))
    lines = session.scalars(select(StatementLine).order_by(StatementLine.line_no)).all()
    assert [(line.line_no, line.provider_txn_id, line.payment_id) for line in lines] == [
        (2, "TCN4Y4ZC3FM", before["TCN4Y4ZC3FM"]),
        (3, "T_4ZQ7WX2KX", before["T_4ZQ7WX2KX"]),
        (4, "TCN9Z1ABCDE", created.id),
        (5, "TCN4Y4ZC3FM", None),
    ]
    # The known payments got their statement evidence, linked to the line, and nothing else changed.
    for txn, payment_id in before.items():
        sources = session.execute(
            select(PaymentEvidence.source, PaymentEvidence.statement_line_id).where(
                PaymentEvidence.payment_id == payment_id
            )
        ).all()
        line_id = next(line.id for line in lines if line.provider_txn_id == txn)
        assert sorted(sources) == [(EvidenceSource.STATEMENT, line_id), (EvidenceSource.WEBHOOK, None)]
    assert all(p.status == PaymentStatus.RECEIVED for p in payments(session))


def test_reimporting_the_same_file_adds_nothing(
    app: Flask, client: FlaskClient, session: Session, redis_url: str
) -> None:
    sample_payments(client)
    assert import_cli(app, SAMPLE).exit_code == 0
    stored = counts(session)
    jobs = waiting_for_reconcile(redis_url)

    again = import_cli(app, SAMPLE)

    assert again.exit_code == 0, again.output
    assert "already imported as statement 1; nothing new" in again.output
    assert counts(session) == stored
    assert waiting_for_reconcile(redis_url) == jobs


def test_an_overlapping_statement_adds_no_evidence_for_lines_already_brought(session: Session, tmp_path: Path) -> None:
    rows = SAMPLE.read_text().splitlines()
    first = import_statement(session, "sandbox", "a.csv", "\n".join(rows[:3]).encode())
    session.commit()
    second = import_statement(session, "sandbox", "b.csv", "\n".join([rows[0], *rows[2:4]]).encode())
    session.commit()

    assert not first.already_imported and not second.already_imported
    t4 = session.scalars(select(Payment).where(Payment.provider_txn_id == "T_4ZQ7WX2KX")).one()
    assert len(t4.evidence) == 1  # the same line in two statements is the same report
    assert [(b.kind, b.provider_txn_id) for b in second.report.breaks] == [
        (BreakKind.MISSING_IN_SYSTEM, "TCN9Z1ABCDE"),
        (BreakKind.MISSING_IN_STATEMENT, "TCN4Y4ZC3FM"),  # the first statement brought it; this one lacks it
    ]


# ---------------------------------------------------------------- each break kind


def test_amount_mismatch_is_a_conflict_and_a_break(app: Flask, client: FlaskClient, session: Session) -> None:
    sample_payments(client)
    sandbox(client, "TCN9Z1ABCDE", "10000", "2026-11-20T12:15:00Z", phone="+221781112233")

    result = import_cli(app, SAMPLE)

    assert result.exit_code == 0, result.output
    assert (BreakKind.AMOUNT_MISMATCH, "TCN9Z1ABCDE") in breaks(session)
    assert "amount: statement 10500, system 10000" in result.output
    payment = next(p for p in payments(session) if p.provider_txn_id == "TCN9Z1ABCDE")
    assert (payment.status, payment.amount) == (PaymentStatus.CONFLICT, 10000)  # never applied twice
    assert [e.rule for e in payment.events if e.after_status == "CONFLICT"] == ["conflict"]


def test_other_reference_is_a_field_mismatch(session: Session) -> None:
    record_report(session, _report("TCN9Z1ABCDE", 10500, reference="SN-PK-000099"))
    session.commit()

    result = import_statement(session, "sandbox", "s.csv", SAMPLE.read_bytes())
    session.commit()

    [mismatch] = result.report.of_kind(BreakKind.FIELD_MISMATCH)
    assert mismatch.provider_txn_id == "TCN9Z1ABCDE"
    assert mismatch.detail == "reference: statement SN-PK-000045, system SN-PK-000099"
    assert session.get_one(Payment, mismatch.payment_id).status == PaymentStatus.CONFLICT


def test_payments_of_the_statement_days_without_a_line_are_missing_in_statement(
    app: Flask, client: FlaskClient, session: Session
) -> None:
    sample_payments(client)
    sandbox(client, "SBX-GHOST", "5000", "2026-11-20T23:59:00Z")
    sandbox(client, "SBX-NEXT-DAY", "5000", "2026-11-21T00:00:00Z")  # outside the statement's days
    sandbox(client, "SBX-OTHER", "5000", "2026-11-20T08:00:00Z")

    result = import_cli(app, SAMPLE)

    missing = [txn for kind, txn in breaks(session) if kind == BreakKind.MISSING_IN_STATEMENT]
    assert missing == ["SBX-OTHER", "SBX-GHOST"]
    assert "system 4 = 20 500 F CFA" in result.output


def test_another_providers_payments_are_not_missing(session: Session) -> None:
    record_report(session, _report("T_OTHER", 1000, provider="wave"))
    session.commit()

    result = import_statement(session, "sandbox", "s.csv", SAMPLE.read_bytes())

    assert result.report.count(BreakKind.MISSING_IN_STATEMENT) == 0


def test_duplicate_line_with_another_amount_says_so(session: Session) -> None:
    text = f"{HEADER}\nT_1,2026-11-20T10:00:00Z,7000,XOF,,,credit\nT_1,2026-11-20T10:00:00Z,700,XOF,,,credit\n"

    result = import_statement(session, "sandbox", "s.csv", text.encode())

    [duplicate] = result.report.of_kind(BreakKind.DUPLICATE_LINE)
    assert (duplicate.line_no, duplicate.detail) == (3, "T_1 already on line 2 with 7000 XOF, here 700 XOF")
    [payment] = payments(session)
    assert payment.amount == 7000


def test_debits_fees_and_failed_lines_are_kept_but_are_not_payments(session: Session) -> None:
    text = (
        f"{HEADER}\n"
        "T_IN,2026-11-20T10:00:00Z,3500,XOF,,,credit\n"
        "T_OUT,2026-11-20T11:00:00Z,-2000,XOF,,,debit\n"
        "T_FEE,2026-11-20T11:00:00Z,35,XOF,,,fee\n"
        "T_ZERO,2026-11-20T11:00:00Z,0,XOF,,,credit\n"
    )

    result = import_statement(session, "sandbox", "s.csv", text.encode())
    session.commit()

    assert [p.provider_txn_id for p in payments(session)] == ["T_IN"]
    lines = session.scalars(select(StatementLine).order_by(StatementLine.line_no)).all()
    assert [(line.provider_txn_id, line.kind, line.amount, line.payment_id is not None) for line in lines] == [
        ("T_IN", "credit", 3500, True),
        ("T_OUT", "debit", 2000, False),
        ("T_FEE", "fee", 35, False),
        ("T_ZERO", "debit", 0, False),
    ]
    assert result.report.credit_count == 1


# ---------------------------------------------------------------- provisional payments confirmed


def test_sms_forwarded_payment_becomes_fundable_when_its_statement_line_arrives(
    app: Flask, client: FlaskClient, session: Session, run_worker: Callable[..., Any]
) -> None:
    cmu: Scheme = factories.scheme(session, "cmu-thies")
    household = make_household(session, cmu, phone=PAYER)
    add_device(session)
    assert forward(client, "Wave", WAVE_SMS).status_code == 200
    assert run_worker().returncode == 0
    [provisional] = payments(session)
    assert (provisional.status, provisional.household_id, provisional.confirmed) == (
        PaymentStatus.PROVISIONAL,
        household.id,
        False,
    )
    assert session.scalar(select(func.count(Allocation.id))) == 0

    result = import_cli(app, SAMPLE, "wave")
    assert result.exit_code == 0, result.output
    assert "1 provisional_confirmed" in result.output
    assert run_worker().returncode == 0

    payment = next(p for p in payments(session) if p.provider_txn_id == "T_4ZQ7WX2KX")
    assert (payment.status, payment.confirmed, payment.household_id) == (
        PaymentStatus.ALLOCATED,
        True,
        household.id,
    )
    allocation = session.scalars(select(Allocation).where(Allocation.payment_id == payment.id)).one()
    assert allocation.amount == 3500
    assert (BreakKind.PROVISIONAL_CONFIRMED, "T_4ZQ7WX2KX") in breaks(session)
    confirmed = session.scalars(
        select(StatementBreak).where(StatementBreak.kind == BreakKind.PROVISIONAL_CONFIRMED)
    ).one()
    assert confirmed.resolved_at is not None  # informational: the statement itself settled it
    events = [(e.before_status, e.after_status) for e in payment.events]
    assert ("PROVISIONAL", "RECEIVED") in events and events[-1][1] == "ALLOCATED"


# ---------------------------------------------------------------- operators' layouts


MPESA = (
    "Receipt No.,Completion Time,Details,Transaction Status,Paid In,Withdrawn,Balance,Other Party Info\n"
    "RKTQDM7W6S,20-11-2026 10:41:07,Pay Bill Online from 254708374149 - WANJIRU KAMAU Acc. KE-NB-004512,"
    'Completed,350.00,,"49,197.00",254708374149 - WANJIRU KAMAU\n'
    "RKTQDM7W8X,20-11-2026 11:00:00,Pay Bill Online from 254701234567 - JOHN DOE Acc. KE-NB-000001,"
    'Failed,"1,000.00",,"49,197.00",254701234567 - JOHN DOE\n'
    'RKTQDM7W9Y,20-11-2026 12:00:00,Business Charge,Completed,,-5.00,"49,192.00",\n'
)
ORANGE = (
    "Date;Heure;ID Transaction;Type;Statut;Numéro client;Nom client;Montant;Frais;Devise;Solde;Référence client\n"
    "20/11/2026;10:41:00;PP261120.1041.A12345;Paiement marchand;Succès;771234567;DIOP MOUSSA;7 000;0;XOF;152 500;"
    "SN-TN-000001\n"
    "20/11/2026;12:00:00;PP261120.1200.C00001;Retrait;Succès;;;-20 000;100;XOF;132 500;\n"
)
WAVE = (
    "Transaction ID,Date,Type,Status,Amount,Fee,Net Amount,Currency,Counterparty Name,Counterparty Mobile,"
    "Client Reference,Balance\n"
    'T_4ZQ7WX2KX,2026-11-20T11:02:44Z,Merchant payment,Succeeded,"3,500",35,"3,465",XOF,Moussa Diop,'
    "+221771234567,4827315,48250\n"
    'T_PAYOUT1,2026-11-20T18:00:00Z,Payout,Succeeded,"-40,000",0,"-40,000",XOF,,,,8250\n'
)


@pytest.mark.parametrize(
    ("provider", "text", "fmt", "expected", "lines"),
    [
        pytest.param(
            "mpesa",
            MPESA,
            "mpesa_org_portal",
            ("RKTQDM7W6S", 35000, "KES", "254708374149", "KE-NB-004512", datetime(2026, 11, 20, 7, 41, 7)),
            [("RKTQDM7W6S", "credit"), ("RKTQDM7W8X", "failed"), ("RKTQDM7W9Y", "debit")],
            id="mpesa",
        ),
        pytest.param(
            "orange_money",
            ORANGE,
            "orange_money_partner",
            ("PP261120.1041.A12345", 7000, "XOF", "771234567", "SN-TN-000001", datetime(2026, 11, 20, 10, 41)),
            [("PP261120.1041.A12345", "credit"), ("PP261120.1200.C00001", "retrait")],
            id="orange_money",
        ),
        pytest.param(
            "wave",
            WAVE,
            "wave_business",
            ("T_4ZQ7WX2KX", 3500, "XOF", "+221771234567", "4827315", datetime(2026, 11, 20, 11, 2, 44)),
            [("T_4ZQ7WX2KX", "credit"), ("T_PAYOUT1", "payout")],
            id="wave",
        ),
    ],
)
def test_each_operators_export_is_read_with_its_mapping(
    session: Session,
    provider: str,
    text: str,
    fmt: str,
    expected: tuple[Any, ...],
    lines: list[tuple[str, str]],
) -> None:
    result = import_statement(session, provider, f"{provider}.csv", text.encode())
    session.commit()

    assert result.report.format == fmt
    [payment] = payments(session)
    assert (
        payment.provider_txn_id,
        payment.amount,
        payment.currency,
        payment.payer_phone,
        payment.account_reference,
        payment.paid_at,
    ) == expected
    assert payment.provider == provider
    stored = session.scalars(select(StatementLine).order_by(StatementLine.line_no)).all()
    assert [(line.provider_txn_id, line.kind) for line in stored] == lines


def test_mpesa_statement_confirms_the_daraja_payment_it_matches(client: FlaskClient, session: Session) -> None:
    from tests.payment_helpers import fixture_payload

    post_json(client, "/payments/daraja/confirm", fixture_payload("mpesa_c2b_confirmation.json"))

    result = import_statement(session, "mpesa", "mpesa.csv", MPESA.encode())
    session.commit()

    assert [b.kind for b in result.report.breaks] == []
    [payment] = payments(session)
    assert sorted(e.source for e in payment.evidence) == [EvidenceSource.STATEMENT, EvidenceSource.WEBHOOK]


def test_every_shipped_format_loads() -> None:
    formats = load_formats()

    assert {"generic", "wave_business", "orange_money_partner", "mpesa_org_portal"} <= set(formats)
    assert {"wave", "orange_money", "mpesa", "sandbox"} <= {p for f in formats.values() for p in f.providers}


def test_a_bad_formats_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, '[formats.x]\nproviders = ["wave"]\ntxn_id = "id"\ndate = "d"\n', "formats.toml")

    with pytest.raises(FormatFileError, match=r"formats\.x: give either `amount`"):
        load_formats(path)


# ---------------------------------------------------------------- bad files: nothing written


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(f"{HEADER}\nT_1,2026-11-20T10:00:00Z,abc,XOF,,,credit\n", "line 2: 'amount'", id="bad-amount"),
        pytest.param(
            f"{HEADER}\nT_1,2026-11-20T10:00:00Z,100,XOF,,,credit\nT_2,20 nov,100,XOF,,,credit\n",
            "line 3: 'date': '20 nov' is not a date",
            id="bad-date",
        ),
        pytest.param(f"{HEADER}\nT_1,2026-11-20T10:00:00Z,100.5,XOF,,,credit\n", "more decimals", id="decimals"),
        pytest.param(f"{HEADER}\nT_1,2026-11-20T10:00:00Z,100,XOF\n", "line 2: 4 fields, the header has 7", id="short"),
        pytest.param(f"{HEADER}\n,2026-11-20T10:00:00Z,100,XOF,,,credit\n", "'transaction_id' is empty", id="no-id"),
        pytest.param(f"{HEADER}\nT_1,2026-11-20T10:00:00Z,100,ZZZ,,,credit\n", "unknown currency", id="currency"),
        pytest.param(
            "transaction_id,date,amount,payer_phone,reference,type\nT_1,2026-11-20,100,,,credit\n",
            "line 1: no sandbox statement header found; tried generic (missing 'currency')",
            id="missing-column",
        ),
        pytest.param(f"{HEADER}\n", "line 2: the statement has a header but no lines", id="no-lines"),
        pytest.param("", "line 1: the file is empty", id="empty"),
    ],
)
def test_a_bad_file_names_the_line_and_writes_nothing(
    app: Flask, session: Session, tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)

    result = import_cli(app, path)

    assert result.exit_code == 1
    assert "nothing imported" in result.output and message in result.output
    assert counts(session) == (0, 0, 0, 0, 0)


def test_a_file_that_is_not_utf8_is_refused(session: Session) -> None:
    data = f"{HEADER}\nT_1,2026-11-20T10:00:00Z,100,XOF,,Référence,credit\n".encode("latin-1")

    with pytest.raises(StatementError, match="line 2: not UTF-8"):
        import_statement(session, "sandbox", "s.csv", data)


def test_an_unknown_provider_or_format_is_refused(session: Session) -> None:
    with pytest.raises(StatementError, match="no statement format for provider 'nope'"):
        import_statement(session, "nope", "s.csv", SAMPLE.read_bytes())
    with pytest.raises(StatementError, match="unknown statement format 'nope'"):
        import_statement(session, "sandbox", "s.csv", SAMPLE.read_bytes(), format_name="nope")


def test_statement_report_command(app: Flask, session: Session) -> None:
    runner = app.test_cli_runner()
    assert runner.invoke(args=["payments", "statement-report", "1"]).exit_code == 1
    assert import_cli(app, SAMPLE).exit_code == 0

    shown = runner.invoke(args=["payments", "statement-report", "1", "--limit", "0"])

    assert shown.exit_code == 0, shown.output
    assert "statement 1: sandbox statement_sample.csv (format generic)" in shown.output
    assert "… and 1 more (--limit)" in shown.output
    report = statement_report(session, 1)
    assert (report.count(BreakKind.MISSING_IN_SYSTEM), report.count(BreakKind.DUPLICATE_LINE)) == (3, 1)
    [total] = report.totals
    assert (total.statement_amount, total.system_amount, total.difference) == (21000, 0, 21000)


# ---------------------------------------------------------------- scale


@pytest.mark.slow
def test_a_50000_line_statement_imports_in_reasonable_time(sqlite_url: str, tmp_path: Path) -> None:
    from bench.statement import build

    with Session(get_engine(sqlite_url), expire_on_commit=False) as session:
        scenario = build(session, 50_000, tmp_path / "big.csv")
        started = time.perf_counter()
        with scenario.path.open("rb") as handle:
            result = import_statement(session, "wave", "big.csv", handle)
        session.commit()
        elapsed = time.perf_counter() - started

        assert elapsed < 120, f"{elapsed:.1f} s"  # about 10 s alone on 2 cores; generous for a loaded machine
        assert {kind: result.report.count(kind) for kind in BreakKind} == scenario.expected
        assert session.scalar(select(func.count(StatementLine.id))) == 50_000
        assert session.scalar(select(func.count(PaymentEvidence.id))) == 50_000 - 500 - 1


def _report(txn: str, amount: int, provider: str = "sandbox", reference: str | None = None) -> Report:
    return Report(
        provider=provider,
        provider_txn_id=txn,
        amount=amount,
        currency="XOF",
        payer_phone=None,
        reference=reference,
        paid_at=datetime(2026, 11, 20, 12, 0),
        source=EvidenceSource.WEBHOOK,
        route="test",
        raw=f"{provider}:{txn}:{amount}",
    )
