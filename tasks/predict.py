"""Predict: the current model over the run's eligible tickets, in chunks, into ``predictions``.

No work twice: a ticket whose input (the text the model sees, :func:`triage.models.text.ticket_text`, and the
inference setup: :func:`input_hash`) was predicted by the same model version within ``pipeline.reuse_days``
gets that prediction's outputs again, marked with the run that computed it (``reused_from_run``); the model
runs on the rest only. Our own writes and agents' edits bring tickets back with unchanged text every hour.
The look-up reads those days' partitions only, three columns to find the hashes and the outputs of the
matching rows (:func:`reusable`), so its cost does not grow with the lake's age. Only computed rows are
sources (a reused row names its source), so a text is computed again once its last computation is older
than ``reuse_days``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from triage.errors import PipelineError
from triage.lake.io import COMPACTED_RUN, Lake
from triage.lake.runs import utcnow
from triage.lake.tables.predictions import PREDICTIONS, PredictionRow
from triage.lake.tables.tickets import TICKETS
from triage.models.inference import InferenceEngine
from triage.models.store import ModelStore
from triage.models.text import text_hash, ticket_text
from triage.settings import Settings
from triage.tasks.context import StageContext
from triage.tasks.manifest import ExtractManifest, PredictManifest, add_count
from triage.tasks.runlog import recorded
from triage.tasks.snapshots import latest_tickets

PART_PREFIX = "predict-"
CHUNK_ROWS = 2000


def load_engine(settings: Settings) -> InferenceEngine:
    """The store's current model on the configured device; a clear error when there is none."""
    store_root = settings.model.store
    if ModelStore(store_root).current() is None:
        raise PipelineError(
            f"no current model in {store_root}: train one first (`triage retrain`, or the train flow)"
        )
    return InferenceEngine.load(
        store_root,
        device=settings.model.device,
        batch_tokens=settings.model.batch_tokens,
        precision=settings.model.precision,
    )


def predict(
    ctx: StageContext,
    tickets: ExtractManifest,
    *,
    engine: InferenceEngine | None = None,
    chunk_rows: int = CHUNK_ROWS,
    on_progress: Callable[[float], None] | None = None,
) -> PredictManifest:
    """Predict every triaged field for every eligible ticket of ``tickets``."""
    settings = ctx.settings()
    lake = ctx.lake(settings)
    with recorded(ctx, lake, "predict", mode=settings.pipeline.mode) as record:
        lake.remove_parts(PREDICTIONS.name, date=ctx.partition, run_id=ctx.run_id, prefix=PART_PREFIX)
        snapshots = latest_tickets(
            lake.read_paths(
                TICKETS.name,
                tickets.paths,
                columns=["ticket_id", "subject", "description", "updated_at", "skip_reason"],
            ),
            eligible_only=True,
        )
        record.rows_in = snapshots.num_rows
        if not snapshots.num_rows:
            record.rows_out, record.counts = 0, {}
            return PredictManifest(run_id=ctx.run_id)
        engine = engine or load_engine(settings)
        frame = snapshots.select(["ticket_id", "subject", "description"]).to_pandas()
        hashes = input_hashes(engine, frame)
        sources = reusable(
            lake,
            model_version=engine.model_version,
            fields=engine.fields,
            hashes=set(hashes),
            since=utcnow() - timedelta(days=settings.pipeline.reuse_days),
            run_id=ctx.run_id,
        )
        reuse = [h in sources for h in hashes]
        paths: list[str] = []
        counts: dict[str, dict[str, int]] = {}
        rows = 0

        def write(part_rows: list[PredictionRow]) -> None:
            nonlocal rows
            part = PREDICTIONS.write(
                lake,
                part_rows,
                date=ctx.partition,
                run_id=ctx.run_id,
                name=f"{PART_PREFIX}{len(paths) + 1:05d}",
            )
            if part:
                paths.append(part.path)
            rows += len(part_rows)
            for row in part_rows:
                add_count(counts, row.field, "predicted")
                if row.reused_from_run is not None:
                    add_count(counts, row.field, "reused")

        reused = [(int(t), h) for t, h, r in zip(frame["ticket_id"], hashes, reuse, strict=True) if r]
        for start in range(0, len(reused), chunk_rows):
            write(_reused_rows(reused[start : start + chunk_rows], sources, ctx.run_id))
        todo = frame[[not r for r in reuse]]
        hash_of = dict(zip(frame["ticket_id"].astype(int), hashes, strict=True))
        for start in range(0, len(todo), chunk_rows):
            predicted = engine.predict_frame(todo.iloc[start : start + chunk_rows])
            write(_prediction_rows(predicted, ctx.run_id, hash_of))
            if on_progress:
                on_progress(min(1.0, (start + chunk_rows) / len(todo)))
        if on_progress and not len(todo):
            on_progress(1.0)
        add_count(counts, "*", "tickets_reused", len(reused))
        add_count(counts, "*", "tickets_computed", len(todo))
        record.rows_out, record.counts, record.model_version = rows, counts, engine.model_version
        return PredictManifest(
            run_id=ctx.run_id,
            paths=paths,
            rows=rows,
            counts=counts,
            model_name=engine.model_name,
            model_version=engine.model_version,
            thresholds={field: engine.thresholds(field) for field in engine.fields},
            suggest_only={field: engine.suggest_only(field) for field in engine.fields},
        )


def inference_setup(engine: InferenceEngine) -> dict[str, Any]:
    """What besides the model version and the text decides the engine's outputs."""
    return {"precision": engine.precision, "device": engine.model.device.type, "top_k": engine.top_k}


def input_hashes(engine: InferenceEngine, frame: pd.DataFrame) -> list[str]:
    """Per ticket of ``frame`` (``subject``, ``description``), the ``input_hash`` of its prediction."""
    setup = json.dumps(inference_setup(engine), sort_keys=True)
    return [
        input_hash(text_hash(ticket_text(s, d)), setup)
        for s, d in zip(frame["subject"], frame["description"], strict=True)
    ]


def input_hash(text_sha256: str, setup: str) -> str:
    """sha256 of a text's hash and the inference setup (JSON): equal inputs give equal outputs."""
    return hashlib.sha256(f"{setup}\n{text_sha256}".encode()).hexdigest()


#: The outputs a reused prediction copies from its source (besides the label).
_OUTPUTS = ["field", "label", "probability", "top_k", "model_name", "model_version", "text_hash"]


def reusable(
    lake: Lake,
    *,
    model_version: str,
    fields: Sequence[str],
    hashes: set[str],
    since: datetime,
    run_id: str,
) -> dict[str, tuple[str, dict[str, dict[str, Any]]]]:
    """``input_hash -> (source run, {field: outputs})`` of the latest prediction computed (not reused)
    by ``model_version`` since ``since`` for every field, for the ``hashes`` wanted; none of ``run_id``'s own.

    Reads the date partitions from ``since`` on only: first the hash, run and time of the matching rows,
    then the outputs of the rows picked, so the cost follows the days read, not the lake's age.
    """
    if not hashes or since >= utcnow():
        return {}
    first = since.date().isoformat()
    dates = [d for d in lake.dates(PREDICTIONS.name) if d >= first]
    if not dates:
        return {}
    wanted = (
        (pc.field("model_version") == model_version)
        & pc.field("input_hash").isin(pa.array(sorted(hashes), pa.string()))
        & pc.field("reused_from_run").is_null()
        & (pc.field("run_id") != run_id)
        & (pc.field("predicted_at") >= pa.scalar(since, PREDICTIONS.schema.field("predicted_at").type))
    )
    found = lake.scan(
        PREDICTIONS.name, dates=dates, filter=wanted, columns=["input_hash", "run_id", "predicted_at"]
    )
    if not found.num_rows:
        return {}
    latest: dict[str, tuple[datetime, str]] = {}
    for h, run, at in zip(*(found[c].to_pylist() for c in found.column_names), strict=True):
        if h not in latest or (at, run) > latest[h]:
            latest[h] = (at, run)
    runs = sorted({run for _, run in latest.values()})
    folders = (*(f"/run={run}/" for run in runs), f"/run={COMPACTED_RUN}/")
    picked = lake.scan(
        PREDICTIONS.name,
        dates=dates,
        filter=wanted & pc.field("run_id").isin(pa.array(runs, pa.string())),
        columns=["input_hash", "run_id", *_OUTPUTS],
        files=lambda path: any(folder in path for folder in folders),
    ).to_pylist()
    outputs: dict[str, dict[str, dict[str, Any]]] = {}
    for row in picked:
        h = row.pop("input_hash")
        if latest[h][1] == row.pop("run_id"):
            outputs.setdefault(h, {}).setdefault(row["field"], row)
    return {
        h: (latest[h][1], by_field) for h, by_field in outputs.items() if all(f in by_field for f in fields)
    }


def _reused_rows(
    tickets: Iterable[tuple[int, str]], sources: dict[str, tuple[str, dict[str, dict[str, Any]]]], run_id: str
) -> list[PredictionRow]:
    now = utcnow()
    rows = []
    for ticket_id, h in tickets:
        source_run, by_field = sources[h]
        for out in by_field.values():
            rows.append(
                PredictionRow(
                    run_id=run_id,
                    ticket_id=ticket_id,
                    field=out["field"],
                    label=out["label"],
                    probability=out["probability"],
                    top_k=tuple(out["top_k"]) if out["top_k"] is not None else None,
                    model_name=out["model_name"],
                    model_version=out["model_version"],
                    text_hash=out["text_hash"],
                    input_hash=h,
                    reused_from_run=source_run,
                    predicted_at=now,
                )
            )
    return rows


def _prediction_rows(predicted: pd.DataFrame, run_id: str, hash_of: dict[int, str]) -> list[PredictionRow]:
    """Rows of :meth:`InferenceEngine.predict_frame`'s output; ``hash_of``: ticket id -> ``input_hash``."""
    now = utcnow()
    return [
        PredictionRow(
            run_id=run_id,
            ticket_id=int(row.ticket_id),
            field=str(row.field),
            label=row.label,
            probability=float(row.probability),
            top_k=tuple({"label": k["label"], "probability": float(k["probability"])} for k in row.top_k),
            model_name=row.model_name,
            model_version=row.model_version,
            text_hash=row.text_hash,
            input_hash=hash_of[int(row.ticket_id)],
            predicted_at=now,
        )
        for row in predicted.itertuples(index=False)
    ]
