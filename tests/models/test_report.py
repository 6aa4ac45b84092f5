"""Report files: JSON, Markdown and HTML with plots, the baseline beside the model, clear verdicts."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime

import numpy as np
import pytest

from triage.models.evaluation import evaluate_field
from triage.models.report import EvaluationReport, underperforming_fields, verdict, write_report

LABELS = ["Billing <b>", "Network", "Hardware"]


def _evaluation(field: str, right: float, seed: int, n: int = 120):
    """An evaluation where about ``right`` of the predictions are correct (same true labels for every seed)."""
    truth = np.random.default_rng(0).integers(0, 3, n)
    rng = np.random.default_rng(seed)
    predicted = np.where(rng.random(n) < right, truth, (truth + 1) % 3)
    proba = np.full((n, 3), 0.1)
    proba[np.arange(n), predicted] = 0.8
    return evaluate_field(field, [LABELS[i] for i in truth], proba, LABELS, min_selected=10)


@pytest.fixture(scope="module")
def report():
    return EvaluationReport(
        dataset={"name": "tickets.csv", "n_train": 480, "n_test": 120, "data_hash": "ab12", "split": "80/20"},
        model={"name": "triage", "version": "20261129-1", "base_encoder": "minilm", "head": "hybrid"},
        fields={
            "group": {
                "model": _evaluation("group", 0.9, 1),
                "baseline": _evaluation("group", 0.6, 2),
                "excluded_classes": {"Legal": 4},
                "head": "Head: TF-IDF (C=10), chosen by 3-fold cross-validated macro-F1.",
            },
            "priority": {
                "model": _evaluation("priority", 0.4, 3),
                "baseline": _evaluation("priority", 0.7, 4),
            },
        },
        slices={"language=de": {"group": {"model": _evaluation("group", 0.8, 5, 40), "baseline": None}}},
        command="triage train tickets.csv --report-dir out",
        created_at=datetime(2026, 11, 29, 12, 0, tzinfo=UTC),
    )


def test_underperforming_fields(report):
    assert underperforming_fields(report) == ["priority"]
    assert underperforming_fields(report, tolerance=1.0) == []


def test_verdict_lines(report):
    group = report.fields["group"]
    assert verdict(group["model"], group["baseline"]).startswith("model beats the baseline on macro-F1")
    priority = report.fields["priority"]
    assert verdict(priority["model"], priority["baseline"]).startswith("model does NOT beat the baseline")
    assert verdict(group["model"], None).startswith("no baseline")
    # 90% vs 60% right on 120 rows: beyond noise; a model against itself: within noise
    assert "95% interval +" in verdict(group["model"], group["baseline"])
    assert verdict(group["model"], group["model"]).endswith("within noise)")


@pytest.fixture(scope="module")
def written(report, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return out, write_report(report, out)


def test_files_written_with_plots(written):
    out, paths = written
    assert {"json", "markdown", "html"} <= set(paths)
    plots = {key: path for key, path in paths.items() if key.startswith("plot:")}
    assert set(plots) == {
        f"plot:{f}:{k}" for f in ("group", "priority") for k in ("confusion", "reliability", "coverage")
    }
    for path in plots.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.parent == out / "plots"
    assert not list(out.rglob("*.tmp"))


def test_json_has_model_and_baseline(report, written):
    data = json.loads(written[1]["json"].read_text())
    group = data["fields"]["group"]
    assert group["model"]["macro_f1"] == pytest.approx(report.fields["group"]["model"].macro_f1)
    assert group["baseline"]["macro_f1"] == pytest.approx(report.fields["group"]["baseline"].macro_f1)
    assert group["excluded_classes"] == {"Legal": 4}
    assert group["head"] == report.fields["group"]["head"]
    assert data["fields"]["priority"]["head"] is None
    assert group["macro_f1_difference"]["significant"] is True
    assert group["macro_f1_difference"]["low"] > 0
    assert data["underperforming_fields"] == ["priority"]
    assert data["command"] == "triage train tickets.csv --report-dir out"
    assert data["created_at"] == "2026-11-29T12:00:00+00:00"
    assert data["slices"]["language=de"]["group"]["baseline"] is None


def test_markdown_puts_baseline_beside_model(report, written):
    out, paths = written
    text = paths["markdown"].read_text()
    model, baseline = report.fields["priority"]["model"], report.fields["priority"]["baseline"]
    assert f"| macro-F1 | {model.macro_f1:.3f} | {baseline.macro_f1:.3f} |" in text
    assert "**The model does not beat the baseline on: priority**" in text
    assert "Legal (4)" in text
    assert report.fields["group"]["head"] in text
    for image in re.findall(r"!\[[^]]*\]\(([^)]+)\)", text):
        assert (out / image).is_file()


def test_html_is_escaped_and_self_contained(written, tmp_path):
    paths = written[1]
    moved = tmp_path / "elsewhere.html"  # a report moved away from its folder still shows every plot
    moved.write_bytes(paths["html"].read_bytes())
    text = moved.read_text()
    assert "Billing &lt;b&gt;" in text and "Billing <b>" not in text
    images = re.findall(r'<img alt="[^"]*" src="([^"]+)"', text)
    assert len(images) == 6
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert base64.b64decode(images[0].removeprefix("data:image/png;base64,"))[:4] == b"\x89PNG"
    links = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert all(link.startswith("data:") for link in links)  # nothing local, nothing on the network
    assert "model does NOT beat the baseline on macro-F1" in text


def test_rewriting_replaces_the_files(report, written):
    out, paths = written
    before = paths["json"].read_text()
    report.notes.append("second run")
    try:
        again = write_report(report, out)
    finally:
        report.notes.pop()
    assert again["json"] == paths["json"]
    assert "second run" in again["json"].read_text() and "second run" not in before
