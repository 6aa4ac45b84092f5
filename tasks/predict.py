"""Predict: the current model over the run's eligible tickets, in chunks, into ``predictions``."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from triage.errors import PipelineError
from triage.lake.runs import utcnow
from triage.lake.tables.predictions import PREDICTIONS, PredictionRow
from triage.lake.tables.tickets import TICKETS
from triage.models.inference import InferenceEngine
from triage.models.store import ModelStore
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
        paths: list[str] = []
        counts: dict[str, dict[str, int]] = {}
        rows = 0
        for start in range(0, len(frame), chunk_rows):
            predicted = engine.predict_frame(frame.iloc[start : start + chunk_rows])
            part_rows = _prediction_rows(predicted, ctx.run_id)
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
            for field in predicted["field"]:
                add_count(counts, str(field), "predicted")
            if on_progress:
                on_progress(min(1.0, (start + chunk_rows) / len(frame)))
        record.rows_out, record.counts, record.model_version = rows, counts, engine.model_version
        return PredictManifest(
            run_id=ctx.run_id,
            paths=paths,
            rows=rows,
            counts=counts,
            model_name=engine.model_name,
            model_version=engine.model_version,
            thresholds={field: engine.thresholds(field) for field in engine.fields},
        )


def _prediction_rows(predicted: pd.DataFrame, run_id: str) -> list[PredictionRow]:
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
            predicted_at=now,
        )
        for row in predicted.itertuples(index=False)
    ]
