"""Predict: the current model over the run's eligible tickets, in chunks, into ``predictions``.

No work twice: a ticket whose input (the text the model sees, :func:`triage.models.text.ticket_text`, and the
inference setup: :func:`input_hash`) was predicted by the same model version within ``pipeline.reuse_days``
gets that prediction's outputs again, marked with the run that computed it (``reused_from_run``); the model
runs on the rest only. Our own writes and agents' edits bring tickets back with unchanged text every hour.
The look-up reads those days' partitions only, three columns to find the hashes and the outputs of the
matching rows (:func:`reusable`), so its cost does not grow with the lake's age. Only computed rows are
sources (a reused row names its source), so a text is computed again once its last computation is older
than ``reuse_days``. The hashes and the look-up need the current version's manifest only: the model is
loaded (that version, pinned) only when some ticket is computed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from triage.errors import PipelineError
from triage.lake.io import COMPACTED_RUN, Lake
from triage.lake.runs import utcnow
from triage.lake.tables.predictions import PREDICTIONS, PredictionRow
from triage.lake.tables.tickets import TICKETS
from triage.models.classifier import pick_device
from triage.models.inference import InferenceEngine
from triage.models.loading import Precision
from triage.models.manifest import ModelManifest
from triage.models.store import ModelStore
from triage.models.text import text_hash, ticket_text
from triage.settings import Settings
from triage.tasks.context import StageContext
from triage.tasks.manifest import ExtractManifest, PredictManifest, add_count
from triage.tasks.runlog import recorded
from triage.tasks.snapshots import latest_tickets

PART_PREFIX = "predict-"
CHUNK_ROWS = 2000
#: Alternatives kept per prediction (``top_k``): part of the inference setup that the input hash covers.
DEFAULT_TOP_K = 3


def load_engine(settings: Settings, version: str | None = None) -> InferenceEngine:
    """The store's ``version`` (default: current) on the configured device; a clear error when there is none."""
    return InferenceEngine.load(
        settings.model.store,
        version or current_manifest(settings).version,
        device=settings.model.device,
        batch_tokens=settings.model.batch_tokens,
        top_k=DEFAULT_TOP_K,
        precision=settings.model.precision,
    )


def current_manifest(settings: Settings) -> ModelManifest:
    """The manifest of the store's current version, read once, without loading (or downloading) the model."""
    store = ModelStore(settings.model.store)
    version = store.current_version()
    if version is None:
        raise PipelineError(
            f"no current model in {settings.model.store}: train one first (`triage retrain`, or the train flow)"
        )
    return store.manifest(version)


def predict(
    ctx: StageContext,
    tickets: ExtractManifest,
    *,
    engine: InferenceEngine | None = None,
    chunk_rows: int | None = None,
    on_progress: Callable[[float], None] | None = None,
    run_parts: PartRunner | None = None,
) -> PredictManifest:
    """Predict every triaged field for every eligible ticket of ``tickets``.

    The tickets to compute are cut into parts of ``chunk_rows`` (default :data:`CHUNK_ROWS`; :class:`PartJob`), named here in ticket
    order, so a part's file is the same whoever computes it; ``run_parts`` computes them (a Dask cluster:
    :mod:`triage.tasks.predict_parts`), by default here with ``engine``. Every part of the run is removed
    first, so a killed attempt's parts are replaced, never added to.
    """
    settings, chunk_rows = ctx.settings(), chunk_rows or CHUNK_ROWS
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
        # The model is loaded only if some ticket is computed: hashes and reuse need its manifest only.
        manifest = engine.manifest if engine else current_manifest(settings)
        setup = inference_setup(engine) if engine else configured_setup(settings)
        fields = list(manifest.classifier.labels)
        frame = snapshots.select(["ticket_id", "subject", "description"]).to_pandas()
        frame["input_hash"] = input_hashes(setup, frame)
        sources = reusable(
            lake,
            model_version=manifest.version,
            fields=fields,
            hashes=set(frame["input_hash"]),
            since=utcnow() - timedelta(days=settings.pipeline.reuse_days),
            run_id=ctx.run_id,
        )
        reuse = frame["input_hash"].isin(sources.keys())
        results: list[PartResult] = []
        reused = [
            (int(t), h) for t, h in zip(frame["ticket_id"][reuse], frame["input_hash"][reuse], strict=True)
        ]
        for start in range(0, len(reused), chunk_rows):
            name = f"{PART_PREFIX}{len(results) + 1:05d}"
            rows = _reused_rows(reused[start : start + chunk_rows], sources, ctx.run_id)
            results.append(_write_part(lake, rows, run_id=ctx.run_id, partition=ctx.partition, name=name))
        todo = frame[~reuse]
        if len(todo) and engine is None:
            engine = load_engine(settings, manifest.version)
            if inference_setup(engine) != setup:
                raise PipelineError(f"the loaded model runs {inference_setup(engine)}, not {setup} as hashed")
        jobs = [
            PartJob(
                name=f"{PART_PREFIX}{len(results) + 1 + i:05d}",
                lake=_place(lake.uri),
                store=_place(str(settings.model.store)),
                version=manifest.version,
                device=settings.model.device,
                batch_tokens=settings.model.batch_tokens,
                precision=settings.model.precision,
                run_id=ctx.run_id,
                partition=ctx.partition,
                setup=setup,
                tickets=todo.iloc[start : start + chunk_rows].reset_index(drop=True),
            )
            for i, start in enumerate(range(0, len(todo), chunk_rows))
        ]
        computed = run_parts(jobs) if run_parts else (predict_part(job, engine) for job in jobs)
        for done, result in enumerate(computed, start=1):
            results.append(result)
            if on_progress:
                on_progress(done / len(jobs))
        if on_progress and not jobs:
            on_progress(1.0)
        counts: dict[str, dict[str, int]] = {}
        for result in results:
            for key, outcome in result.counts.items():
                for name, n in outcome.items():
                    add_count(counts, key, name, n)
        add_count(counts, "*", "tickets_reused", len(reused))
        add_count(counts, "*", "tickets_computed", len(todo))
        rows_out = sum(r.rows for r in results)
        record.rows_out, record.counts, record.model_version = rows_out, counts, manifest.version
        return PredictManifest(
            run_id=ctx.run_id,
            paths=sorted(r.path for r in results if r.path),
            rows=rows_out,
            counts=counts,
            model_name=manifest.name,
            model_version=manifest.version,
            thresholds={
                f: (manifest.fields[f].apply.threshold, manifest.fields[f].suggest.threshold) for f in fields
            },
            suggest_only={f: dict(manifest.fields[f].suggest_only) for f in fields},
            **_tag_rules(manifest),
        )


def _tag_rules(manifest: ModelManifest) -> dict[str, Any]:
    """What decide needs of the tags head (:class:`PredictManifest`'s ``tag_*``), so it reads no manifest."""
    tags = manifest.tags
    if tags is None:
        return {}
    return {
        "tag_thresholds": {t: (tags.apply[t].threshold, tags.suggest[t].threshold) for t in tags.labels},
        "tag_suggest_only": dict(tags.suggest_only),
    }


@dataclass(frozen=True)
class PartJob:
    """One part of a run's tickets to compute, with all a worker needs to write it (no secret):
    ``tickets`` has ``ticket_id``, ``subject``, ``description`` and ``input_hash``, hashed for ``setup``."""

    name: str
    lake: str
    store: str
    version: str
    device: str
    batch_tokens: int
    precision: str
    run_id: str
    partition: datetime
    setup: dict[str, Any]
    tickets: pd.DataFrame


@dataclass(frozen=True)
class PartResult:
    """What a part wrote: its file (``None`` when empty), rows and counts per field."""

    path: str | None
    rows: int
    counts: dict[str, dict[str, int]] = field(default_factory=dict)


#: Computes parts, yielding each one's result as it is done (in any order).
PartRunner = Callable[[Sequence[PartJob]], Iterable[PartResult]]


def predict_part(job: PartJob, engine: InferenceEngine | None = None) -> PartResult:
    """Compute and write one part; without ``engine``, the job's model version as loaded once per process."""
    if engine is None or engine.model_version != job.version:
        engine = InferenceEngine.load(
            job.store,
            job.version,
            device=job.device,
            batch_tokens=job.batch_tokens,
            top_k=DEFAULT_TOP_K,
            precision=cast(Precision, job.precision),
        )
    if inference_setup(engine) != job.setup:  # the input hashes would not describe these outputs
        raise PipelineError(f"this worker runs the model as {inference_setup(engine)}, not {job.setup}")
    hash_of = dict(zip(job.tickets["ticket_id"].astype(int), job.tickets["input_hash"], strict=True))
    predicted = engine.predict_frame(job.tickets[["ticket_id", "subject", "description"]])
    rows = _prediction_rows(predicted, job.run_id, hash_of)
    return _write_part(Lake(job.lake), rows, run_id=job.run_id, partition=job.partition, name=job.name)


def _write_part(
    lake: Lake, rows: list[PredictionRow], *, run_id: str, partition: datetime, name: str
) -> PartResult:
    part = PREDICTIONS.write(lake, rows, date=partition, run_id=run_id, name=name)
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        add_count(counts, row.field, "predicted")
        if row.reused_from_run is not None:
            add_count(counts, row.field, "reused")
    return PartResult(path=part.path if part else None, rows=len(rows), counts=counts)


def _place(location: str) -> str:
    """A lake or store location any process reads alike: a URI as it is, a folder made absolute."""
    return location if "://" in location else str(Path(location).resolve())


def inference_setup(engine: InferenceEngine) -> dict[str, Any]:
    """What besides the model version and the text decides the engine's outputs."""
    return {"precision": engine.precision, "device": engine.model.device.type, "top_k": engine.top_k}


def configured_setup(settings: Settings) -> dict[str, Any]:
    """:func:`inference_setup` of the engine :func:`load_engine` would load, without loading it."""
    model = settings.model
    return {"precision": model.precision, "device": pick_device(model.device).type, "top_k": DEFAULT_TOP_K}


def input_hashes(setup: dict[str, Any], frame: pd.DataFrame) -> list[str]:
    """Per ticket of ``frame`` (``subject``, ``description``), the ``input_hash`` of its prediction."""
    setup_json = json.dumps(setup, sort_keys=True)
    return [
        input_hash(text_hash(ticket_text(s, d)), setup_json)
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
