"""Helpers for stage tests: predictions straight from the simulator's hidden truth, change logs, a small
labelled training set."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import yaml

from triage.tasks.context import StageContext
from triage.tasks.extract import extract
from triage.tasks.manifest import ExtractManifest, PredictManifest
from triage.tasks.snapshots import latest_snapshots

THRESHOLDS = {"group": (0.8, 0.5), "priority": (0.8, 0.5), "type": (0.8, 0.5)}


def fake_predictions(
    ctx: StageContext,
    tickets: ExtractManifest,
    choose: Callable[[int, str], tuple[str, float] | None],
    *,
    fields=("group", "priority", "type"),
) -> PredictManifest:
    """Predictions for the extract's eligible tickets as ``choose(ticket_id, field)`` says."""
    lake = ctx.lake()
    now = datetime.now(UTC)
    rows = []
    for ticket_id in latest_snapshots(lake.read_paths("tickets", tickets.paths), eligible_only=True):
        for field in fields:
            picked = choose(ticket_id, field)
            if picked is None:
                continue
            label, p = picked
            rows.append(
                {
                    "run_id": ctx.run_id,
                    "ticket_id": ticket_id,
                    "field": field,
                    "label": label,
                    "probability": p,
                    "top_k": [{"label": label, "probability": p}],
                    "model_name": "fake",
                    "model_version": "v-test",
                    "text_hash": "0" * 64,
                    "predicted_at": now,
                }
            )
    part = lake.write("predictions", rows, date=ctx.partition, run_id=ctx.run_id, name="predict-00001")
    return PredictManifest(
        run_id=ctx.run_id,
        paths=[part.path] if part else [],
        rows=len(rows),
        model_name="fake",
        model_version="v-test",
        thresholds=THRESHOLDS,
    )


def truth_predictions(
    sim, confident: Callable[[int], bool]
) -> Callable[[int, str], tuple[str, float] | None]:
    """The true label at 0.95 for tickets ``confident`` picks, else at 0.3 (below every threshold)."""
    truth = sim.truth()

    def choose(ticket_id: int, field: str):
        label = truth.get(ticket_id, {}).get(field)
        if label is None:
            return None
        return label, (0.95 if confident(ticket_id) else 0.3)

    return choose


def api_changes(sim) -> list:
    """Changes made through the API or bulk updates (not by agents)."""
    return [c for c in sim.changes if c.source in ("api", "bulk")]


def write_config(path: Path, sim, tmp: Path, **pipeline) -> Path:
    data = {
        "ticket_system": {
            "adapter": "freshdesk",
            "base_url": sim.base_url,
            "plan": "custom",
            "rate_limit_total": 100000,
            "bulk_poll_interval_seconds": 0.05,
            "backoff_base_seconds": 0.01,
        },
        "pipeline": {"lake": str(tmp / "lake"), "mode": "apply", "bulk_settle_seconds": 0, **pipeline},
        "model": {"store": str(tmp / "models")},
    }
    path.write_text(yaml.safe_dump(data))
    return path


def wanted_writes(ctx: StageContext, decided, specs) -> dict[tuple[int, str], object]:
    """(ticket id, field) -> native value of every ``apply`` decision of a decide manifest."""
    rows = ctx.lake().read_paths("decisions", decided.paths).to_pylist()
    return {
        (r["ticket_id"], r["field"]): specs[r["field"]].to_native(r["label"])
        for r in rows
        if r["action"] == "apply"
    }


TOPICS = {
    "Billing": ["invoice", "refund", "payment", "charge"],
    "Hardware": ["printer", "laptop", "monitor", "keyboard"],
    "Network": ["vpn", "wifi", "router", "proxy"],
}


def topic_training_frame(n: int = 90) -> pd.DataFrame:
    """Labelled tickets of three topics (group), urgency (priority) and a random type, seeded."""
    rng = random.Random(0)
    rows = []
    for i in range(n):
        group = list(TOPICS)[i % 3]
        noun = rng.choice(TOPICS[group])
        urgent = rng.random() < 0.5
        rows.append({
            "subject": f"{noun.capitalize()} issue #{i}",
            "description": f"<p>My {noun} needs help.</p><p>{'URGENT: down' if urgent else 'No rush'}.</p>",
            "group": group,
            "priority": "High" if urgent else "Low",
            "type": rng.choice(["Incident", "Question"]),
        })  # fmt: skip
    return pd.DataFrame(rows)


async def extract_open(ctx, adapter_for):
    """Extract for ``ctx`` through the adapter fixture's simulator."""
    async with adapter_for(ctx) as adapter:
        return await extract(ctx, adapter)
