"""The optional multi-label tags head: reading tags, the one-vs-rest fit, per-tag thresholds on real rows."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from model_tickets import tiny_config

from triage.models.tags import MIN_SELECTED, clean_tags, multi_hot, read_tags

SHARED_CSV = (
    Path(__file__).resolve().parents[3]
    / "shared"
    / "data"
    / "tobi_bueck"
    / "v3_sample_dataset-tickets-multi-lang3-4k.csv"
)


def test_tags_are_read_from_a_tags_column_or_numbered_columns():
    listed = pd.DataFrame({"tags": [["VPN", " vpn", "Urgent"], "billing, Refund,,", None, np.nan]})
    assert read_tags(listed) == [("Urgent", "VPN"), ("Refund", "billing"), (), ()]
    numbered = pd.DataFrame(
        {"tag_10": ["z", None], "tag_2": ["Outage", None], "tag_1": ["Network", np.nan], "other": [1, 2]}
    )
    assert read_tags(numbered) == [("Network", "Outage", "z"), ()]
    assert clean_tags(["b", "B", "a"]) == ("a", "b")
    assert multi_hot([("a", "C"), ()], ["a", "b", "c"]).tolist() == [[1, 0, 1], [0, 0, 0]]


def test_the_multilabel_fit_is_one_vs_rest_logistic_regression_at_the_same_c():
    """Each output of one multi-label L-BFGS fit is scikit-learn's logistic regression of that tag."""
    from sklearn.linear_model import LogisticRegression

    from triage.models.head_fitting import OFF, fit_head
    from triage.models.heads import FieldHead

    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)).astype(np.float32)
    y = (x @ rng.normal(size=(6, 3)) + rng.normal(size=(300, 3)) > 0.5).astype(np.float32)
    head = FieldHead(6, 0, 3)
    c = 0.5
    fit_head(
        head, (torch.from_numpy(x), None, None), torch.from_numpy(y), torch.ones(300), (c, OFF, OFF), 500,
        multilabel=True,
    )  # fmt: skip
    with torch.no_grad():
        ours = torch.sigmoid(head(torch.from_numpy(x))).numpy()
    for j in range(3):
        reference = LogisticRegression(C=c, tol=1e-8, max_iter=5000).fit(x, y[:, j]).predict_proba(x)[:, 1]
        assert np.abs(ours[:, j] - reference).max() < 2e-3


@pytest.mark.skipif(not SHARED_CSV.is_file(), reason="shared data not present")
def test_tags_trained_on_real_multilabel_rows_reach_the_target_precision_on_the_hold_out(tmp_path):
    from triage.models.classifier import TriageClassifier
    from triage.models.manifest import ModelManifest
    from triage.models.report import write_report
    from triage.models.store import ModelStore
    from triage.models.training import train

    frame = pd.read_csv(SHARED_CSV)
    config = tiny_config(tmp_path, fields=["type"], tags=True, max_length=32, c_dense=0.01)
    result = train(frame, config)
    tags = result.tags
    assert tags is not None and tags.n_test == len(result.holdout)
    # the file's tag_1 .. tag_9: 114 tags, the ones with five training rows learned, the rest reported
    assert len(tags.tags) >= 30 and tags.left_out and min(tags.left_out.values()) >= 1
    applied = [tag for tag in tags.tags if tag not in tags.suggest_only]
    assert applied, "no tag reached the target precision"

    # stored and loaded again, the model's own probabilities on the hold-out reproduce each threshold's
    # precision: at least the target at the lower end of the Wilson interval
    version, _, _ = ModelStore(tmp_path / "store").register(result)
    manifest = ModelManifest.read(version.path)
    assert manifest.tags is not None and manifest.classifier.tags == tags.tags
    model = TriageClassifier.load(version.path, manifest.classifier)
    proba = model.predict_proba(result.holdout["text"].tolist())["tags"]
    truth = multi_hot(result.holdout["tags"].tolist(), tags.tags).astype(bool)
    from triage.models.evaluation import _wilson_lower

    for tag in applied:
        j = tags.tags.index(tag)
        threshold = manifest.tags.apply[tag].threshold
        assert threshold is not None
        chosen = proba[:, j] >= threshold - 1e-6
        hits, selected = int(truth[chosen, j].sum()), int(chosen.sum())
        assert (
            selected >= MIN_SELECTED and _wilson_lower(hits, selected, 0.95) >= config.target_precision - 1e-9
        ), tag
    # a tag with too few training rows, or no threshold, is only suggested, with the reason
    for tag, reason in manifest.tags.suggest_only.items():
        few = tags.train_counts[tag] < config.min_examples_per_class
        assert ("training rows" in reason) == few
        assert few or manifest.tags.apply[tag].threshold is None

    # the report puts every tag beside the TF-IDF + one-vs-rest baseline on the same rows
    report = result.report(version.version)
    data = report.to_dict()["tags"]
    assert set(data["model"]["per_tag"]) == set(data["baseline"]["per_tag"]) == set(tags.tags)
    assert 0 < data["baseline"]["micro_f1"] < 1 and 0 < data["model"]["micro_f1"] < 1
    written = write_report(report, tmp_path / "report")
    text = written["markdown"].read_text()
    assert "## tags (multi-label)" in text and applied[0] in text
    print(
        f"tags: {len(tags.tags)} learned, {len(applied)} applied; micro-F1 {tags.evaluation.micro_f1:.3f} "
        f"(baseline {tags.baseline.micro_f1:.3f}), macro-F1 {tags.evaluation.macro_f1:.3f} "
        f"(baseline {tags.baseline.macro_f1:.3f}); seconds {result.timings}"
    )
    for tag in applied:
        point = tags.evaluation.apply[tag]
        assert point is not None
        print(
            f"  {tag}: threshold {point.threshold:.3f}, precision {point.precision:.3f} on {point.selected}"
        )


def _tagged_tickets(n: int = 600) -> pd.DataFrame:
    """Synthetic tickets whose tags follow their text: ``urgent`` on urgent ones, the device's own tag
    on hardware (``printer``, ``laptop``, ...), ``vpn`` on VPN tickets."""
    from model_tickets import labelled_tickets

    frame = labelled_tickets(n, seed=3)
    text = frame["description"].str.lower()
    frame["tags"] = [
        [
            tag
            for tag, hit in (("urgent", "urgent" in t), ("vpn", "vpn" in t), ("printer", "printer" in t))
            if hit
        ]
        for t in text
    ]
    return frame


@pytest.fixture(scope="module")
def tagged_version(tmp_path_factory):
    """A stored version with a group head and a tags head (printer, urgent, vpn)."""
    from triage.models.store import ModelStore
    from triage.models.training import train

    root = tmp_path_factory.mktemp("tagged")
    result = train(_tagged_tickets(), tiny_config(root, fields=["group"], tags=True, c_dense=0.01))
    assert result.tags is not None and result.tags.tags == ["printer", "urgent", "vpn"]
    assert "urgent" not in result.tags.suggest_only  # half the tickets: its hold-out reaches the target
    version, _, _ = ModelStore(root / "store").register(result)
    return version


TWO_TICKETS = pd.DataFrame(
    {
        "ticket_id": [1, 2],
        "subject": ["Vpn issue", "Monitor question"],
        "description": [
            "Something is broken: my vpn, it is very slow. URGENT: production is down.",
            "Could you please set up: my monitor. No rush, whenever you have time.",
        ],
    }
)


def test_predictions_carry_every_tag_with_its_own_probability(tagged_version):
    """One ``tags`` row per ticket in the predictions, each tag with its own probability."""
    from triage.models.inference import InferenceEngine

    engine = InferenceEngine.load(tagged_version.path)
    rows = engine.predict_frame(TWO_TICKETS)
    tags = rows[rows["field"] == "tags"].set_index("ticket_id")
    assert list(rows["field"]) == ["group", "tags", "group", "tags"]
    for ticket_id in (1, 2):  # three tags, top_k 3: every tag ranked
        ranked = {k["label"]: k["probability"] for k in tags.loc[ticket_id, "top_k"]}
        assert set(ranked) == {"printer", "urgent", "vpn"}
    first = {k["label"]: k["probability"] for k in tags.loc[1, "top_k"]}
    second = {k["label"]: k["probability"] for k in tags.loc[2, "top_k"]}
    assert first["urgent"] > 0.9 and first["vpn"] > 0.9 and first["printer"] < 0.1
    assert second["urgent"] < 0.1 and second["vpn"] < 0.1


def test_a_tags_row_holds_the_top_k_and_every_tag_at_a_threshold_not_every_tag(tagged_version):
    """The row's size follows ``top_k`` and the tags decide acts on, not the number of tags learned."""
    from triage.models.inference import FieldPredictions, InferenceEngine
    from triage.models.manifest import ModelManifest
    from triage.models.text import ticket_text

    engine = InferenceEngine.load(tagged_version.path, top_k=1)
    rows = engine.predict_frame(TWO_TICKETS)
    ranked = rows[rows["field"] == "tags"]["top_k"].tolist()
    head = ModelManifest.read(tagged_version.path).tags
    assert head is not None
    points = [(head.apply[tag].threshold, head.suggest[tag].threshold) for tag in head.labels]
    lowest = np.array([min((t for t in pair if t is not None), default=np.inf) for pair in points])
    assert np.isfinite(lowest).any() and not np.isfinite(lowest).all()  # some tags reach none: vpn
    proba = engine.predict(list(map(ticket_text, TWO_TICKETS["subject"], TWO_TICKETS["description"])))
    for row, got in zip(proba["tags"].proba, ranked, strict=True):
        wanted = {head.labels[int(np.argmax(row))]} | {head.labels[j] for j in np.flatnonzero(row >= lowest)}
        assert {k["label"] for k in got} == wanted and len(got) < len(head.labels)
    assert [k["label"] for k in ranked[0]] == ["urgent"]  # vpn at 0.9 too, but it has no threshold

    # at 100 tags: the 3 best and the tags at their thresholds, best first
    rng = np.random.default_rng(0)
    proba = rng.uniform(size=(50, 100))
    keep = np.where(rng.uniform(size=100) < 0.2, 0.9, np.inf)
    names = [f"t{j}" for j in range(100)]
    for row, ranked in zip(proba, FieldPredictions("tags", names, proba, 3, keep).ranked(), strict=True):
        labels = [k["label"] for k in ranked]
        probabilities = [k["probability"] for k in ranked]
        wanted = {names[j] for j in np.argsort(-row)[:3]} | {names[j] for j in np.flatnonzero(row >= keep)}
        assert set(labels) == wanted and probabilities == sorted(probabilities, reverse=True)
        assert len(labels) <= 3 + int((row >= keep).sum()) < 100


def test_triage_train_learns_tags_when_the_configuration_asks_for_them(tmp_path):
    """``model.train_options: {tags: true}``: the file's ``tags`` column (text, comma-separated) is learned."""
    from typer.testing import CliRunner

    from triage.cli import app

    frame = _tagged_tickets()
    frame["tags"] = frame["tags"].map(",".join)
    frame.to_csv(tmp_path / "tickets.csv", index=False)
    config = tmp_path / "config.yml"
    config.write_text("model:\n  train_options: {tags: true}\n")
    args = ["train", str(tmp_path / "tickets.csv"), "--fields", "group", "--config", str(config)]
    args += ["--max-length", "32", "--min-examples", "10", "--store", str(tmp_path / "store")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("tags "))
    assert "tags may be added: " in line and "urgent" in line.split("added: ")[1]
