"""``triage train``, ``triage predict`` and ``triage models list|promote|rollback``.

Defaults come from the ``model`` section of config.yml (and its environment overrides); options
given on the command line win. Heavy modules (torch, transformers) are imported inside commands.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer

from triage.cli.app import app
from triage.cli.options import (
    ConfigOption,
    StoreOption,
    command_line,
    field_columns,
    settings_or_exit,
    split_list,
    store_root,
)

if TYPE_CHECKING:
    from triage.models.store import ModelVersion

models_app = typer.Typer(help="Stored model versions: list, promote, roll back.", no_args_is_help=True)
app.add_typer(models_app, name="models")

VersionOption = Annotated[str | None, typer.Option("--version", help="Model version (default: current).")]


@app.command("train")
def train_command(
    ctx: typer.Context,
    data: Annotated[Path, typer.Argument(help="Labelled tickets (CSV or Parquet).")],
    fields: Annotated[
        str | None,
        typer.Option(
            "--fields",
            help="Comma-separated fields (default: the enabled fields whose label column the file has).",
        ),
    ] = None,
    label_column: Annotated[
        list[str] | None,
        typer.Option("--label-column", help="FIELD=COLUMN where they differ, e.g. group=queue (repeatable)."),
    ] = None,
    text_columns: Annotated[
        str,
        typer.Option("--text-columns", help="Comma-separated text columns (description falls back to body)."),
    ] = "subject,description",
    encoder: Annotated[
        str | None, typer.Option("--encoder", help="minilm, e5-small or a local model folder.")
    ] = None,
    head: Annotated[
        str,
        typer.Option(
            "--head",
            help="hybrid (embedding + hashed TF-IDF) or linear (embedding only); both add the memory.",
        ),
    ] = "hybrid",
    test_data: Annotated[
        Path | None, typer.Option("--test-data", help="Hold-out file (default: a stratified split of DATA).")
    ] = None,
    slice_column: Annotated[
        str | None, typer.Option("--slice-column", help="Also evaluate each value of this column (language).")
    ] = None,
    max_length: Annotated[int | None, typer.Option("--max-length", help="Tokens per ticket.")] = None,
    min_examples: Annotated[
        int | None,
        typer.Option(
            "--min-examples", help="Fewest training rows a class needs to be applied (learned from 2)."
        ),
    ] = None,
    test_size: Annotated[float, typer.Option("--test-size", help="Hold-out share.")] = 0.2,
    seed: Annotated[int | None, typer.Option("--seed", help="Split and training seed.")] = None,
    fine_tune: Annotated[
        bool | None, typer.Option("--fine-tune/--frozen", help="Also train the encoder (for a GPU).")
    ] = None,
    embedding_cache: Annotated[
        Path | None,
        typer.Option(
            "--embedding-cache", help="Frozen embeddings by text hash (default: <store>/embedding-cache)."
        ),
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Model name (default: encoder+head).")] = None,
    store: StoreOption = None,
    promote: Annotated[
        bool,
        typer.Option("--promote/--no-promote", help="Make it current if not worse than the current model."),
    ] = True,
    report_dir: Annotated[
        Path | None, typer.Option("--report-dir", help="Also write the evaluation report here.")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Train a model on labelled tickets, evaluate it beside the baseline and store it."""
    from triage.models.encoders import EncoderNotAvailableError
    from triage.models.progress import phase
    from triage.models.report import write_report
    from triage.models.store import ModelStore
    from triage.models.store_fs import local_root
    from triage.models.tables import read_table
    from triage.models.training import TrainingError, train
    from triage.models.training_config import EMBEDDING_CACHE_DIR, TrainConfig

    settings = settings_or_exit(config)
    root = store_root(config, store)
    columns = field_columns(label_column or [])
    overrides: dict[str, Any] = {
        "label_columns": columns,
        "text_columns": split_list(text_columns),
        "store_root": local_root(root),
        "head": head,
        "test_size": test_size,
        "embedding_cache": embedding_cache or local_root(root) / EMBEDDING_CACHE_DIR,
        "name": name,
    }
    optional = {
        "base_encoder": encoder,
        "max_length": max_length,
        "min_examples_per_class": min_examples,
        "seed": seed,
        "fine_tune": fine_tune,
    }
    overrides.update({k: v for k, v in optional.items() if v is not None})
    shown = TerminalProgress()
    try:
        frame = read_table(data)
        chosen, absent = _fields_in_file(
            list(frame.columns),
            data,
            split_list(fields) if fields else None,
            columns,
            settings.enabled_fields(),
        )
        train_config = TrainConfig.from_settings(settings, fields=chosen, **overrides)
        test_frame = read_table(test_data) if test_data else None
        named = ", ".join(f if columns.get(f, f) == f else f"{f} (column {columns[f]})" for f in chosen)
        note = f" (no column for {', '.join(absent)}; see --label-column)" if absent else ""
        typer.echo(f"training {named} on {len(frame)} rows from {data}{note} ...")
        result = train(frame, train_config, slice_column=slice_column, test_frame=test_frame, progress=shown)
        result.command = command_line(ctx)
        result.dataset_name = data.name + (f" (test: {test_data.name})" if test_data else "")
        model_store = ModelStore(root)
        with phase(shown, "saving"):  # the model, its evaluation report and (with --promote) the comparison
            if promote:
                version, promoted, reason = model_store.register(result)
            else:
                version, promoted, reason = model_store.save(result), False, "not promoted (--no-promote)"
    except (TrainingError, EncoderNotAvailableError, FileNotFoundError, ValueError) as exc:
        shown.close()
        typer.echo(f"cannot train: {exc}", err=True)
        raise typer.Exit(1) from None

    for field, outcome in result.fields.items():
        model, baseline = outcome.evaluation, outcome.baseline
        verdict = "beats" if model.macro_f1 > baseline.macro_f1 else "does NOT beat"
        typer.echo(
            f"{field:<12} macro-F1 {model.macro_f1:.3f} (baseline {baseline.macro_f1:.3f}: {verdict} it)  "
            f"apply >= {_fmt(model.apply_threshold)} covers {model.apply_coverage:.0%}"
        )
        if outcome.excluded_classes:
            typer.echo(f"{'':<12} left out as too rare: {outcome.excluded_classes}")
        if outcome.apply_warning:
            typer.echo(f"{'':<12} WARNING {outcome.apply_warning}")
    if result.tags is not None:
        tags = result.tags
        added = [tag for tag in tags.tags if tag not in tags.suggest_only]
        typer.echo(
            f"{'tags':<12} micro-F1 {tags.evaluation.micro_f1:.3f} (baseline {tags.baseline.micro_f1:.3f}); "
            f"{len(added)} of {len(tags.tags)} tags may be added: {', '.join(added) or 'none'}"
        )
    for field, why in result.skipped_fields.items():
        typer.echo(f"{field:<12} not trained: {why}")
    typer.echo(f"version {version.version} saved in {version.path}")
    typer.echo(("promoted: " if promoted else "not promoted: ") + reason)
    if report_dir is not None:
        with phase(shown, "report"):
            paths = write_report(result.report(version.version), report_dir)
        typer.echo(f"report: {paths['html']}")
    shown.summary()


class TerminalProgress:
    """Training's phases (:class:`triage.models.progress.Progress`) in the terminal.

    Where stdout is a terminal: a bar per phase with its steps (``i/n``), the elapsed time and an
    estimate of the phase's remaining time, and at the end one line per phase with its seconds.
    Elsewhere (a log file, a pipe) only one line as each phase starts and one as it ends, with its
    seconds.
    """

    def __init__(self, out: TextIO | None = None, *, tty: bool | None = None, redraw_s: float = 0.1) -> None:
        self.out, self.redraw_s = out or sys.stdout, redraw_s
        self.tty = self.out.isatty() if tty is None else tty
        self.seconds: dict[str, float] = {}
        self.bar: Any = None  # a tqdm bar (tqdm ships no types)
        self.began = time.perf_counter()

    def started(self, phase: str, total: int) -> None:
        if not self.tty:
            typer.echo(f"{phase} ...", file=self.out)
            return
        from tqdm import tqdm  # type: ignore[import-untyped]

        self.close()
        self.bar = tqdm(
            total=total or None,
            desc=f"{phase:<14}",
            file=self.out,
            leave=False,
            # the terminal's size, 80 x 24 where it reports 0 x 0 (tqdm would then draw nothing)
            ncols=min(shutil.get_terminal_size().columns, 120),
            nrows=shutil.get_terminal_size().lines,
            mininterval=self.redraw_s,
            bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed} elapsed, ~{remaining} left]",
        )

    def advanced(self, phase: str, done: int, total: int) -> None:
        if self.bar is None:
            return
        if self.bar.total != total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)

    def finished(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds
        self.close()
        if not self.tty:
            typer.echo(f"{phase} done in {seconds:.1f} s", file=self.out)

    def close(self) -> None:
        """Remove a running bar (also when training fails, so the error is not drawn over)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def summary(self) -> None:
        """In a terminal, one line per phase with its seconds (elsewhere the phases' lines said it)."""
        if not self.tty or not self.seconds:
            return
        total = time.perf_counter() - self.began
        typer.echo(f"phases ({total:.1f} s in all):", file=self.out)
        for name, seconds in self.seconds.items():
            typer.echo(f"  {name:<14} {seconds:8.1f} s", file=self.out)


def _fields_in_file(
    columns: list[str], data: Path, asked: list[str] | None, label_columns: dict[str, str], known: list[str]
) -> tuple[list[str], list[str]]:
    """The fields to train, and the known ones left out because ``data`` has no column for them.

    ``asked`` (``--fields``) and every field given a ``--label-column`` must have their column; by
    default every known field (enabled in the settings, or given a column) whose column the file has.
    Raises :class:`~triage.models.training.TrainingError` (one line, naming the file's columns) otherwise.
    """
    from triage.models.training import TrainingError

    column = lambda name: label_columns.get(name, name)  # noqa: E731
    has = f"{data.name} (its columns: {', '.join(columns)})"
    lacking = [f for f in (asked if asked is not None else label_columns) if column(f) not in columns]
    if lacking:
        named = ", ".join(f"{column(f)!r} for field {f}" for f in lacking)
        raise TrainingError(f"no column {named} in {has}; --label-column FIELD=COLUMN names another")
    if asked is not None:
        return asked, []
    candidates = list(dict.fromkeys([*known, *label_columns]))
    present = [f for f in candidates if column(f) in columns]
    if not present:
        raise TrainingError(
            f"no label column for {', '.join(candidates)} in {has}; "
            "name the one a field is in with --label-column group=COLUMN"
        )
    return present, [f for f in candidates if f not in present]


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


@app.command("predict")
def predict_command(
    source: Annotated[
        Path, typer.Argument(help="Tickets (CSV or Parquet): ticket_id, subject, description.")
    ],
    output: Annotated[Path, typer.Argument(help="Parquet file to write, one row per ticket and field.")],
    version: VersionOption = None,
    store: StoreOption = None,
    chunk_rows: Annotated[
        int, typer.Option("--chunk-rows", help="Tickets read and predicted at a time.")
    ] = 2000,
    top_k: Annotated[int, typer.Option("--top-k", help="Best labels kept per field.")] = 3,
    device: Annotated[str | None, typer.Option("--device", help="auto, cpu or cuda.")] = None,
    config: ConfigOption = None,
) -> None:
    """Predict every field of a stored model for a file of tickets (streamed in chunks)."""
    from triage.models.inference import InferenceEngine
    from triage.models.store import StoreError

    settings = settings_or_exit(config)
    root = store_root(config, store)
    try:
        engine = InferenceEngine.load(
            root,
            version,
            device=device or settings.model.device,
            batch_tokens=settings.model.batch_tokens,
            top_k=top_k,
            precision=settings.model.precision,
        )
        rows = engine.predict_parquet(source, output, chunk_rows=chunk_rows)
    except (StoreError, FileNotFoundError, ValueError) as exc:
        typer.echo(f"cannot predict: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{rows} predictions ({', '.join(engine.fields)}) by {engine.model_version} -> {output}")


def _describe(version: ModelVersion) -> str:
    scores = ", ".join(
        f"{field} {metrics['macro_f1']:.3f}/{metrics['baseline_macro_f1']:.3f}"
        for field, metrics in version.metrics.items()
        if metrics.get("macro_f1") is not None and metrics.get("baseline_macro_f1") is not None
    )
    tags = version.tags or {}
    if tags.get("micro_f1") is not None and tags.get("baseline_micro_f1") is not None:
        scores += f"; tags micro-F1 {tags['micro_f1']:.3f}/{tags['baseline_micro_f1']:.3f}"
    marker = "*" if version.is_current else " "
    return f"{marker} {version.version}  {version.name:<28} macro-F1 model/baseline: {scores}"


@models_app.command("list")
def list_command(store: StoreOption = None, config: ConfigOption = None) -> None:
    """Every stored version, oldest first; * marks the current one."""
    from triage.models.store import ModelStore

    versions = ModelStore(store_root(config, store)).list()
    if not versions:
        typer.echo("no model versions stored yet (train one with `triage train`)")
        return
    for version in versions:
        typer.echo(_describe(version))
        if version.promotion is not None:
            typer.echo(
                f"    {'promoted' if version.promotion.promoted else 'kept back'}: {version.promotion.reason}"
            )


@models_app.command("promote")
def promote_command(
    version: Annotated[str, typer.Argument(help="Version to make current.")],
    store: StoreOption = None,
    config: ConfigOption = None,
) -> None:
    """Make VERSION current, whatever its metrics (roll back with `triage models rollback`)."""
    from triage.models.store import ModelStore

    promoted = ModelStore(store_root(config, store)).promote(version)
    typer.echo(f"current: {promoted.version}")


@models_app.command("rollback")
def rollback_command(store: StoreOption = None, config: ConfigOption = None) -> None:
    """Make the previously current version current again."""
    from triage.models.store import ModelStore

    current = ModelStore(store_root(config, store)).rollback()
    typer.echo(f"current: {current.version}")
