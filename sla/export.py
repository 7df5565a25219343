"""The credit ledger as CSV and JSON (amounts as decimal strings, never floats)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from typing import Any

from sla.models import CreditEntry

LEDGER_COLUMNS = (
    "id",
    "carrier_id",
    "carrier",
    "month",
    "breach_id",
    "sli",
    "attainment_pct",
    "tier",
    "pct",
    "monthly_fee_usd",
    "amount_usd",
    "created_at",
)


def ledger_row(entry: CreditEntry) -> dict[str, Any]:
    return {
        "id": entry.pk,
        "carrier_id": entry.carrier_id,
        "carrier": entry.carrier.name,
        "month": entry.month.strftime("%Y-%m"),
        "breach_id": entry.breach_id,
        "sli": entry.breach.sli,
        "attainment_pct": str(entry.breach.attainment_pct),
        "tier": entry.tier,
        "pct": str(entry.pct),
        "monthly_fee_usd": str(entry.monthly_fee_usd),
        "amount_usd": str(entry.amount_usd),
        "created_at": entry.created_at.isoformat(),
    }


def _safe_cell(value: Any) -> Any:
    # A carrier name starting with = + - @ would run as a formula in a spreadsheet (CSV injection).
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def ledger_csv(entries: Iterable[CreditEntry]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=LEDGER_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for entry in entries:
        row = ledger_row(entry)
        row["carrier"] = _safe_cell(row["carrier"])  # the only free-text column
        writer.writerow(row)
    return out.getvalue()


def ledger_json(entries: Iterable[CreditEntry]) -> str:
    rows = [ledger_row(e) for e in entries]
    return json.dumps({"columns": list(LEDGER_COLUMNS), "entries": rows}, indent=2)
