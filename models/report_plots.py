"""The report's plots, drawn with matplotlib's object API (Agg canvas, no pyplot state, no display)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from triage.models.evaluation import FieldEvaluation

COLORS = {"model": "tab:blue", "baseline": "tab:orange"}
MAX_NAMED_LABELS = 30
MAX_ANNOTATED_LABELS = 12


def field_plots(
    name: str, model: FieldEvaluation | None, baseline: FieldEvaluation | None
) -> dict[str, Figure]:
    """``{"confusion", "reliability", "coverage"}`` figures for one field, the baseline beside the model."""
    runs = {who: ev for who, ev in (("model", model), ("baseline", baseline)) if ev is not None}
    if not runs:
        return {}
    return {
        "confusion": confusion_figure(name, runs),
        "reliability": reliability_figure(name, runs),
        "coverage": coverage_figure(name, runs),
    }


def confusion_figure(name: str, runs: dict[str, FieldEvaluation]) -> Figure:
    size = max(len(ev.labels) for ev in runs.values())
    side = min(4.5 + 0.12 * size, 11)
    figure = Figure(figsize=(side * len(runs), side), layout="constrained")
    for ax, (who, ev) in zip(figure.subplots(1, len(runs), squeeze=False)[0], runs.items(), strict=True):
        counts = np.asarray(ev.confusion, dtype=float)
        rows = counts.sum(axis=1, keepdims=True)
        share = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        ax.set_title(f"{who}: {name} (macro-F1 {ev.macro_f1:.3f})")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        k = len(ev.labels)
        if k <= MAX_NAMED_LABELS:
            short = [label if len(label) <= 20 else label[:19] + "…" for label in ev.labels]
            ax.set_xticks(range(k), short, rotation=90, fontsize=7 if k > 12 else 8)
            ax.set_yticks(range(k), short, fontsize=7 if k > 12 else 8)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel("predicted (labels in the order of report.json)")
        if k <= MAX_ANNOTATED_LABELS:
            for i in range(k):
                for j in range(k):
                    if counts[i, j]:
                        color = "white" if share[i, j] > 0.5 else "black"
                        ax.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=7, color=color)
    return figure


def reliability_figure(name: str, runs: dict[str, FieldEvaluation]) -> Figure:
    figure = Figure(figsize=(5.5, 4.5), layout="constrained")
    ax = figure.subplots()
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    for who, ev in runs.items():
        # Empty bins (count 0) have no mean confidence or accuracy.
        full = [
            (b.confidence, b.accuracy)
            for b in ev.reliability
            if b.count and b.confidence is not None and b.accuracy is not None
        ]
        ax.plot(
            [confidence for confidence, _ in full],
            [accuracy for _, accuracy in full],
            marker="o",
            color=COLORS[who],
            label=f"{who} (ECE {ev.ece:.3f})",
        )
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1),
        xlabel="confidence (bin mean)",
        ylabel="accuracy",
        title=f"{name}: reliability",
    )
    ax.legend(loc="upper left", fontsize=8)
    return figure


def coverage_figure(name: str, runs: dict[str, FieldEvaluation]) -> Figure:
    figure = Figure(figsize=(5.5, 4.5), layout="constrained")
    ax = figure.subplots()
    targets = set()
    for who, ev in runs.items():
        curve = ev.curve()
        ax.plot([p.coverage for p in curve], [p.precision for p in curve], color=COLORS[who], label=who)
        for point, marker in ((ev.apply, "s"), (ev.suggest, "^")):
            if point is not None:
                ax.plot(point.coverage, point.precision, marker=marker, color=COLORS[who], markersize=7)
        targets |= {ev.apply_target, ev.suggest_target}
    for target in sorted(targets):
        ax.axhline(target, color="grey", linestyle="--", linewidth=0.8)
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.02),
        xlabel="coverage (share of tickets acted on)",
        ylabel="precision",
        title=f"{name}: precision vs coverage (■ apply, ▲ suggest)",
    )
    ax.legend(loc="lower left", fontsize=8)
    return figure
