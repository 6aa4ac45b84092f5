"""The on-disk model store: one folder per version, and a ``current`` pointer.

Layout under the store root::

    versions/<version>/        model.json, heads.safetensors, encoder/ (transformers), report/
                               (encoder files identical to the previous version's are hard links)
    current.json               {"version", "previous": [...], "reason", "updated_at"}
    encoders/                  base encoders built here (e5-small, see models.encoders)

Version ids sort by creation time (``20261129-210501-ab12cd``, UTC). A version folder is written
under a temporary name and renamed when complete; ``current.json`` is replaced atomically. A newly
registered version becomes current only if it is not worse than the current one: the current model
is evaluated on the candidate's hold-out, and every field both share must reach at least the
current macro-F1 minus a small tolerance. The decision and its reason are kept in the candidate's
``model.json``. ``promote`` and ``rollback`` move the pointer by hand; ``rollback`` returns to the
version that was current before.
"""

from __future__ import annotations

import fcntl
import filecmp
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.classifier import ENCODER_DIR
from models.evaluation import FieldEvaluation, evaluate_field
from models.manifest import MANIFEST_FILE, ModelManifest, Promotion, write_json_atomic

if TYPE_CHECKING:
    from models.training import TrainingResult

VERSIONS_DIR = "versions"
CURRENT_FILE = "current.json"
REPORT_DIR = "report"
PROMOTION_TOLERANCE = 0.005
"""Macro-F1 a candidate may trail the current model by, per field, and still be promoted."""


class StoreError(RuntimeError):
    """The store cannot do what was asked (unknown version, nothing to roll back to ...)."""


@dataclass(frozen=True)
class ModelVersion:
    """One stored version, as :meth:`ModelStore.list` shows it."""

    version: str
    created_at: datetime
    name: str
    base_encoder: str
    fields: list[str]
    metrics: dict[str, dict[str, float | None]]
    """Per field: hold-out ``macro_f1``, ``accuracy`` and the baseline's ``baseline_macro_f1``."""
    is_current: bool
    path: Path
    promotion: Promotion | None = None


def new_version_id(now: datetime | None = None) -> str:
    """``YYYYMMDD-HHMMSS-xxxxxx`` (UTC time, six random hex digits): sortable by creation time."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


class ModelStore:
    """Model versions under ``root``; see the module docstring for the layout and rules."""

    def __init__(self, root: str | Path, *, tolerance: float = PROMOTION_TOLERANCE) -> None:
        self.root = Path(root)
        self.tolerance = tolerance

    # -- reading ---------------------------------------------------------------------------------

    def path(self, version: str) -> Path:
        """The folder of ``version``; :class:`StoreError` if there is no such version."""
        folder = self.root / VERSIONS_DIR / version
        if "/" in version or version.startswith(".") or not (folder / MANIFEST_FILE).is_file():
            raise StoreError(f"no model version {version!r} in {self.root}")
        return folder

    def manifest(self, version: str) -> ModelManifest:
        return ModelManifest.read(self.path(version))

    def list(self) -> list[ModelVersion]:
        """Every complete version, oldest first."""
        folder = self.root / VERSIONS_DIR
        if not folder.is_dir():
            return []
        current = self._pointer().get("version")
        out = []
        for child in folder.iterdir():
            if child.name.startswith(".") or not (child / MANIFEST_FILE).is_file():
                continue
            out.append(_version(ModelManifest.read(child), child, child.name == current))
        # Two versions saved in the same second share their name's time: order by the full timestamp.
        return sorted(out, key=lambda v: (v.created_at, v.version))

    def current(self) -> ModelVersion | None:
        """The current version, or None when nothing was promoted yet."""
        version = self._pointer().get("version")
        if version is None:
            return None
        folder = self.path(version)
        return _version(ModelManifest.read(folder), folder, True)

    # -- writing ---------------------------------------------------------------------------------

    def save(self, result: TrainingResult) -> ModelVersion:
        """Write ``result`` as a new version (model, heads, model.json, evaluation report); not promoted."""
        from models.report import write_report

        created = datetime.now(UTC)
        version = new_version_id(created)
        versions = self.root / VERSIONS_DIR
        versions.mkdir(parents=True, exist_ok=True)
        stored = self.list()
        latest = stored[-1].path if stored else None
        staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=versions))
        try:
            result.model.save(staging)
            if latest is not None:
                share_identical_files(staging / ENCODER_DIR, latest / ENCODER_DIR)
            written = write_report(result.report(version), staging / REPORT_DIR)
            manifest = result.manifest(version, created)
            manifest.report_files = sorted(p.relative_to(staging).as_posix() for p in written.values())
            manifest.write(staging)
            staging.chmod(0o755)
            os.rename(staging, versions / version)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return _version(manifest, versions / version, False)

    def register(self, result: TrainingResult) -> tuple[ModelVersion, bool, str]:
        """Save ``result``, compare it with the current model, promote it if not worse.

        Returns the saved version, whether it became current, and why.
        """
        saved = self.save(result)
        with self._locked():
            current = self.current()
            if current is None:
                promoted, reason, comparison = True, "first model in the store", {}
            else:
                promoted, reason, comparison = self._compare(result, current)
            manifest = ModelManifest.read(saved.path)
            manifest.promotion = Promotion(
                promoted=promoted,
                reason=reason,
                compared_with=current.version if current else None,
                comparison=comparison,
                at=datetime.now(UTC),
            )
            manifest.write(saved.path)
            if promoted:
                self._set_current(saved.version, reason)
        return _version(manifest, saved.path, promoted), promoted, reason

    def promote(self, version: str, reason: str = "promoted by hand") -> ModelVersion:
        """Make ``version`` current (whatever its metrics); the previous current can be rolled back to."""
        folder = self.path(version)
        with self._locked():
            self._set_current(version, reason)
        return _version(ModelManifest.read(folder), folder, True)

    def rollback(self) -> ModelVersion:
        """Make the version that was current before the current one current again."""
        with self._locked():
            pointer = self._pointer()
            previous = list(pointer.get("previous", []))
            while previous and not (self.root / VERSIONS_DIR / previous[-1] / MANIFEST_FILE).is_file():
                previous.pop()  # a deleted version cannot be rolled back to
            if not previous:
                raise StoreError("nothing to roll back to: no earlier current version")
            target = previous.pop()
            self._write_pointer(target, previous, f"rolled back from {pointer.get('version')}")
        folder = self.path(target)
        return _version(ModelManifest.read(folder), folder, True)

    # -- internals -------------------------------------------------------------------------------

    def _compare(
        self, result: TrainingResult, current: ModelVersion
    ) -> tuple[bool, str, dict[str, dict[str, float | None]]]:
        """Evaluate ``current`` on the candidate's hold-out; not worse on every shared field?"""
        lost = sorted(set(current.fields) - set(result.fields))
        if lost:
            return False, f"drops field(s) {lost} that current {current.version} predicts", {}
        theirs = evaluate_current(current.path, result)
        comparison: dict[str, dict[str, float | None]] = {}
        worse = []
        for name, outcome in result.fields.items():
            mine = outcome.evaluation.macro_f1
            other = theirs[name].macro_f1 if name in theirs else None
            comparison[name] = {"candidate_macro_f1": mine, "current_macro_f1": other}
            if other is not None and mine < other - self.tolerance:
                worse.append(f"{name} {mine:.3f} < {other:.3f}")
        summary = ", ".join(
            f"{name} {row['candidate_macro_f1']:.3f} vs {row['current_macro_f1']:.3f}"
            if row["current_macro_f1"] is not None
            else f"{name} {row['candidate_macro_f1']:.3f} (new field)"
            for name, row in comparison.items()
        )
        if worse:
            return (
                False,
                f"worse than current {current.version} on its hold-out beyond tolerance "
                f"{self.tolerance}: {', '.join(worse)}",
                comparison,
            )
        return True, f"not worse than current {current.version} (macro-F1: {summary})", comparison

    def _pointer(self) -> dict[str, Any]:
        """``current.json``; :class:`StoreError` naming it when it is not a pointer."""
        path = self.root / CURRENT_FILE
        if not path.is_file():
            return {}
        try:
            pointer = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            pointer = None
        if not (
            isinstance(pointer, dict)
            and isinstance(pointer.get("version"), str)
            and isinstance(pointer.get("previous", []), list)
            and all(isinstance(v, str) for v in pointer.get("previous", []))
        ):
            raise StoreError(
                f"{path} is not a valid pointer ({{'version': ..., 'previous': [...]}}); "
                "make a version current again with `triage models promote VERSION`"
            )
        return pointer

    def _set_current(self, version: str, reason: str) -> None:
        try:
            pointer = self._pointer()
        except StoreError:  # promoting by hand is how a garbled pointer is repaired
            pointer = {}
        previous = list(pointer.get("previous", []))
        if pointer.get("version") and pointer["version"] != version:
            previous.append(pointer["version"])
        self._write_pointer(version, previous, reason)

    def _write_pointer(self, version: str, previous: list[str], reason: str) -> None:
        write_json_atomic(
            self.root / CURRENT_FILE,
            {
                "version": version,
                "previous": previous,
                "reason": reason,
                "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise pointer updates between processes sharing the store."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def share_identical_files(folder: Path, previous: Path) -> int:
    """Hard-link files of ``folder`` that are byte-identical to the same file in ``previous``.

    A frozen encoder is the same in every version; linking keeps one copy on disk (hundreds of MB
    for e5-small) however many nightly versions are kept. Returns the bytes saved. Where links are
    not possible (another file system), the copy stays.
    """
    saved = 0
    for path in folder.rglob("*"):
        twin = previous / path.relative_to(folder)
        if not path.is_file() or not twin.is_file() or path.stat().st_size != twin.stat().st_size:
            continue
        if not filecmp.cmp(path, twin, shallow=False):
            continue
        link = path.with_name(f".{path.name}.link")
        try:
            os.link(twin, link)
        except OSError:
            continue
        os.replace(link, path)
        saved += path.stat().st_size
    return saved


def evaluate_current(folder: Path, result: TrainingResult) -> dict[str, FieldEvaluation]:
    """The model at ``folder`` scored on ``result``'s hold-out, per field both models predict."""
    from models.inference import InferenceEngine
    from models.training import TEXT

    engine = InferenceEngine.load(
        folder, device=result.config.device, batch_tokens=result.config.batch_tokens
    )
    shared = [name for name in result.fields if name in engine.fields]
    if not shared:
        return {}
    holdout = result.holdout
    predictions = engine.predict(holdout[TEXT].tolist())
    out = {}
    for name in shared:
        labelled = holdout[name].notna().to_numpy()
        out[name] = evaluate_field(
            name,
            holdout[name][labelled].tolist(),
            predictions[name].proba[labelled],
            engine.labels(name),
            target_precision=result.config.target_precision,
            suggest_precision=result.config.suggest_precision,
        )
    return out


def _version(manifest: ModelManifest, folder: Path, is_current: bool) -> ModelVersion:
    return ModelVersion(
        version=manifest.version,
        created_at=manifest.created_at,
        name=manifest.name,
        base_encoder=manifest.classifier.encoder_name,
        fields=list(manifest.fields),
        metrics={
            name: {key: info.metrics.get(key) for key in ("macro_f1", "accuracy", "baseline_macro_f1")}
            for name, info in manifest.fields.items()
        },
        is_current=is_current,
        path=folder,
        promotion=manifest.promotion,
    )
