"""Words the screens share: eligibility, payment and plan status labels (gettext ids)."""

from __future__ import annotations

from menus.render import N_

STATUS_LABELS = {
    "ACTIVE": N_("active"),
    "WAITING": N_("waiting"),
    "GRACE": N_("grace"),
    "LAPSED": N_("lapsed"),
    "PENDING": N_("never paid"),
    "SUSPENDED": N_("suspended"),
    "INACTIVE": N_("inactive"),
}
PAYMENT_STATUS_LABELS = {
    "RECEIVED": N_("received"),
    "MATCHED": N_("received"),
    "ALLOCATED": N_("applied"),
    "PROVISIONAL": N_("being checked"),
    "UNMATCHED": N_("under review"),
    "CONFLICT": N_("under review"),
    "REVERSED": N_("reversed"),
    "REFUNDED": N_("refunded"),
    "REJECTED": N_("rejected"),
}
PLAN_LABELS = {"yearly": N_("yearly"), "half-yearly": N_("half-yearly"), "monthly": N_("monthly")}
