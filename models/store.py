"""The on-disk model store: one folder per version, and a ``current`` pointer.

Layout under the store root::

    versions/<version>/        model.json, heads.safetensors, encoder/ (transformers), report/
                               (encoder files identical to the previous version's are hard links)
    current.json               {"version", "previous": [...], "reason", "updated_at"}
    encoders/                  base encoders built here (e5-small, see triage.models.encoders)

Version ids sort by creation time (``20261129-210501-ab12cd``, UTC). A version folder is written
under a temporary name and renamed when complete; ``current.json`` is replaced atomically.

The store may also live on object storage (``s3://bucket/prefix``, the same layout): see
:mod:`triage.models.store_fs` for how a version appears whole and the pointer moves atomically there,
and for the local cache a worker loads versions from (:meth:`ModelStore.path` downloads a version once).

A newly registered version becomes current only if it is not worse than the current one on tickets
neither model trained on: the candidate's hold-out tickets resolved after the current model's
training cutoff (both recorded in ``model.json``), or, for data without times, its whole hold-out
when both trained on the same tickets. Every field both predict needs at least ``min_tickets``
such labelled tickets (else nothing is promoted automatically), must reach the current macro-F1
minus a small tolerance, and must keep an apply threshold where the current model has one. Where both
have a tags head, its micro-F1 and the precision of the tags it would add must not be worse beyond the
tolerance and beyond noise (a paired bootstrap interval of the difference wholly below zero), and it
must keep some tag it may add where the current one has one (:func:`triage.models.tags.compare_tags`);
a candidate without the current one's tags head is kept back, and a new tags head is named. The
decision, its reason and a fingerprint of the tickets scored are kept in the candidate's
``model.json``. ``promote`` and ``rollback`` move the pointer by hand; ``rollback`` returns to the
version that was current before.
"""

from __future__ import annotations

import builtins
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

import numpy as np
import pandas as pd
from pydantic import ValidationError

from triage.errors import TriageError
from triage.models.classifier import ENCODER_DIR, TriageClassifier, pick_device
from triage.models.evaluation import FieldEvaluation, apply_gap, evaluate_field
from triage.models.loading import load_cached
from triage.models.manifest import (
    MANIFEST_FILE,
    ModelFolderError,
    ModelManifest,
    Promotion,
    ScoredOn,
    keys_sha256,
    write_json_atomic,
)
from triage.models.store_fs import RemoteFiles, is_store_uri
from triage.models.tags import TAGS, compare_tags

if TYPE_CHECKING:
    from triage.models.training_config import TrainConfig
    from triage.models.training_result import TrainingResult

VERSIONS_DIR = "versions"
CURRENT_FILE = "current.json"
REPORT_DIR = "report"
PROMOTION_TOLERANCE = 0.005
"""Macro-F1 a candidate may trail the current model by, per field, and still be promoted."""
MIN_PROMOTION_TICKETS = 50
"""Fewest labelled tickets per field, trained on by neither model, that a promotion compares on."""


class StoreError(TriageError, RuntimeError):
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
    """The version's folder; for a store on object storage, where this machine keeps (or will keep) its
    download (:meth:`ModelStore.path` fetches it)."""
    promotion: Promotion | None = None
    tags: dict[str, float | None] | None = None
    """The tags head's hold-out ``micro_f1``, ``macro_f1`` and the baseline's; None: no tags head."""


def new_version_id(now: datetime | None = None) -> str:
    """``YYYYMMDD-HHMMSS-xxxxxx`` (UTC time, six random hex digits): sortable by creation time."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


class ModelStore:
    """Model versions under ``root`` (a folder, or an ``s3://`` URI whose versions are downloaded to
    ``cache``, by default :func:`~triage.models.store_fs.default_cache`); see the module docstring."""

    def __init__(
        self,
        root: str | Path,
        *,
        tolerance: float = PROMOTION_TOLERANCE,
        min_tickets: int = MIN_PROMOTION_TICKETS,
        cache: Path | None = None,
    ) -> None:
        self.remote = RemoteFiles(str(root), cache) if is_store_uri(root) else None
        self.root = self.remote.cache if self.remote is not None else Path(root)
        """The local folder: the store itself, or this machine's cache of a store on object storage."""
        self.location = self.remote.uri if self.remote is not None else str(self.root)
        self.tolerance = tolerance
        self.min_tickets = min_tickets

    # -- reading ---------------------------------------------------------------------------------

    def path(self, version: str) -> Path:
        """The folder of ``version``; :class:`StoreError` if there is no such version.

        On object storage: the local copy, downloaded once (a complete version never changes).
        """
        folder = self.root / VERSIONS_DIR / version
        if not self._exists(version):
            raise StoreError(f"no model version {version!r} in {self.location}")
        if self.remote is not None and not (folder / MANIFEST_FILE).is_file():
            latest = self._latest_cached()
            self.remote.download((VERSIONS_DIR, version), folder)
            if latest is not None:  # one copy of an unchanged encoder in the cache too
                share_identical_files(folder / ENCODER_DIR, latest / ENCODER_DIR)
        return folder

    def location_of(self, version: str) -> str:
        """Where ``version`` lives, for people: its folder, or its URI on object storage."""
        if self.remote is not None:
            return self.remote.url(VERSIONS_DIR, version)
        return str(self.path(version).resolve())

    def manifest(self, version: str) -> ModelManifest:
        if self.remote is None:
            return ModelManifest.read(self.path(version))
        manifest = self._remote_manifest(version) if self._valid(version) else None
        if manifest is None:
            raise StoreError(f"no model version {version!r} in {self.location}")
        return manifest

    def list(self) -> list[ModelVersion]:
        """Every complete version, oldest first."""
        if self.remote is not None:
            current = self._pointer().get("version")
            found = []
            for name in self.remote.folders(VERSIONS_DIR):
                if not self._valid(name) or (manifest := self._remote_manifest(name)) is None:
                    continue  # an upload cut off before its model.json: not a version
                found.append(_version(manifest, self.root / VERSIONS_DIR / name, name == current))
            return sorted(found, key=lambda v: (v.created_at, v.version))
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

    def current_version(self) -> str | None:
        """The current version's id (``current.json`` only, no manifest read), or None when there is none."""
        version = self._pointer().get("version")
        return str(version) if version is not None else None

    def current(self) -> ModelVersion | None:
        """The current version, or None when nothing was promoted yet."""
        version = self.current_version()
        if version is None:
            return None
        if self.remote is not None:
            return _version(self.manifest(version), self.root / VERSIONS_DIR / version, True)
        folder = self.path(version)
        return _version(ModelManifest.read(folder), folder, True)

    # -- writing ---------------------------------------------------------------------------------

    def save(self, result: TrainingResult) -> ModelVersion:
        """Write ``result`` as a new version (model, heads, model.json, evaluation report); not promoted."""
        from triage.models.report import write_report

        created = datetime.now(UTC)
        version = new_version_id(created)
        versions = self.root / VERSIONS_DIR
        versions.mkdir(parents=True, exist_ok=True)
        if self.remote is None:
            stored = self.list()
            latest = stored[-1].path if stored else None
        else:
            latest = self._latest_cached()
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
            if self.remote is not None:  # files first, model.json last: visible only when complete
                self.remote.upload(staging, (VERSIONS_DIR, version), last=MANIFEST_FILE)
            os.rename(staging, versions / version)  # on object storage: this machine's cached copy
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
                promotion = Promotion(promoted=True, reason="first model in the store", at=datetime.now(UTC))
            else:
                promotion = self._compare(result, saved, current)
            warnings = [warning for o in result.fields.values() if (warning := o.apply_warning)]
            if result.tags is not None and (warning := result.tags.apply_warning):
                warnings.append(warning)
            if warnings:  # on the candidate's own hold-out
                promotion.reason += "; WARNING " + "; ".join(warnings)
            promoted, reason = promotion.promoted, promotion.reason
            manifest = self.manifest(saved.version)
            manifest.promotion = promotion
            self._write_manifest(saved.version, manifest)
            if promoted:
                self._set_current(saved.version, reason)
        return _version(manifest, saved.path, promoted), promoted, reason

    def promote(self, version: str, reason: str = "promoted by hand") -> ModelVersion:
        """Make ``version`` current (whatever its metrics); the previous current can be rolled back to."""
        if not self._exists(version):
            raise StoreError(f"no model version {version!r} in {self.location}")
        with self._locked():
            self._set_current(version, reason)
        return _version(self.manifest(version), self.root / VERSIONS_DIR / version, True)

    def rollback(self) -> ModelVersion:
        """Make the version that was current before the current one current again."""
        with self._locked():
            pointer = self._pointer()
            previous = list(pointer.get("previous", []))
            while previous and not self._exists(previous[-1]):
                previous.pop()  # a deleted version cannot be rolled back to
            if not previous:
                raise StoreError("nothing to roll back to: no earlier current version")
            target = previous.pop()
            self._write_pointer(target, previous, f"rolled back from {pointer.get('version')}")
        return _version(self.manifest(target), self.root / VERSIONS_DIR / target, True)

    # -- internals -------------------------------------------------------------------------------

    def _compare(self, result: TrainingResult, saved: ModelVersion, current: ModelVersion) -> Promotion:
        """Score candidate and ``current`` on tickets neither trained on; promote if not worse."""
        at, version = datetime.now(UTC), saved.version
        theirs_manifest = self.manifest(current.version)
        lost = sorted(set(current.fields) - set(result.fields))
        drops = [f"field(s) {lost}"] if lost else []
        if theirs_manifest.tags is not None and result.tags is None:
            why = result.skipped_fields.get(TAGS, "not asked for: model.train_options {tags: true}")
            drops.append(f"the tags head ({why})")
        if drops:
            reason = f"drops {' and '.join(drops)} that current {current.version} predicts"
            return Promotion(promoted=False, reason=reason, compared_with=current.version, at=at)
        tickets, rule = promotion_tickets(result, theirs_manifest)
        key = result.training_set.key
        scored_on = ScoredOn(rule=rule, key=key, count=len(tickets), sha256=keys_sha256(tickets[key]))
        shared = [name for name in result.fields if name in current.fields]
        counts = {name: int(tickets[name].notna().sum()) for name in shared}
        if min(counts.values()) < self.min_tickets:
            reason = (
                f"not compared with current {current.version}: too few tickets neither model trained on "
                f"({rule}): {', '.join(f'{name} {n}' for name, n in counts.items())} labelled, at least "
                f"{self.min_tickets} needed per field. Check the report and promote it deliberately "
                f"(`triage models promote {version}`), or retrain when more tickets are resolved"
            )
            return Promotion(
                promoted=False, reason=reason, compared_with=current.version, scored_on=scored_on, at=at
            )
        mine, my_tags = score_version(result.model, tickets, shared, result.config)
        theirs, their_tags = score_version(self.path(current.version), tickets, shared, result.config)
        comparison: dict[str, dict[str, float | None]] = {}
        worse, gaps = [], []
        for name, outcome in result.fields.items():
            if name not in shared:
                comparison[name] = {
                    "candidate_macro_f1": outcome.evaluation.macro_f1,
                    "current_macro_f1": None,
                }
                continue
            new, old = mine[name], theirs[name]
            comparison[name] = {
                "candidate_macro_f1": new.macro_f1,
                "current_macro_f1": old.macro_f1,
                "candidate_apply_coverage": new.apply_coverage,
                "current_apply_coverage": old.apply_coverage,
                "tickets": new.n,
            }
            if new.macro_f1 < old.macro_f1 - self.tolerance:
                worse.append(f"{name} {new.macro_f1:.3f} < {old.macro_f1:.3f}")
            if gap := apply_gap(new, old, f"current {current.version}"):
                gaps.append(gap)
        tags_row, tag_problems, tags_note = self._compare_tags(
            result, theirs_manifest, tickets, my_tags, their_tags
        )
        if tags_row is not None:
            comparison[TAGS] = tags_row
        gaps += tag_problems
        on = f"on {len(tickets)} tickets neither trained on ({rule})"
        beyond = f"worse than current {current.version} beyond tolerance {self.tolerance}"
        problems = ([f"{beyond}: {', '.join(worse)}"] if worse else []) + gaps
        if problems:
            reason = f"{'; '.join(problems)} {on}{tags_note}"
            promoted = False
        else:
            summary = ", ".join(
                f"{name} {row['candidate_macro_f1']:.3f} vs {row['current_macro_f1']:.3f}"
                if row["current_macro_f1"] is not None
                else f"{name} {row['candidate_macro_f1']:.3f} (new field)"
                for name, row in comparison.items()
                if name != TAGS
            )
            reason = f"not worse than current {current.version} {on} (macro-F1: {summary}){tags_note}"
            promoted = True
        return Promotion(
            promoted=promoted,
            reason=reason,
            compared_with=current.version,
            comparison=comparison,
            scored_on=scored_on,
            at=at,
        )

    def _compare_tags(
        self,
        result: TrainingResult,
        current: ModelManifest,
        tickets: pd.DataFrame,
        mine: np.ndarray | None,
        theirs: np.ndarray | None,
    ) -> tuple[dict[str, float | None] | None, builtins.list[str], str]:
        """The tags heads' probabilities ``mine`` and ``theirs`` on ``tickets``: the comparison's ``tags`` row
        (None: not compared), why the candidate's are worse, and a note for the reason."""
        if result.tags is None or mine is None:
            return None, [], ""
        if current.tags is None or theirs is None:
            micro_f1 = result.tags.evaluation.micro_f1
            return (
                None,
                [],
                f"; tags: a new head (current has none), micro-F1 {micro_f1:.3f} on its own hold-out",
            )
        tags = compare_tags(tickets[TAGS].tolist(), (result.tags.manifest(), mine), (current.tags, theirs))
        problems = tags.problems(self.tolerance, f"current {current.version}")
        return tags.to_dict(), problems, "" if problems else f"; {tags.summary()}"

    def _exists(self, version: str) -> bool:
        """Whether ``version`` is a complete version of the store (its ``model.json`` written)."""
        if not self._valid(version):
            return False
        if self.remote is not None:
            return self.remote.exists(VERSIONS_DIR, version, MANIFEST_FILE)
        return (self.root / VERSIONS_DIR / version / MANIFEST_FILE).is_file()

    def _latest_cached(self) -> Path | None:
        """Object storage: the newest version this machine holds a copy of (names sort by creation time)."""
        folder = self.root / VERSIONS_DIR
        held = [c for c in folder.iterdir() if self._valid(c.name)] if folder.is_dir() else []
        return max(held, key=lambda c: c.name, default=None)

    @staticmethod
    def _valid(version: str) -> bool:
        return bool(version) and "/" not in version and not version.startswith(".")

    def _remote_manifest(self, version: str) -> ModelManifest | None:
        """A version's ``model.json`` on object storage; None while there is none (not yet complete)."""
        assert self.remote is not None
        try:
            return self.remote.read(
                VERSIONS_DIR, version, MANIFEST_FILE, parse=ModelManifest.model_validate_json
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(top level)"
            url = self.remote.url(VERSIONS_DIR, version, MANIFEST_FILE)
            raise ModelFolderError(f"{url}: not a valid model manifest ({where}: {first['msg']})") from None

    def _write_manifest(self, version: str, manifest: ModelManifest) -> None:
        folder = self.root / VERSIONS_DIR / version
        if self.remote is not None:
            data = manifest.model_dump_json(indent=2).encode() + b"\n"
            self.remote.write(data, VERSIONS_DIR, version, MANIFEST_FILE)
            if not (folder / MANIFEST_FILE).is_file():
                return
        manifest.write(folder)

    def _pointer(self) -> dict[str, Any]:
        """``current.json``; :class:`StoreError` naming it when it is not a pointer."""
        path = self.root / CURRENT_FILE
        if self.remote is not None:
            name = self.remote.url(CURRENT_FILE)
            try:
                pointer = self.remote.read(CURRENT_FILE, parse=_pointer_json)
                if pointer is None:
                    return {}
            except (UnicodeDecodeError, json.JSONDecodeError):
                pointer = None
        elif not path.is_file():
            return {}
        else:
            name = str(path)
            try:
                pointer = _pointer_json(path.read_bytes())
            except (UnicodeDecodeError, json.JSONDecodeError):
                pointer = None
        if not (
            isinstance(pointer, dict)
            and isinstance(pointer.get("version"), str)
            and isinstance(pointer.get("previous", []), list)
            and all(isinstance(v, str) for v in pointer.get("previous", []))
        ):
            raise StoreError(
                f"{name} is not a valid pointer ({{'version': ..., 'previous': [...]}}); "
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

    def _write_pointer(self, version: str, previous: builtins.list[str], reason: str) -> None:
        pointer = {
            "version": version,
            "previous": previous,
            "reason": reason,
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        if self.remote is not None:  # one PUT replaces the key whole (see triage.models.store_fs)
            data = json.dumps(pointer, indent=2, ensure_ascii=False) + "\n"
            self.remote.write(data.encode("utf-8"), CURRENT_FILE)
        else:
            write_json_atomic(self.root / CURRENT_FILE, pointer)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise pointer updates between processes sharing the store (on object storage: between the
        processes of this machine; see :mod:`triage.models.store_fs`)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _pointer_json(data: bytes) -> Any:
    return json.loads(data.decode("utf-8"))


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


def promotion_tickets(result: TrainingResult, current: ModelManifest) -> tuple[pd.DataFrame, str]:
    """The candidate's hold-out tickets that neither it nor ``current`` trained on, and the rule.

    Outside the candidate's training set by key (ticket id, or text hash), and resolved after the
    current model's training cutoff; for data without times, the whole hold-out only when both
    trained on the same tickets (same fingerprint). Otherwise none: the rule says why.
    """
    from triage.models.training import TIME

    holdout = result.holdout
    mine, theirs = result.training_set, current.training.training_set
    fresh = ~holdout[mine.key].isin(result.train_keys)
    if theirs is None:
        return holdout.iloc[:0], (
            f"current {current.version} records no training set in its model.json "
            "(trained before promotion compared on fresh tickets)"
        )
    if theirs.cutoff is not None and TIME in holdout.columns:
        fresh &= (holdout[TIME] > pd.Timestamp(theirs.cutoff)).to_numpy()
        rule = f"resolved after current's training cutoff {theirs.cutoff:%Y-%m-%d %H:%M:%S %Z}"
    elif (theirs.key, theirs.sha256) == (mine.key, mine.sha256):
        rule = "the candidate's hold-out; both trained on the same tickets"
    else:
        missing = "current's training data" if theirs.cutoff is None else "the candidate's training data"
        return holdout.iloc[:0], (
            f"{missing} had no {TIME} column and the two trained on different tickets, so no ticket is "
            f"known to be new to current {current.version}; train on tables with {TIME} and ticket_id"
        )
    return holdout[fresh].reset_index(drop=True), rule


def score_version(
    model: Path | TriageClassifier, tickets: pd.DataFrame, fields: list[str], config: TrainConfig
) -> tuple[dict[str, FieldEvaluation], np.ndarray | None]:
    """A model (a version folder, or one in memory) scored on ``tickets``' labelled rows, per field; and
    its tags head's probabilities on every ticket (None: it has none)."""
    from triage.models.training import TEXT

    if isinstance(model, Path):
        model, _ = load_cached(model, pick_device(config.device))
    proba = model.predict_proba(tickets[TEXT].tolist(), batch_tokens=config.batch_tokens)
    out = {}
    for name in fields:
        labelled = tickets[name].notna().to_numpy()
        out[name] = evaluate_field(
            name,
            tickets[name][labelled].tolist(),
            proba[name][labelled],
            model.config.labels[name],
            target_precision=config.target_precision,
            suggest_precision=config.suggest_precision,
        )
    return out, proba.get(TAGS)


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
        tags=dict(manifest.tags.metrics) if manifest.tags is not None else None,
    )
