"""Run reports built from stage manifests: a counts table and a Markdown summary. No Prefect here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from triage.tasks.context import StageContext
from triage.tasks.manifest import Manifest

_ORDER = {"extract": 0, "predict": 1, "decide": 2, "push": 3, "train": 4, "outcomes": 5}


def counts_rows(manifests: Sequence[Manifest]) -> list[dict[str, Any]]:
    """One row per stage, field and outcome (summed over manifests): the run's counts table."""
    totals: dict[tuple[str, str, str], int] = {}
    for m in manifests:
        for field, outcomes in m.counts.items():
            for outcome, n in outcomes.items():
                key = (m.stage, field, outcome)
                totals[key] = totals.get(key, 0) + n
    return [
        {"stage": stage, "field": field, "outcome": outcome, "count": n}
        for (stage, field, outcome), n in sorted(
            totals.items(), key=lambda kv: (_ORDER.get(kv[0][0], 9), kv[0])
        )
    ]


def markdown_report(
    ctx: StageContext, manifests: Sequence[Manifest], *, title: str, notes: Sequence[str] = ()
) -> str:
    """A short Markdown report: window, mode, rows per stage, the counts table, notes."""
    lines = [
        f"# {title}",
        "",
        f"- run: `{ctx.run_id}` (flow `{ctx.flow}`)",
        f"- window: {ctx.window_start:%Y-%m-%d %H:%M:%S} to {ctx.window_end:%Y-%m-%d %H:%M:%S} UTC "
        f"({ctx.window_source})",
    ]
    mode = next((getattr(m, "mode", None) for m in manifests if getattr(m, "mode", None)), None)
    if mode:
        lines.append(f"- mode: **{mode}**" + (" (nothing was written)" if mode == "shadow" else ""))
    version = next(
        (getattr(m, "model_version", None) for m in manifests if getattr(m, "model_version", None)), None
    )
    if version:
        lines.append(f"- model version: `{version}`")
    lines += ["", "| stage | table | rows | parts |", "|---|---|---:|---:|"]
    lines += [f"| {m.stage} | {m.table} | {m.rows} | {len(m.paths)} |" for m in manifests]
    rows = counts_rows(manifests)
    if rows:
        lines += ["", "| stage | field | outcome | count |", "|---|---|---|---:|"]
        lines += [f"| {r['stage']} | {r['field']} | {r['outcome']} | {r['count']} |" for r in rows]
    if notes:
        lines += ["", *[f"- {note}" for note in notes]]
    return "\n".join(lines) + "\n"
