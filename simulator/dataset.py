"""Labelled tickets from a CSV or Parquet file (for example ``tobi_bueck/*.csv``).

Columns: ``subject``, ``body``, ``queue`` (becomes the group), ``priority`` (low/medium/high,
also urgent/critical), ``type`` (the ticket type) and optionally ``language`` and ``product``.
Without a ``product`` column the ``cf_product`` label is derived from keywords in the text, so the
dropdown has history labels; it is deterministic but only as good as those keywords.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from triage.simulator.generator import LabelledText

REQUIRED_COLUMNS = ("subject", "body", "queue", "priority", "type")

PRIORITY_LABELS = {
    "low": "Low",
    "medium": "Medium",
    "normal": "Medium",
    "high": "High",
    "urgent": "Urgent",
    "critical": "Urgent",
}

# Keyword product classes for files without a product column (English and German stems).
_PRODUCT_KEYWORDS = {
    "Hardware": r"printer|drucker|laptop|monitor|bildschirm|projekt?or|router|device|gerät|hardware",
    "Cloud": r"cloud|server|saas|aws|azure|storage|speicher|backup|datenbank|database",
    "Network": r"network|netzwerk|vpn|wi-?fi|wlan|firewall|connectivity|verbindung",
    "Software": r"software|app\b|update|install|licen[cs]e|lizenz|plugin|version",
    "Account": r"account|konto|login|password|passwort|subscription|abonnement|invoice|rechnung",
}
_PRODUCT_PATTERNS = {
    label: re.compile(pattern, re.IGNORECASE) for label, pattern in _PRODUCT_KEYWORDS.items()
}
FALLBACK_PRODUCT = "Other"


class DatasetError(ValueError):
    """The file cannot be used to seed the simulator; the message says why."""


def derive_product(text: str) -> str:
    """The keyword class with the most hits in ``text`` (ties: the first listed), else ``Other``."""
    best, best_hits = FALLBACK_PRODUCT, 0
    for label, pattern in _PRODUCT_PATTERNS.items():
        hits = len(pattern.findall(text))
        if hits > best_hits:
            best, best_hits = label, hits
    return best


def load_labelled(path: str | Path) -> list[LabelledText]:
    """Every row of ``path`` as a :class:`LabelledText`; :class:`DatasetError` on bad input."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    try:
        if path.suffix.lower() == ".parquet":
            frame = pd.read_parquet(path)
        elif path.suffix.lower() in (".csv", ".txt"):
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        else:
            raise DatasetError(f"{path}: expected a .csv or .parquet file")
    except (OSError, ValueError) as exc:
        if isinstance(exc, DatasetError):
            raise
        raise DatasetError(f"{path}: cannot be read: {exc}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DatasetError(
            f"{path}: missing column(s) {', '.join(missing)} (has {', '.join(map(str, frame.columns))})"
        )
    frame = frame.fillna("")
    has_language = "language" in frame.columns
    has_product = "product" in frame.columns
    tag_columns = sorted(
        (str(c) for c in frame.columns if re.fullmatch(r"tag_\d+", str(c))), key=lambda c: int(c[4:])
    )
    rows: list[LabelledText] = []
    for number, row in enumerate(frame.itertuples(index=False), start=2):
        record = row._asdict()
        priority = PRIORITY_LABELS.get(str(record["priority"]).strip().lower())
        if priority is None:
            raise DatasetError(
                f"{path}: row {number}: priority {record['priority']!r} is not one of {', '.join(PRIORITY_LABELS)}"
            )
        group, ticket_type = str(record["queue"]).strip(), str(record["type"]).strip()
        if not group or not ticket_type:
            raise DatasetError(f"{path}: row {number}: queue and type must not be empty")
        subject, body = str(record["subject"]).strip(), str(record["body"]).strip()
        if not subject and not body:
            raise DatasetError(f"{path}: row {number}: both subject and body are empty")
        product = str(record["product"]).strip() if has_product else derive_product(f"{subject}\n{body}")
        rows.append(
            LabelledText(
                subject=subject,
                body=body.replace("\\n", "\n"),
                group=group,
                priority=priority,
                type=ticket_type,
                product=product or None,
                language=str(record["language"]).strip() if has_language else "",
                tags=_tags(record, tag_columns),
            )
        )
    if not rows:
        raise DatasetError(f"{path}: the file has no rows")
    return rows


def _tags(record: dict[str, object], columns: list[str]) -> tuple[str, ...]:
    """A row's tags from its ``tag_1`` .. ``tag_n`` columns: valid Freshdesk tags (1-32 characters, no
    comma), each once ignoring case."""
    seen: dict[str, str] = {}
    for column in columns:
        tag = str(record[column]).strip()
        if tag and len(tag) <= 32 and "," not in tag:
            seen.setdefault(tag.lower(), tag)
    return tuple(seen.values())
