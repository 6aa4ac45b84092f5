"""The demo: a simulated Freshdesk, a model trained from its history, one triage run in apply mode.

The model learns the account's tags too where its history has them (the generated account's agents
tag urgent tickets ``escalated``, refunds ``refund`` and mobile-app tickets ``mobile``; a data file its
``tag_1`` .. ``tag_n`` columns); tags written are scored against the simulator's hidden tags.

Everything goes through the real paths: the simulator serves HTTP, the Freshdesk adapter reads and
writes it, the train flow extracts the resolved history and trains, the triage flow runs the four
stages. At the end the writes are scored against the simulator's hidden true labels.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from triage.flows.incremental import RunSummary, TriageParams, triage_flow
from triage.flows.train import TrainParams, train_flow
from triage.lake import Lake, TableName
from triage.models.tags import TAGS
from triage.tasks.train import TrainManifest

if TYPE_CHECKING:
    from triage.simulator.config import Plan

MARKER = ".triage-demo"


@dataclass(frozen=True)
class DemoOptions:
    folder: Path = Path("data/demo")
    tickets: int = 3500
    open_tickets: int = 300
    data: Path | None = None
    seed: int = 42
    max_length: int = 128
    target_precision: float = 0.90
    plan: Plan = "growth"
    window_seconds: float = 10.0


@dataclass
class FieldScore:
    """How the writes to one field compare with the hidden true labels."""

    open_tickets: int
    written: int = 0
    correct: int = 0

    @property
    def precision(self) -> float | None:
        return self.correct / self.written if self.written else None

    @property
    def coverage(self) -> float:
        return self.written / self.open_tickets if self.open_tickets else 0.0


@dataclass
class DemoResult:
    lake: Path
    model_store: Path
    trained: TrainManifest
    run: RunSummary
    scores: dict[str, FieldScore]
    changes: list[dict[str, Any]] = field(default_factory=list)
    #: field -> reason code -> decisions of the run (why fields were or were not written)
    reasons: dict[str, dict[str, int]] = field(default_factory=dict)
    #: tags the run added, against the hidden tags (None: the model has no tags head)
    tags: FieldScore | None = None


def prepare_folder(folder: Path) -> None:
    """An empty demo folder; refuses to wipe a folder the demo did not create."""
    if folder.exists() and any(folder.iterdir()):
        if not (folder / MARKER).exists():
            raise FileExistsError(f"{folder} exists and was not made by the demo: choose another --dir")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text("created by `triage demo`; safe to delete\n")


def demo_config(folder: Path, base_url: str, options: DemoOptions) -> Path:
    """The demo's config.yml (no API key in it: that comes from the environment)."""
    config = {
        "ticket_system": {
            "adapter": "freshdesk",
            "base_url": base_url,
            "plan": options.plan,
            "rate_window_seconds": options.window_seconds,
            "bulk_poll_interval_seconds": 0.2,
        },
        "model": {
            "store": str(folder / "models"),
            "base_encoder": "minilm",
            "max_length": options.max_length,
            "min_examples_per_class": 10,
            "target_precision": options.target_precision,
            "suggest_precision": min(0.75, options.target_precision),
            "train_options": {"tags": True},
        },
        "pipeline": {"lake": str(folder / "lake"), "mode": "apply"},
    }
    path = folder / "config.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def score_writes(
    lake: Lake,
    run_id: str,
    truth: Mapping[int, Mapping[str, str]],
    fields: list[str],
    true_tags: Mapping[int, Sequence[str]] | None = None,
) -> tuple[dict[str, FieldScore], list[dict[str, Any]]]:
    """Per field (and ``tags`` where ``true_tags`` are given): writes of the run, how many match the
    hidden label (a tag: is among the ticket's hidden tags); and the list of changes."""
    scores = {name: FieldScore(open_tickets=len(truth)) for name in fields}
    if true_tags is not None:
        scores[TAGS] = FieldScore(open_tickets=len(truth))
    audit = lake.scan(TableName.AUDIT).to_pylist()
    written = [
        a
        for a in audit
        if a["run_id"] == run_id and a["phase"] == "result" and a["status"] == "ok" and a["method"] != "note"
    ]
    changes = []
    for a in sorted(written, key=lambda a: (a["ticket_id"], a["field"])):
        expected: str | None
        if a["field"] == TAGS:
            hidden = (true_tags or {}).get(a["ticket_id"], ())
            expected, correct = ", ".join(hidden) or "no tags", a["label"] in hidden
        else:
            expected = truth.get(a["ticket_id"], {}).get(a["field"])
            correct = expected == a["label"]
        if a["field"] in scores and a["ticket_id"] in truth:
            scores[a["field"]].written += 1
            scores[a["field"]].correct += correct
        changes.append(
            {
                "ticket_id": a["ticket_id"],
                "field": a["field"],
                "label": a["label"],
                "truth": expected,
                "correct": correct,
            }
        )
    return scores, changes


def run_demo(options: DemoOptions, *, say: Callable[[str], None] = print) -> DemoResult:
    """Start the simulator, train through the train flow, triage in apply mode, score the writes."""
    from triage.simulator import SimulatorConfig, run_simulator

    folder = options.folder.resolve()
    prepare_folder(folder)
    sim_config = SimulatorConfig(
        tickets=options.tickets,
        open_tickets=options.open_tickets,
        data=options.data,
        seed=options.seed,
        plan=options.plan,
        window_seconds=options.window_seconds,
    )
    say(
        f"Starting the Freshdesk simulator: {options.tickets} tickets, {options.open_tickets} open and untriaged ..."
    )
    with run_simulator(sim_config) as sim:
        assert sim.base_url is not None  # set once the simulator serves
        previous_key = os.environ.get("FRESHDESK_API_KEY")
        os.environ["FRESHDESK_API_KEY"] = sim.api_key
        try:
            config = demo_config(folder, sim.base_url, options)
            say(f"  {sim.base_url} (rate limits: {options.plan}, window {options.window_seconds:g} s)")
            say("Training a model from the simulator's resolved tickets (train flow) ...")
            trained = train_flow(TrainParams(config=str(config), days=sim_config.history_days + 30))
            say(
                f"  model {trained.model_version}: {'promoted' if trained.promoted else 'NOT promoted'} ({trained.reason})"
            )
            say("Triaging the open tickets in apply mode (triage flow) ...")
            run = triage_flow(TriageParams(config=str(config), mode="apply"))
        finally:
            if previous_key is None:
                os.environ.pop("FRESHDESK_API_KEY", None)
            else:
                os.environ["FRESHDESK_API_KEY"] = previous_key
        truth, true_tags = sim.truth(), sim.true_tags()
    lake = Lake(folder / "lake")
    fields = list(trained.metrics)
    scores, changes = score_writes(lake, run.run_id, truth, fields, true_tags if trained.tags else None)
    tags = scores.pop(TAGS, None)
    return DemoResult(
        lake=folder / "lake",
        model_store=folder / "models",
        trained=trained,
        run=run,
        scores=scores,
        changes=changes,
        reasons=decision_reasons(lake, run.run_id, set(truth)),
        tags=tags,
    )


def decision_reasons(lake: Lake, run_id: str, tickets: set[int]) -> dict[str, dict[str, int]]:
    """Per field, how many of ``tickets`` got each reason code in the run's decisions."""
    out: dict[str, dict[str, int]] = {}
    for d in lake.scan(TableName.DECISIONS).to_pylist():
        if d["run_id"] == run_id and d["ticket_id"] in tickets:
            bucket = out.setdefault(d["field"], {})
            bucket[d["reason_code"]] = bucket.get(d["reason_code"], 0) + 1
    return out


def format_result(result: DemoResult) -> str:
    """What the demo prints at the end."""
    lines = ["", "What triage wrote, against the simulator's hidden true labels:", ""]
    lines.append(
        f"{'field':<10} {'written':>8} {'precision':>10} {'coverage':>9}   model macro-F1 (baseline)"
    )
    for name, score in result.scores.items():
        metrics = result.trained.metrics.get(name, {})
        precision = "-" if score.precision is None else f"{score.precision:.1%}"
        f1 = metrics.get("macro_f1")
        base = metrics.get("baseline_macro_f1")
        quality = "" if f1 is None else f"{f1:.3f} ({base:.3f})" if base is not None else f"{f1:.3f}"
        lines.append(f"{name:<10} {score.written:>8} {precision:>10} {score.coverage:>9.1%}   {quality}")
    if result.tags is not None:
        t, score = result.trained.tags, result.tags
        precision = "-" if score.precision is None else f"{score.precision:.1%}"
        lines.append(
            f"{TAGS:<10} {score.written:>8} {precision:>10} {'':>9}   micro-F1 {t['micro_f1']:.3f} "
            f"({t['baseline_micro_f1']:.3f}); {t['addable']:.0f} of {t['learned']:.0f} tags may be added"
        )
    lines += ["", "Why (decisions for the open tickets, by reason code):"]
    for name, reasons in result.reasons.items():
        shown = ", ".join(f"{code} {n}" for code, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
        threshold = result.trained.metrics.get(name, {}).get("apply_threshold")
        never = threshold is None and name != TAGS  # tags: each has its own threshold (model.json)
        note = " (no threshold reaches the target precision: never applied)" if never else ""
        lines.append(f"  {name:<10} {shown}{note}")
    lines += ["", f"Sample of changes (of {len(result.changes)}):"]
    for change in result.changes[:8]:
        mark = "ok " if change["correct"] else "WRONG"
        lines.append(
            f"  [{mark}] ticket {change['ticket_id']}: {change['field']} = {change['label']!r} (true: {change['truth']!r})"
        )
    lake = result.lake
    lines += [
        "",
        f"Parquet lake: {lake}",
        *[
            f"  {table:<12} {lake / table}"
            for table in (
                TableName.TICKETS,
                TableName.PREDICTIONS,
                TableName.DECISIONS,
                TableName.AUDIT,
                TableName.RUNS,
            )
        ],
        f"Model store:  {result.model_store}",
        "",
        "Query it, e.g.:",
        f'  triage sql --lake {lake} "select field, label, probability, reason_code from decisions '
        "where action = 'apply' limit 10\"",
    ]
    return "\n".join(lines)
