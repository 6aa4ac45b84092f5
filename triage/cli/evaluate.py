"""``triage evaluate``: score a stored model version on a labelled file, beside the TF-IDF baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from triage.cli.app import app
from triage.cli.options import (
    ConfigOption,
    StoreOption,
    command_line,
    field_columns,
    split_list,
    store_root,
)


@app.command("evaluate")
def evaluate(
    ctx: typer.Context,
    data: Annotated[Path, typer.Argument(help="Labelled tickets (CSV or Parquet).")],
    test_data: Annotated[
        Path | None,
        typer.Option("--test-data", help="Score on this file; DATA then only trains the baseline."),
    ] = None,
    version: Annotated[
        str | None, typer.Option("--version", help="Model version (default: current).")
    ] = None,
    store: StoreOption = None,
    fields: Annotated[
        str | None, typer.Option("--fields", help="Comma-separated fields (default: all the model predicts).")
    ] = None,
    label_column: Annotated[
        list[str] | None,
        typer.Option("--label-column", help="FIELD=COLUMN where they differ, e.g. group=queue."),
    ] = None,
    text_columns: Annotated[
        str,
        typer.Option("--text-columns", help="Comma-separated text columns (description falls back to body)."),
    ] = "subject,description",
    slice_column: Annotated[
        str | None,
        typer.Option("--slice-column", help="Also score each value of this column apart (language)."),
    ] = None,
    test_size: Annotated[
        float, typer.Option("--test-size", help="Hold-out share when no --test-data.")
    ] = 0.2,
    seed: Annotated[int, typer.Option("--seed", help="Split and baseline seed.")] = 42,
    report_dir: Annotated[
        Path | None,
        typer.Option("--report-dir", help="Where to write the report (default: reports/<file>-<version>)."),
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Evaluate a stored model version on a labelled file; write report.json/.md/.html with plots."""
    from triage.models.evaluate_version import evaluate_version
    from triage.models.inference import InferenceEngine
    from triage.models.report import TOLERANCE, underperforming_fields, write_report
    from triage.models.store import StoreError
    from triage.models.tables import read_table
    from triage.models.training import TrainingError

    columns = field_columns(label_column or [])
    root = store_root(config, store)
    try:
        engine = InferenceEngine.load(root, version)
        frame = read_table(data)
        test_frame = read_table(test_data) if test_data else None
        report = evaluate_version(
            engine,
            frame,
            dataset_name=data.name + (f" (test: {test_data.name})" if test_data else ""),
            test_frame=test_frame,
            fields=split_list(fields) if fields else None,
            label_columns=columns,
            text_columns=split_list(text_columns),
            slice_column=slice_column,
            test_size=test_size,
            seed=seed,
            command=command_line(ctx),
        )
    except (OSError, ValueError, TrainingError, StoreError) as exc:
        typer.echo(f"cannot evaluate: {exc}", err=True)
        raise typer.Exit(1) from None
    out = report_dir or Path("reports") / f"{data.stem}-{engine.model_version}"
    paths = write_report(report, out)
    for name, entry in report.fields.items():
        model, baseline = entry["model"], entry["baseline"]
        typer.echo(f"{name:<12} model macro-F1 {model.macro_f1:.3f}   baseline {baseline.macro_f1:.3f}")
    if report.tags is not None:
        tags, added = report.tags, report.tags["added"]
        precision = f" at precision {added['precision']:.3f}" if added["count"] else ""
        typer.echo(
            f"{'tags':<12} model micro-F1 {tags['model']['micro_f1']:.3f}   baseline "
            f"{tags['baseline']['micro_f1']:.3f}; at its thresholds it adds {added['count']} tags{precision}"
        )
    elif engine.manifest.tags is not None:
        typer.echo(f"{'tags':<12} not scored: the file has no tags (a 'tags' column, or tag_1 .. tag_n)")
    behind = underperforming_fields(report)
    if (
        report.tags is not None
        and report.tags["model"]["micro_f1"] < report.tags["baseline"]["micro_f1"] - TOLERANCE
    ):
        behind.append("tags (micro-F1)")
    if behind:
        typer.echo(f"the model does NOT beat the baseline on: {', '.join(behind)}")
    typer.echo(f"report: {paths['html']}")
