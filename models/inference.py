"""Batched inference: every triaged field for many tickets in one encoder pass per batch.

Texts are tokenised once, sorted by length and cut into batches under a token budget, padded only
to the longest text of each batch (:mod:`triage.models.batching`), run under ``torch.inference_mode`` with
bf16 autocast on CUDA. On CPU the encoder can run on ONNX Runtime in float32 with fused kernels
(``precision="onnx-float32"``, :mod:`triage.models.onnx_encoder`; checked against torch when loaded),
under bf16 autocast (``precision="bfloat16"``, :mod:`triage.models.bf16_encoder`) or int8
(``precision="int8"``: linear layers quantised dynamically, see
:func:`triage.models.encoders.quantise_int8`); :func:`compare` says whether a path's predictions stay
within :data:`TOLERANCE` of float32. A model folder is loaded once per process (a
small cache keyed by folder, device and precision). Results do not depend on how texts are batched,
beyond float rounding.

Outputs per ticket and field: the top label, its probability, the top-k labels with probabilities,
the model's name and version and the hash of the exact text the model saw.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from triage.lake.tables.predictions import PREDICTIONS
from triage.models.classifier import DEFAULT_BATCH_TOKENS, TriageClassifier, pick_device
from triage.models.loading import Precision, load_cached
from triage.models.manifest import MANIFEST_FILE, ModelManifest
from triage.models.store import ModelStore
from triage.models.store_fs import is_store_uri
from triage.models.tables import iter_table, table_kind
from triage.models.tags import TAGS
from triage.models.text import text_hash, ticket_text

OUTPUT_COLUMNS = [
    "ticket_id",
    "field",
    "label",
    "probability",
    "top_k",
    "model_name",
    "model_version",
    "text_hash",
]


def prediction_schema(ticket_id_type: pa.DataType | None = None) -> pa.Schema:
    """Arrow schema of :meth:`InferenceEngine.predict_parquet` output: the lake's prediction columns.

    ``ticket_id_type`` replaces the lake's int64 where the input's ids are of another type.
    """
    fields = [PREDICTIONS.schema.field(name) for name in OUTPUT_COLUMNS]
    if ticket_id_type is not None:
        fields[0] = pa.field("ticket_id", ticket_id_type, metadata=fields[0].metadata)
    return pa.schema(fields)


@dataclass(frozen=True)
class FieldPredictions:
    """One field's predictions for a list of texts, in input order."""

    field: str
    classes: list[str]
    proba: np.ndarray
    """``(n_texts, len(classes))`` probabilities."""
    top_k: int
    keep: np.ndarray | None = None
    """Per class, the probability from which it is ranked beyond the ``top_k`` (tags: the lower of its
    apply and suggest thresholds, ``inf`` where it has neither); None: the ``top_k`` only."""

    @property
    def labels(self) -> list[str]:
        """The most probable label per text."""
        return [self.classes[i] for i in self.proba.argmax(axis=1)]

    @property
    def probabilities(self) -> np.ndarray:
        """The probability of the most probable label per text."""
        return self.proba.max(axis=1) if len(self.proba) else np.zeros(0)

    def ranked(self) -> list[list[dict[str, float | str]]]:
        """Per text, the ``top_k`` best ``{label, probability}`` and every class at or above its ``keep``,
        best first (ties by label order)."""
        k = min(self.top_k, len(self.classes))
        order = np.argsort(-self.proba, axis=1, kind="stable")
        chosen = np.zeros(order.shape, dtype=bool)
        chosen[:, :k] = True
        if self.keep is not None:
            chosen |= np.take_along_axis(self.proba >= self.keep, order, axis=1)
        return [
            [{"label": self.classes[j], "probability": float(row[j])} for j in best[keep]]
            for row, best, keep in zip(self.proba, order, chosen, strict=True)
        ]


def resolve_model_folder(path_or_store_root: str | Path, version: str | None = None) -> Path:
    """A version folder itself, or a store's ``version`` (default: its current version); a store on object
    storage (``s3://...``) gives the version's local copy, downloaded once."""
    if is_store_uri(path_or_store_root):
        store = ModelStore(path_or_store_root)
    else:
        path = Path(path_or_store_root)
        if (path / MANIFEST_FILE).is_file():
            if version is not None and path.name != version:
                raise ValueError(f"{path} is version {path.name}, not {version}")
            return path
        store = ModelStore(path)
    if version is not None:
        return store.path(version)
    current = store.current()
    if current is None:
        raise FileNotFoundError(f"{store.location} has no current model (train one, or name a version)")
    return store.path(current.version)


@dataclass(frozen=True)
class Tolerance:
    """How far a faster path's predictions may move from float32's."""

    label_agreement: float = 0.995
    """Share of texts whose top label must be the same, per field."""
    probability: float = 0.02
    """Largest allowed absolute difference of any class probability."""


TOLERANCE = Tolerance()


@dataclass(frozen=True)
class Comparison:
    """Predictions of a candidate path against float32 over the same texts."""

    texts: int
    label_agreement: dict[str, float]
    """Per field, the share of texts with the same top label."""
    max_probability_diff: dict[str, float]
    """Per field, the largest absolute difference of any class probability."""
    tolerance: Tolerance = TOLERANCE

    @property
    def within(self) -> bool:
        """Every field within the tolerance."""
        return all(a >= self.tolerance.label_agreement for a in self.label_agreement.values()) and all(
            d <= self.tolerance.probability for d in self.max_probability_diff.values()
        )


def compare(
    reference: dict[str, FieldPredictions],
    candidate: dict[str, FieldPredictions],
    tolerance: Tolerance = TOLERANCE,
) -> Comparison:
    """How far ``candidate`` (e.g. int8) is from ``reference`` (float32), field by field."""
    texts = len(next(iter(reference.values())).proba) if reference else 0
    agreement, diff = {}, {}
    for field, ref in reference.items():
        other = candidate[field].proba
        same = ref.proba.argmax(axis=1) == other.argmax(axis=1)
        agreement[field] = float(same.mean()) if texts else 1.0
        diff[field] = float(np.abs(ref.proba - other).max()) if texts else 0.0
    return Comparison(texts, agreement, diff, tolerance)


class InferenceEngine:
    """Predicts every field of a stored model version. Build with :meth:`load`."""

    def __init__(
        self,
        model: TriageClassifier,
        manifest: ModelManifest,
        *,
        batch_tokens: int = DEFAULT_BATCH_TOKENS,
        top_k: int = 3,
        precision: Precision = "float32",
    ) -> None:
        if batch_tokens < 1 or top_k < 1:
            raise ValueError("batch_tokens and top_k must be positive")
        self.model = model
        self.manifest = manifest
        self.batch_tokens = batch_tokens
        self.top_k = top_k
        self.precision = precision
        """What the encoder runs in on CPU: ``float32``, ``onnx-float32``, ``bfloat16`` or ``int8`` (see
        :meth:`load`)."""

    @classmethod
    def load(
        cls,
        path_or_store_root: str | Path,
        version: str | None = None,
        *,
        device: str = "auto",
        batch_tokens: int = DEFAULT_BATCH_TOKENS,
        top_k: int = 3,
        precision: Precision = "float32",
    ) -> InferenceEngine:
        """The model at a version folder, or a store's ``version`` (default: current); cached per process.

        ``precision="onnx-float32"`` runs the encoder on ONNX Runtime (exported and checked once per
        process, a few seconds); ``"bfloat16"`` runs its matrix products in bf16; ``"int8"`` quantises its
        linear layers. All three are CPU only (on CUDA the engine runs bf16 autocast whatever this says,
        so they are refused there).
        """
        if precision not in get_args(Precision):
            choices = ", ".join(repr(p) for p in get_args(Precision))
            raise ValueError(f"precision must be one of {choices}, not {precision!r}")
        folder = resolve_model_folder(path_or_store_root, version)
        target = pick_device(device)
        if precision != "float32" and target.type != "cpu":
            raise ValueError(f"precision {precision!r} runs on CPU only, not on {target.type}")
        model, manifest = load_cached(folder, target, precision)
        return cls(model, manifest, batch_tokens=batch_tokens, top_k=top_k, precision=precision)

    @property
    def model_name(self) -> str:
        return self.manifest.name

    @property
    def model_version(self) -> str:
        return self.manifest.version

    @property
    def fields(self) -> list[str]:
        return self.model.fields

    def labels(self, field: str) -> list[str]:
        return list(self.manifest.classifier.labels[field])

    def thresholds(self, field: str) -> tuple[float | None, float | None]:
        """The (apply, suggest) confidence thresholds evaluated for ``field`` (None: unreachable)."""
        info = self.manifest.fields[field]
        return info.apply.threshold, info.suggest.threshold

    def suggest_only(self, field: str) -> dict[str, str]:
        """Labels of ``field`` the model may suggest but never apply, with why (too little evidence)."""
        return dict(self.manifest.fields[field].suggest_only)

    def predict(self, texts: Sequence[str]) -> dict[str, FieldPredictions]:
        """Probabilities of every field for ready-made texts (see :func:`triage.models.text.ticket_text`)."""
        proba = self.model.predict_proba(list(texts), batch_tokens=self.batch_tokens)
        out = {
            field: FieldPredictions(field, self.labels(field), proba[field], self.top_k)
            for field in self.fields
        }
        if (
            tags := self.model.config.tags
        ):  # each tag's own probability: the top_k, and every tag decide acts on
            out[TAGS] = FieldPredictions(
                TAGS, list(tags), proba[TAGS], self.top_k, self._tag_thresholds(tags)
            )
        return out

    def _tag_thresholds(self, tags: Sequence[str]) -> np.ndarray:
        """Per tag, the lower of its apply and suggest thresholds (``inf`` where it has neither)."""
        head = self.manifest.tags
        if head is None:
            return np.full(len(tags), np.inf)
        points = ((head.apply[tag].threshold, head.suggest[tag].threshold) for tag in tags)
        return np.array([min((t for t in pair if t is not None), default=np.inf) for pair in points])

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Long format, one row per ticket and field (ticket order, then field order; ``tags`` last).

        ``frame`` has ``ticket_id``, ``subject`` and ``description`` (or ``body``). Columns out:
        ticket_id, field, label, probability, top_k (list of {label, probability}), model_name,
        model_version, text_hash.
        """
        body = "description" if "description" in frame.columns else "body"
        missing = [c for c in ("ticket_id", "subject", body) if c not in frame.columns]
        if missing:
            raise ValueError(f"predict_frame needs columns {missing}; the frame has {list(frame.columns)}")
        texts = [ticket_text(s, d) for s, d in zip(frame["subject"], frame[body], strict=True)]
        hashes = [text_hash(t) for t in texts]
        predictions = self.predict(texts)
        n, fields = len(texts), list(predictions)
        ranked = {field: predictions[field].ranked() for field in fields}
        return pd.DataFrame(
            {
                "ticket_id": np.repeat(frame["ticket_id"].to_numpy(), len(fields)),
                "field": fields * n,
                "label": [predictions[f].labels[i] for i in range(n) for f in fields],
                "probability": np.array(
                    [predictions[f].probabilities[i] for i in range(n) for f in fields], dtype=np.float64
                ),
                "top_k": [ranked[f][i] for i in range(n) for f in fields],
                "model_name": self.model_name,
                "model_version": self.model_version,
                "text_hash": [h for h in hashes for _ in fields],
            },
            columns=OUTPUT_COLUMNS,
        )

    def predict_parquet(self, src: str | Path, dst: str | Path, *, chunk_rows: int = 2000) -> int:
        """Stream a CSV or Parquet file of tickets through :meth:`predict_frame` into a Parquet file.

        Reads and predicts ``chunk_rows`` tickets at a time, so memory stays bounded whatever the
        file size. ``dst`` is written to a temporary file and renamed when complete. Returns the
        number of prediction rows written.
        """
        src, dst = Path(src), Path(dst)
        columns = ["ticket_id", "subject", _body_column(src)]
        schema = prediction_schema(_ticket_id_type(src))
        dst.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent)
        os.close(fd)
        written = 0
        try:
            with pq.ParquetWriter(tmp, schema) as writer:
                for chunk in iter_table(src, chunk_rows, columns=columns):
                    rows = self.predict_frame(chunk)
                    writer.write_table(pa.Table.from_pandas(rows, schema=schema, preserve_index=False))
                    written += len(rows)
            os.replace(tmp, dst)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return written


def _body_column(src: Path) -> str:
    names = _column_names(src)
    for required in ("ticket_id", "subject"):
        if required not in names:
            raise ValueError(f"{src} has no {required!r} column (columns: {names})")
    if "description" in names:
        return "description"
    if "body" in names:
        return "body"
    raise ValueError(f"{src} has neither a 'description' nor a 'body' column (columns: {names})")


def _column_names(src: Path) -> list[str]:
    if table_kind(src) == "csv":
        return list(next(iter_table(src, 1)).columns)
    return pq.read_schema(src).names


def _ticket_id_type(src: Path) -> pa.DataType:
    """Parquet keeps its ticket_id type; CSV ids are read as text."""
    if table_kind(src) == "csv":
        return pa.string()
    return pq.read_schema(src).field("ticket_id").type
