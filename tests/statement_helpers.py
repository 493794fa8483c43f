"""Helpers of the statement-import tests: the CSV header, writing a file, the CLI, what is stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models.payments.payment import Payment, PaymentEvidence
from models.payments.statement import StatementBreak, StatementImport, StatementLine

HEADER = "transaction_id,date,amount,currency,payer_phone,reference,type"


def import_cli(app: Flask, path: Path, provider: str = "sandbox", *extra: str) -> Any:
    """Run `payments import-statement` and return the click result."""
    return app.test_cli_runner().invoke(
        args=["payments", "import-statement", str(path), "--provider", provider, *extra]
    )


def write(tmp_path: Path, text: str, name: str = "statement.csv", encoding: str = "utf-8") -> Path:
    """Write a statement file and return its path."""
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def counts(session: Session) -> tuple[int, ...]:
    """Return how many imports, lines, breaks, payments and evidence rows are stored."""
    session.commit()
    tables = (StatementImport, StatementLine, StatementBreak, Payment, PaymentEvidence)
    return tuple(int(session.scalar(select(func.count()).select_from(t)) or 0) for t in tables)
