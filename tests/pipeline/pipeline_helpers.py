"""Helpers for stage tests: predictions straight from the simulator's hidden truth, change logs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import yaml

from tasks.context import StageContext
from tasks.manifest import ExtractManifest, PredictManifest
from tasks.snapshots import latest_snapshots

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


NATIVE = {"group": "group_id", "priority": "priority", "type": "type"}
#: Freshdesk's default of a triaged field (native), which every new ticket has.
DEFAULTS = {"priority": 1}


def ledger(sim, wanted: dict[tuple[int, str], object]) -> dict[str, list]:
    """Writes lost, doubled and agent values overwritten, from the simulator's own logs.

    ``wanted`` maps (ticket id, triage field) to the native value triage should have written.
    Lost: the ticket lacks the value, no agent changed the field, and it is not Freshdesk's default
    left on a ticket an agent changed (push leaves that alone: it may be the agent's choice). Doubled: a field our writes
    changed twice, a ticket in two bulk jobs, or a ticket given two PUTs the account acted on.
    Overwritten: our write to a field (or a tag list dropping a tag) after an agent set it.
    """
    changes = sim.changes
    agent_set: dict[tuple[int, str], int] = {}
    ours: dict[tuple[int, str], int] = {}
    doubled, overwritten = [], []
    agent_tags: dict[int, set[str]] = {}
    for index, change in enumerate(changes):
        for name, (old, new) in change.changes.items():
            key = (change.ticket_id, name)
            if change.source == "agent":
                agent_set[key] = index
                if name == "tags":
                    agent_tags.setdefault(change.ticket_id, set()).update(set(new) - set(old))
            elif change.source in ("api", "bulk"):
                if name == "tags":
                    lost_tags = agent_tags.get(change.ticket_id, set()) - set(new)
                    if lost_tags:
                        overwritten.append((change.ticket_id, "tags", sorted(lost_tags)))
                    continue
                if key in ours:
                    doubled.append(key)
                if key in agent_set:
                    overwritten.append(key)
                ours[key] = index
    jobs: dict[int, int] = {}
    for job in sim.store.jobs.values():
        for ticket_id in job.ids:
            jobs[ticket_id] = jobs.get(ticket_id, 0) + 1
    doubled += [("bulk jobs", t) for t, n in jobs.items() if n > 1]
    puts: dict[str, int] = {}
    for write in sim.writes:
        if write.method == "PUT" and 200 <= write.status < 300:
            puts[write.path] = puts.get(write.path, 0) + 1
    doubled += [("PUT", p) for p, n in puts.items() if n > 1]
    touched = {t for t, _ in agent_set}
    lost = [
        (t, f)
        for (t, f), value in wanted.items()
        if sim.ticket(t)[NATIVE[f]] != value
        and (t, NATIVE[f]) not in agent_set
        and not (t in touched and sim.ticket(t)[NATIVE[f]] == DEFAULTS.get(f))
    ]
    return {"lost": lost, "doubled": doubled, "overwritten": overwritten}


def wanted_writes(ctx: StageContext, decided, specs) -> dict[tuple[int, str], object]:
    """(ticket id, field) -> native value of every ``apply`` decision of a decide manifest."""
    rows = ctx.lake().read_paths("decisions", decided.paths).to_pylist()
    return {
        (r["ticket_id"], r["field"]): specs[r["field"]].to_native(r["label"])
        for r in rows
        if r["action"] == "apply"
    }
