"""Outcomes: how recent predictions compare with the values agents finally set (``outcomes`` table).

For every ticket resolved in the last ``days`` (from a history extract), the latest prediction made
before it was resolved is set beside the final value, with what the rules decided, whether triage
wrote a value, and whether agents changed what triage wrote.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pyarrow.compute as pc
from pydantic import Field

from triage.adapters.base import FieldSpec
from triage.lake import Lake
from triage.tasks.context import StageContext
from triage.tasks.manifest import ExtractManifest, Manifest
from triage.tasks.runlog import recorded
from triage.tasks.snapshots import label_of, latest_snapshots, row_ticket

PART = "outcomes-00001"


class OutcomesManifest(Manifest):
    stage: str = "outcomes"
    table: str = "outcomes"
    #: field -> {"tickets", "accuracy", "written", "write_precision", "overridden"}
    summary: dict[str, dict[str, float | int | None]] = Field(default_factory=dict)


def compare_outcomes(
    ctx: StageContext, history: ExtractManifest, specs: Mapping[str, FieldSpec], *, days: int
) -> OutcomesManifest:
    """Write ``outcomes`` for tickets resolved within ``days`` before the window end."""
    settings = ctx.settings()
    lake = ctx.lake(settings)
    with recorded(ctx, lake, "outcomes", mode=None) as record:
        lake.remove_parts("outcomes", date=ctx.partition, run_id=ctx.run_id, prefix="outcomes-")
        since = ctx.window_end - timedelta(days=days)
        resolved = {
            t: row_ticket(r)
            for t, r in latest_snapshots(
                lake.read_paths("tickets", history.paths), eligible_only=True
            ).items()
            if r["updated_at"] >= since
        }
        fields = settings.enabled_fields()
        rows = outcome_rows(lake, ctx.run_id, resolved, specs, fields)
        part = lake.write("outcomes", rows, date=ctx.partition, run_id=ctx.run_id, name=PART)
        summary = summarise(rows, fields)
        counts = {
            f: {
                k: int(v) for k, v in s.items() if k in ("tickets", "written", "overridden") and v is not None
            }
            for f, s in summary.items()
        }
        record.rows_in, record.rows_out, record.counts = len(resolved), len(rows), counts
        return OutcomesManifest(
            run_id=ctx.run_id,
            paths=[part.path] if part else [],
            rows=len(rows),
            counts=counts,
            summary=summary,
        )


def outcome_rows(
    lake: Lake, run_id: str, resolved: Mapping[int, Any], specs: Mapping[str, FieldSpec], fields: list[str]
) -> list[dict[str, Any]]:
    """One row per resolved ticket and field that triage predicted before resolution."""
    if not resolved:
        return []
    ids = list(resolved)
    latest: dict[tuple[int, str], dict[str, Any]] = {}
    for p in lake.scan("predictions", filter=pc.field("ticket_id").isin(ids)).to_pylist():
        if p["predicted_at"].replace(microsecond=0) > resolved[p["ticket_id"]].updated_at:
            continue  # made after the resolution (compared at Freshdesk's whole-second precision)
        key = (p["ticket_id"], p["field"])
        if key not in latest or p["predicted_at"] > latest[key]["predicted_at"]:
            latest[key] = p
    actions = {
        (d["run_id"], d["ticket_id"], d["field"]): d["action"]
        for d in lake.scan(
            "decisions",
            filter=pc.field("ticket_id").isin(ids),
            columns=["run_id", "ticket_id", "field", "action"],
        ).to_pylist()
    }
    written: dict[tuple[int, str], dict[str, Any]] = {}
    for a in lake.scan(
        "audit",
        filter=(pc.field("phase") == "result")
        & (pc.field("status") == "ok")
        & pc.field("method").isin(["update", "bulk_update"])
        & pc.field("ticket_id").isin(ids),
        columns=["ticket_id", "field", "label", "completed_at"],
    ).to_pylist():
        key = (a["ticket_id"], a["field"])
        if key not in written or a["completed_at"] > written[key]["completed_at"]:
            written[key] = a
    rows = []
    for (ticket_id, name), p in sorted(latest.items()):
        if name not in fields:
            continue
        final = label_of(specs.get(name), resolved[ticket_id].native(name))
        wrote = written.get((ticket_id, name))
        rows.append(
            {
                "run_id": run_id,
                "ticket_id": ticket_id,
                "field": name,
                "predicted_label": p["label"],
                "probability": p["probability"],
                "action": actions.get((p["run_id"], ticket_id, name)),
                "written": wrote is not None,
                "written_label": wrote["label"] if wrote else None,
                "final_label": final,
                "correct": final is not None and p["label"] == final,
                "overridden": wrote is not None and wrote["label"] != final,
                "prediction_run_id": p["run_id"],
                "model_version": p["model_version"],
                "resolved_updated_at": resolved[ticket_id].updated_at,
            }
        )
    return rows


def summarise(rows: list[dict[str, Any]], fields: list[str]) -> dict[str, dict[str, float | int | None]]:
    """Per field: tickets compared, prediction accuracy, writes, precision of writes, overridden writes."""
    summary: dict[str, dict[str, float | int | None]] = {}
    for name in fields:
        mine = [r for r in rows if r["field"] == name]
        writes = [r for r in mine if r["written"]]
        summary[name] = {
            "tickets": len(mine),
            "accuracy": sum(r["correct"] for r in mine) / len(mine) if mine else None,
            "written": len(writes),
            "write_precision": sum(not r["overridden"] for r in writes) / len(writes) if writes else None,
            "overridden": sum(r["overridden"] for r in writes),
        }
    return summary
