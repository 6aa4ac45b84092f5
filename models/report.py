"""Evaluation reports: the model beside the TF-IDF baseline, per field and per slice.

:func:`write_report` writes ``report.json`` (every number), ``report.md`` and ``report.html`` (the
same content for people, with a verdict line per field) and PNG plots under ``plots/``: confusion
matrices, reliability diagrams and precision-coverage curves, the baseline beside the model in each.
``report.md`` links the plot files; ``report.html`` embeds them (data URIs), so it still shows them
when moved or opened with no network.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from triage.models.evaluation import FieldComparison, FieldEvaluation, apply_gap, compare_macro_f1

Plot = tuple[str, bytes]
"""A plot: its file (relative to the report folder) and its PNG bytes."""

TOLERANCE = 0.0
"""Macro-F1 margin the model may trail the baseline by and still pass :func:`underperforming_fields`."""


@dataclass
class EvaluationReport:
    """One evaluation of a model version on one labelled data set.

    ``fields[name]`` holds ``{"model": FieldEvaluation, "baseline": FieldEvaluation | None,
    "excluded_classes": {label: training rows}, "suggest_only": {label: why never applied},
    "head": "the blocks the head uses and why"}``
    (``head`` optional); ``slices["language=de"][name]`` holds
    ``{"model": ..., "baseline": ...}`` scored on that slice of the test rows only. ``tags`` is the
    multi-label tags head's section (:meth:`triage.models.tags.TagsOutcome.report`), None without one.
    """

    dataset: dict[str, Any]
    model: dict[str, Any]
    fields: dict[str, dict[str, Any]]
    slices: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    created_at: str | datetime = field(default_factory=lambda: datetime.now(UTC))
    command: str | None = None
    notes: list[str] = field(default_factory=list)
    tags: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.created_at, datetime):
            self.created_at = self.created_at.isoformat(timespec="seconds")

    def to_dict(self) -> dict[str, Any]:
        return {
            "created_at": self.created_at,
            "command": self.command,
            "dataset": self.dataset,
            "model": self.model,
            "fields": {
                name: {
                    "model": _eval_dict(entry.get("model")),
                    "baseline": _eval_dict(entry.get("baseline")),
                    "excluded_classes": dict(entry.get("excluded_classes") or {}),
                    "suggest_only": dict(entry.get("suggest_only") or {}),
                    "head": entry.get("head"),
                    "macro_f1_difference": _comparison(entry),
                    "verdict": verdict(entry.get("model"), entry.get("baseline")),
                }
                for name, entry in self.fields.items()
            },
            "slices": {
                slice_name: {
                    name: {
                        "model": _eval_dict(entry.get("model")),
                        "baseline": _eval_dict(entry.get("baseline")),
                        "macro_f1_difference": _comparison(entry),
                        "verdict": verdict(entry.get("model"), entry.get("baseline")),
                    }
                    for name, entry in per_field.items()
                }
                for slice_name, per_field in self.slices.items()
            },
            "underperforming_fields": underperforming_fields(self),
            "notes": list(self.notes),
            "tags": self.tags,
        }


def build_report(
    *,
    dataset: dict[str, Any],
    model: dict[str, Any],
    comparisons: dict[str, FieldComparison],
    details: dict[str, dict[str, Any]] | None = None,
    notes: Sequence[str] = (),
    command: str | None = None,
    tags: dict[str, Any] | None = None,
) -> EvaluationReport:
    """The report of a model beside the baseline, from each field's comparison on the hold-out
    (:func:`triage.models.evaluation.evaluate_beside_baseline`): per field (with ``details[field]``,
    e.g. ``excluded_classes`` and ``head``), per slice, and after ``notes`` a ``WARNING`` per field
    that reaches no apply threshold where the baseline does. Training's report and a stored
    version's (:func:`triage.models.evaluate_version.evaluate_version`) are both built here."""
    details = details or {}
    slices: dict[str, dict[str, dict[str, Any]]] = {}
    for name, comparison in comparisons.items():
        for key, (model_eval, baseline_eval) in comparison.slices.items():
            slices.setdefault(key, {})[name] = {"model": model_eval, "baseline": baseline_eval}
    warnings = (apply_gap(c.model, c.baseline, "baseline") for c in comparisons.values())
    return EvaluationReport(
        dataset=dataset,
        model=model,
        fields={
            name: {"model": c.model, "baseline": c.baseline, **details.get(name, {})}
            for name, c in comparisons.items()
        },
        slices=slices,
        command=command,
        notes=[*notes, *(f"WARNING {warning}" for warning in warnings if warning)],
        tags=tags,
    )


def verdict(model: FieldEvaluation | None, baseline: FieldEvaluation | None) -> str:
    """One line: does the model beat the baseline on macro-F1, and is the difference beyond noise?"""
    if model is None:
        return "no model evaluation"
    if baseline is None:
        return f"no baseline to compare with (model macro-F1 {model.macro_f1:.3f})"
    delta = model.macro_f1 - baseline.macro_f1
    numbers = f"{model.macro_f1:.3f} vs {baseline.macro_f1:.3f}, {delta:+.3f}"
    comparison = compare_macro_f1(model, baseline)
    if comparison is not None:
        numbers += f"; {comparison.level:.0%} interval {comparison.low:+.3f} to {comparison.high:+.3f}"
        numbers += "" if comparison.significant else ", within noise"
    if delta > 0:
        return f"model beats the baseline on macro-F1 ({numbers})"
    if delta == 0:
        return f"model matches the baseline on macro-F1 ({numbers})"
    return f"model does NOT beat the baseline on macro-F1 ({numbers})"


def underperforming_fields(
    report: EvaluationReport, *, tolerance: float = TOLERANCE, include_slices: bool = False
) -> list[str]:
    """Fields whose model macro-F1 is below the baseline's by more than ``tolerance``.

    With ``include_slices``, slices are checked too and named ``"<slice>/<field>"``.
    """
    groups: list[tuple[str, dict[str, dict[str, Any]]]] = [("", report.fields)]
    if include_slices:
        groups += [(f"{name}/", per_field) for name, per_field in report.slices.items()]
    out = []
    for prefix, per_field in groups:
        for name, entry in per_field.items():
            model, baseline = entry.get("model"), entry.get("baseline")
            if model is not None and baseline is not None and model.macro_f1 < baseline.macro_f1 - tolerance:
                out.append(prefix + name)
    return out


def write_report(report: EvaluationReport, out_dir: Path) -> dict[str, Path]:
    """Write report.json, report.md, report.html and plots/*.png into ``out_dir``; returns their paths.

    Keys: ``"json"``, ``"markdown"``, ``"html"``, and ``"plot:<field>:<kind>"`` per plot.
    Each file is written atomically (temporary file, then rename).
    """
    out_dir = Path(out_dir)
    (out_dir / "plots").mkdir(parents=True, exist_ok=True)
    from triage.models.report_plots import field_plots

    paths: dict[str, Path] = {}
    plots: dict[str, dict[str, Plot]] = {}
    for name, entry in report.fields.items():
        plots[name] = {}
        for kind, figure in field_plots(name, entry.get("model"), entry.get("baseline")).items():
            relative, png = f"plots/{_slug(name)}-{kind}.png", _png(figure)
            _atomic_write(out_dir / relative, png)
            paths[f"plot:{name}:{kind}"] = out_dir / relative
            plots[name][kind] = (relative, png)

    blocks = _blocks(report, plots)
    _atomic_write(out_dir / "report.json", _json(report.to_dict()).encode())
    _atomic_write(out_dir / "report.md", _markdown(blocks).encode())
    _atomic_write(out_dir / "report.html", _html(blocks, _title(report)).encode())
    paths.update(json=out_dir / "report.json", markdown=out_dir / "report.md", html=out_dir / "report.html")
    return paths


# ---------------------------------------------------------------- content, shared by Markdown and HTML
# A block is ("h1"|"h2"|"h3", text) | ("p", text) | ("strong", text) | ("table", (header, rows))
# | ("img", (alt, plot)): Markdown links the plot's file, HTML embeds its PNG bytes.


def _title(report: EvaluationReport) -> str:
    model = report.model.get("name") or "model"
    version = report.model.get("version")
    return f"Evaluation: {model}{' ' + version if version else ''} on {report.dataset.get('name', 'data')}"


def _blocks(report: EvaluationReport, plots: dict[str, dict[str, Plot]]) -> list[tuple[str, Any]]:
    d, m = report.dataset, report.model
    blocks: list[tuple[str, Any]] = [("h1", _title(report))]
    facts = [
        ("created", report.created_at),
        ("command", f"`{report.command}`" if report.command else None),
        ("data", d.get("name")),
        ("split", d.get("split")),
        ("rows", f"{d.get('n_train', '?')} train, {d.get('n_test', '?')} test"),
        ("data hash", d.get("data_hash")),
        ("base encoder", m.get("base_encoder")),
        ("head", m.get("head")),
    ]
    blocks.append(("table", (["", ""], [[k, str(v)] for k, v in facts if v is not None])))
    blocks.extend(("p", note) for note in report.notes)

    blocks.append(("h2", "Verdict (macro-F1, model vs TF-IDF + logistic-regression baseline)"))
    rows = []
    for name, entry in report.fields.items():
        rows.append(
            ["all", name, *_pair(entry, "macro_f1"), verdict(entry.get("model"), entry.get("baseline"))]
        )
    for slice_name, per_field in report.slices.items():
        for name, entry in per_field.items():
            rows.append(
                [
                    slice_name,
                    name,
                    *_pair(entry, "macro_f1"),
                    verdict(entry.get("model"), entry.get("baseline")),
                ]
            )
    blocks.append(("table", (["rows", "field", "model", "baseline", "verdict"], rows)))
    blocks.append(
        (
            "p",
            "The interval is a paired bootstrap (1,000 resamples of the test rows) of the macro-F1 difference; "
            "where it includes zero, the difference is within noise.",
        )
    )
    behind = underperforming_fields(report, include_slices=True)
    blocks.append(
        ("strong", "The model does not beat the baseline on: " + ", ".join(behind))
        if behind
        else ("strong", "The model is at least as good as the baseline on every field and slice.")
    )

    for name, entry in report.fields.items():
        blocks.extend(_field_blocks(name, entry, plots.get(name, {})))
    if report.tags:
        blocks.extend(_tag_blocks(report.tags))
    if report.slices:
        blocks.append(("h2", "Slices"))
        rows = []
        for slice_name, per_field in report.slices.items():
            for name, entry in per_field.items():
                model = entry.get("model")
                rows.append(
                    [
                        slice_name,
                        name,
                        str(model.n) if model else "-",
                        *_pair(entry, "accuracy"),
                        *_pair(entry, "macro_f1"),
                    ]
                )
        header = [
            "slice",
            "field",
            "n",
            "accuracy (model)",
            "accuracy (baseline)",
            "macro-F1 (model)",
            "macro-F1 (baseline)",
        ]
        blocks.append(("table", (header, rows)))
    return blocks


def _field_blocks(name: str, entry: dict[str, Any], plots: dict[str, Plot]) -> list[tuple[str, Any]]:
    model: FieldEvaluation | None = entry.get("model")
    baseline: FieldEvaluation | None = entry.get("baseline")
    blocks: list[tuple[str, Any]] = [("h2", f"Field: {name}"), ("strong", verdict(model, baseline))]
    rows = [
        ["test rows", *_both(model, baseline, lambda e: str(e.n))],
        ["accuracy", *_pair(entry, "accuracy")],
        ["macro-F1", *_pair(entry, "macro_f1")],
        ["weighted-F1", *_pair(entry, "weighted_f1")],
        ["ECE (calibration error)", *_pair(entry, "ece")],
        ["apply threshold (precision, coverage)", *_both(model, baseline, lambda e: _point(e, "apply"))],
        ["suggest threshold (precision, coverage)", *_both(model, baseline, lambda e: _point(e, "suggest"))],
        ["test rows with a label outside the head", *_both(model, baseline, lambda e: str(e.n_outside_head))],
    ]
    blocks.append(("table", (["metric", "model", "baseline"], rows)))
    if entry.get("head"):
        blocks.append(("p", entry["head"]))
    if model is not None:
        blocks.append(
            (
                "p",
                f"Apply target precision {model.apply_target:.2f}, suggest target {model.suggest_target:.2f}; "
                f"a threshold must select at least {model.min_selected} test rows"
                + (
                    f" and reach its target at the lower end of a one-sided {model.confidence_level:.0%} "
                    "Wilson interval (the precision shown is the observed one)."
                    if model.confidence_level
                    else "."
                ),
            )
        )
    excluded = entry.get("excluded_classes") or {}
    if excluded:
        listed = ", ".join(f"{label} ({count})" for label, count in excluded.items())
        blocks.append(
            (
                "p",
                f"Classes left out of the model's head as too rare (training rows): {listed}. "
                "Their test rows count as errors for the model.",
            )
        )
    suggest_only = entry.get("suggest_only") or {}
    if suggest_only and model is not None:
        applied = [label for label in model.labels if label not in suggest_only]
        blocks.append(
            (
                "p",
                f"Written per class on its own evidence: {len(applied)} of the head's {len(model.labels)} "
                f"classes may be applied; {len(suggest_only)} are suggested but never applied: "
                + "; ".join(f"{label} ({why})" for label, why in suggest_only.items())
                + ".",
            )
        )
    labels = list(
        dict.fromkeys([*(model.per_class if model else {}), *(baseline.per_class if baseline else {})])
    )
    rows = []
    for label in labels:
        m = model.per_class.get(label) if model else None
        b = baseline.per_class.get(label) if baseline else None
        support = (m or b or {}).get("support", 0)
        rows.append([label, str(support), *_prf(m), *_prf(b)])
    blocks.append(("h3", "Per class"))
    header = ["label", "support", "model P", "model R", "model F1", "baseline P", "baseline R", "baseline F1"]
    blocks.append(("table", (header, rows)))
    titles = {
        "confusion": "Confusion matrices (rows: true label, row-normalised)",
        "reliability": "Reliability diagram",
        "coverage": "Precision vs coverage",
    }
    for kind, plot in plots.items():
        blocks.append(("h3", titles.get(kind, kind)))
        blocks.append(("img", (f"{name} {kind}", plot)))
    return blocks


def _tag_blocks(tags: dict[str, Any]) -> list[tuple[str, Any]]:
    """The tags head beside the TF-IDF + one-vs-rest baseline: the field's F1s, then each tag's."""
    model, baseline = tags["model"], tags["baseline"]
    suggest_only = tags.get("suggest_only") or {}
    added = [tag for tag in model["per_tag"] if tag not in suggest_only]
    blocks: list[tuple[str, Any]] = [
        ("h2", "tags (multi-label)"),
        (
            "table",
            (
                ["", "model", "baseline"],
                [
                    ["micro-F1", f"{model['micro_f1']:.3f}", f"{baseline['micro_f1']:.3f}"],
                    ["macro-F1", f"{model['macro_f1']:.3f}", f"{baseline['macro_f1']:.3f}"],
                ],
            ),
        ),
        (
            "p",
            f"{len(model['per_tag'])} tags learned on {tags['n_train']} training rows, scored on "
            f"{tags['n_test']}; {len(tags.get('left_out') or {})} left out (too few rows). Added on their own "
            f"threshold (precision {model['apply_target']:.2f} at the lower end of the 95% Wilson interval): "
            f"{len(added)} ({', '.join(added) or 'none'}); the rest only suggested. Precision, recall and F1 "
            "at probability 0.5.",
        ),
    ]
    rows = []
    for tag, scores in model["per_tag"].items():
        other = baseline["per_tag"][tag]
        apply = scores.get("apply")
        rows.append(
            [
                tag,
                str(scores["support"]),
                *(f"{scores[k]:.3f} / {other[k]:.3f}" for k in ("precision", "recall", "f1")),
                f"{apply['threshold']:.3f} ({apply['precision']:.3f}, {apply['selected']} rows)"
                if apply
                else "-",
                suggest_only.get(tag, "added"),
            ]
        )
    header = ["tag", "support", "precision (model / baseline)", "recall", "F1", "apply threshold", "written"]
    blocks.append(("table", (header, rows)))
    return blocks


def _pair(entry: dict[str, Any], metric: str) -> list[str]:
    return _both(entry.get("model"), entry.get("baseline"), lambda e: f"{getattr(e, metric):.3f}")


def _both(model: FieldEvaluation | None, baseline: FieldEvaluation | None, show) -> list[str]:
    return [show(e) if e is not None else "-" for e in (model, baseline)]


def _point(evaluation: FieldEvaluation, which: str) -> str:
    point = getattr(evaluation, which)
    if point is None:
        return "unreachable"
    return f"{point.threshold:.3f} ({point.precision:.2f}, {point.coverage:.0%})"


def _prf(scores: dict[str, float] | None) -> list[str]:
    if scores is None:
        return ["-", "-", "-"]
    return [f"{scores['precision']:.2f}", f"{scores['recall']:.2f}", f"{scores['f1']:.2f}"]


def _markdown(blocks: list[tuple[str, Any]]) -> str:
    lines: list[str] = []
    for kind, content in blocks:
        if kind in ("h1", "h2", "h3"):
            lines += ["#" * int(kind[1]) + " " + content, ""]
        elif kind == "p":
            lines += [content, ""]
        elif kind == "strong":
            lines += [f"**{content}**", ""]
        elif kind == "img":
            alt, (src, _) = content
            lines += [f"![{alt}]({src})", ""]
        elif kind == "table":
            header, rows = content
            cell = lambda text: str(text).replace("|", "\\|")  # noqa: E731
            lines.append("| " + " | ".join(cell(h) for h in header) + " |")
            lines.append("|" + "---|" * len(header))
            lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
            lines.append("")
    return "\n".join(lines)


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.2em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}img{max-width:100%}strong{display:block;margin:.6em 0}code{background:#f3f3f3}
"""


def _html(blocks: list[tuple[str, Any]], title: str) -> str:
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
    ]
    for kind, content in blocks:
        if kind in ("h1", "h2", "h3", "p", "strong"):
            parts.append(f"<{kind}>{_inline(content)}</{kind}>")
        elif kind == "img":
            alt, (_, png) = content
            data = base64.b64encode(png).decode("ascii")
            parts.append(f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">')
        elif kind == "table":
            header, rows = content
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{_inline(str(c))}</td>" for c in row) + "</tr>" for row in rows]
            parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _inline(text: str) -> str:
    """Escape, then render `code` spans."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))


# ---------------------------------------------------------------- files


def _comparison(entry: dict[str, Any]) -> dict[str, Any] | None:
    model, baseline = entry.get("model"), entry.get("baseline")
    comparison = compare_macro_f1(model, baseline) if model is not None and baseline is not None else None
    return comparison.to_dict() if comparison is not None else None


def _eval_dict(evaluation: FieldEvaluation | None) -> dict[str, Any] | None:
    return evaluation.to_dict() if evaluation is not None else None


def _json(data: dict[str, Any]) -> str:
    """Indented JSON with lists of plain numbers (confusion rows ...) kept on one line."""
    text = json.dumps(data, indent=1, default=_json_default)
    return re.sub(r"\[[-+\d.eE,\s]*\]", lambda m: re.sub(r"\s+", "", m.group(0)).replace(",", ", "), text)


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "field"


def _png(figure) -> bytes:
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return buffer.getvalue()


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)  # a report, not a secret: readable like any other file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
