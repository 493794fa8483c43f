"""Mutuelles: the organisations under a scheme (one per commune or group of communes) and their payment accounts.

A scheme holds the rules (premium, plans, subsidies); each mutuelle has its own members, merchant accounts, SMS
sender name and staff. What a payer dialled (a Wave merchant, an Orange Money code, a Daraja shortcode, the account
of a statement) names the mutuelle a payment was made to; several mutuelles may share one account (a union's).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from models.base import Base, utcnow
from models.inputs import squash
from models.schemes.scheme import Scheme

MUTUELLE_CODE_MAX = 40
ACCOUNT_MAX = 80


class Mutuelle(Base):
    """A mutuelle de santé: households and networks belong to one; staff may be kept to some."""

    __tablename__ = "mutuelles"

    id: Mapped[int] = mapped_column(primary_key=True)
    scheme_id: Mapped[int] = mapped_column(ForeignKey("schemes.id", ondelete="CASCADE"), index=True)
    code: Mapped[str] = mapped_column(String(MUTUELLE_CODE_MAX), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    # The communes whose households belong here when an import names no mutuelle (as written; compared squashed).
    communes: Mapped[list[Any]]
    sms_sender_id: Mapped[str | None] = mapped_column(String(11))
    contact: Mapped[str | None] = mapped_column(String(200))
    position: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    scheme: Mapped[Scheme] = relationship()
    accounts: Mapped[list[MutuelleAccount]] = relationship(
        back_populates="mutuelle", cascade="all, delete-orphan", order_by="MutuelleAccount.provider"
    )

    def account(self, provider: str) -> str | None:
        """Return this mutuelle's account with a provider (what a payer dials), if it has one."""
        for account in self.accounts:
            if account.provider == provider:
                return account.account
        return None


class MutuelleAccount(Base):
    """An account a mutuelle is paid on with one provider; one account may serve several mutuelles (a union's)."""

    __tablename__ = "mutuelle_accounts"
    __table_args__ = (UniqueConstraint("mutuelle_id", "provider"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    mutuelle_id: Mapped[int] = mapped_column(ForeignKey("mutuelles.id", ondelete="CASCADE"), index=True)
    provider: Mapped[str] = mapped_column(String(40))
    account: Mapped[str] = mapped_column(String(ACCOUNT_MAX))
    # The provider's spelling of it, squashed (`account_key`): how a reported account is looked up.
    account_key: Mapped[str] = mapped_column(String(ACCOUNT_MAX), index=True)
    # The business name the provider shows for it (Wave's `merchant_name`), when payloads carry no number.
    display_name: Mapped[str | None] = mapped_column(String(120))

    mutuelle: Mapped[Mutuelle] = relationship(back_populates="accounts")


def account_key(text: str) -> str:
    """Return an account as compared: squashed ("#144*4*6*203040#" → its digits), at most `ACCOUNT_MAX` long."""
    return squash(text)[:ACCOUNT_MAX]


def commune_key(text: str | None) -> str:
    """Return a commune name as compared (case-, accent-, spacing- and punctuation-insensitive)."""
    return account_key(text or "")


@dataclass(frozen=True)
class ReportedAccount:
    """The account a payment was reported on: the provider and what identifies the account (number or name)."""

    provider: str
    account: str


def mutuelles_of_account(session: Session, reported: ReportedAccount | None) -> frozenset[int] | None:
    """Return the mutuelles an account serves (one, or several for a shared account), or None when it names none.

    None: no account was reported, or no mutuelle knows it — the payment is then matched across every mutuelle
    and attributed to the matched household's. The account is compared squashed, by number or by display name.
    """
    if reported is None or not reported.account:
        return None
    key = account_key(reported.account)
    if not key:
        return None
    rows = session.execute(
        select(MutuelleAccount.mutuelle_id, MutuelleAccount.account_key, MutuelleAccount.display_name).where(
            MutuelleAccount.provider == reported.provider
        )
    )
    found = {mutuelle_id for mutuelle_id, known, name in rows if key in (known, account_key(name or ""))}
    return frozenset(found) or None


def mutuelle_for_commune(mutuelles: Iterable[Mutuelle], commune: str | None) -> Mutuelle | None:
    """Return the mutuelle (among a scheme's) a household of this commune belongs to when nothing else says.

    The one whose communes contain it; else the scheme's only mutuelle; else None (the caller names the problem).
    """
    candidates = list(mutuelles)
    key = commune_key(commune)
    if key:
        by_commune = [m for m in candidates if key in {commune_key(str(c)) for c in m.communes or []}]
        if len(by_commune) == 1:
            return by_commune[0]
    return candidates[0] if len(candidates) == 1 else None


def scheme_mutuelles(session: Session, scheme_id: int) -> list[Mutuelle]:
    """Return a scheme's mutuelles in their file's order."""
    query = select(Mutuelle).where(Mutuelle.scheme_id == scheme_id).order_by(Mutuelle.position, Mutuelle.code)
    return list(session.scalars(query))


def find_mutuelle(session: Session, code: str) -> Mutuelle | None:
    """Return the mutuelle with this code (any case), or None."""
    wanted = code.strip().upper()
    return next((m for m in session.scalars(select(Mutuelle)) if m.code.upper() == wanted), None)


def list_mutuelles(session: Session) -> list[Mutuelle]:
    """Return every mutuelle, by scheme and position."""
    query = select(Mutuelle).join(Scheme).order_by(Scheme.code, Mutuelle.position, Mutuelle.code)
    return list(session.scalars(query))


def home_mutuelle(session: Session, scheme_id: int, commune: str | None) -> Mutuelle:
    """Return the mutuelle of a commune, else the scheme's first: for households built in code (demo, tests)."""
    mutuelles = scheme_mutuelles(session, scheme_id)
    if not mutuelles:
        raise LookupError(f"scheme {scheme_id} has no mutuelle: load its scheme file")
    key = commune_key(commune)
    return next((m for m in mutuelles if key and key in {commune_key(str(c)) for c in m.communes or []}), mutuelles[0])
