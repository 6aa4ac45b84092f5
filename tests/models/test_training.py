"""Training on a tiny labelled set with the packaged MiniLM: exclusions, determinism, bad input."""

import numpy as np
import pandas as pd
import pytest
import torch
from model_tickets import RARE, labelled_tickets, tiny_config

from triage.models.text import ticket_text
from triage.models.training import TrainingError, data_hash, prepare_frame, train


def test_every_field_is_trained_and_evaluated_beside_the_baseline(trained):
    assert set(trained.fields) == {"group", "priority", "type"}
    for outcome in trained.fields.values():
        assert outcome.evaluation.n == outcome.baseline.n == outcome.n_test > 0
        assert outcome.evaluation.macro_f1 > 0.5  # the synthetic topics are easy to learn
    assert trained.fields["type"].labels == ["Incident", "Request"]
    assert len(trained.holdout) + trained.n_train == trained.n_rows


def test_rare_classes_are_learned_but_only_suggested_and_reported(trained):
    group = trained.fields["group"]
    train_part_count = RARE["Facilities"] - int((trained.holdout["group"] == "Facilities").sum())
    assert train_part_count >= 2
    # every class with two training rows is in the head: its rows train it, nothing is left out
    assert "Facilities" in group.labels and group.excluded_classes == {}
    assert group.n_train == trained.n_train
    assert group.evaluation.outside_head == {}
    # ... but with fewer than min_examples_per_class (10) training rows it is never applied
    assert group.suggest_only["Facilities"] == f"{train_part_count} training rows (fewer than 10)"
    manifest = trained.manifest("20260101-000000-abcdef", pd.Timestamp("2026-01-01", tz="UTC"))
    assert manifest.fields["group"].suggest_only == group.suggest_only
    assert trained.report().to_dict()["fields"]["group"]["suggest_only"] == group.suggest_only


def test_a_class_with_one_training_row_is_left_out_and_reported():
    from triage.models.training import _plan_fields
    from triage.models.training_config import TrainConfig

    part = pd.DataFrame({"group": pd.Series(["a", "a", "b", "b", "c", None], dtype=object)})
    plan, skipped = _plan_fields(part, TrainConfig(fields=["group"], min_examples_per_class=30))
    assert plan == {"group": (["a", "b"], {"c": 1})} and not skipped


def test_a_class_is_applied_only_where_its_own_hold_out_evidence_reaches_the_target():
    from triage.models.evaluation import evaluate_field
    from triage.models.training import suggest_only

    # "a": 200 confident and right; "b": 60 confident, 50 right (83%); "c": 3 confident and right
    # (100%, but three rows are no evidence); "d": few training rows, predicted only below the
    # apply threshold (and wrongly)
    truth = ["a"] * 200 + ["b"] * 50 + ["a"] * 10 + ["c"] * 3 + ["a"] * 20
    predicted = ["a"] * 200 + ["b"] * 60 + ["c"] * 3 + ["d"] * 20
    confidence = [0.99] * 263 + [0.3] * 20
    labels = ["a", "b", "c", "d"]
    proba = np.full((len(truth), 4), 0.0)
    for row, (label, p) in enumerate(zip(predicted, confidence, strict=True)):
        proba[row] = (1 - p) / 3
        proba[row, labels.index(label)] = p
    evaluation = evaluate_field("group", truth, proba, labels, target_precision=0.9)
    assert evaluation.apply is not None and evaluation.apply.threshold == 0.99
    why = suggest_only(evaluation, {"a": 500, "b": 500, "c": 500, "d": 5}, min_rows=30)
    assert set(why) == {"b", "c", "d"}
    assert why["b"].startswith("hold-out precision 50/60 at the apply threshold")
    assert why["c"] == "3 hold-out predictions at the apply threshold (fewer than 10)"
    assert why["d"] == "5 training rows (fewer than 30)"


def test_the_manifest_records_labels_thresholds_exclusions_and_provenance(trained):
    manifest = trained.manifest("20260101-000000-abcdef", pd.Timestamp("2026-01-01", tz="UTC"))
    group = manifest.fields["group"]
    assert group.labels == trained.fields["group"].labels
    assert group.excluded_classes == trained.fields["group"].excluded_classes
    assert group.apply.target == 0.9 and group.suggest.target == 0.75
    assert group.metrics["macro_f1"] == trained.fields["group"].evaluation.macro_f1
    choice = trained.fields["group"].choice  # the head's blocks and the evidence they were chosen on
    assert group.metrics["c_sparse"] == choice.strengths[1] == 10.0
    assert group.metrics["c_dense"] == (choice.strengths[0] or None)
    scores = {k: v for k, v in group.metrics.items() if k.startswith("cv_macro_f1")}
    assert sorted(scores.values()) == sorted(choice.scores.values()) and len(scores) == 7
    assert manifest.training.data_hash == trained.data_hash and manifest.training.seed == 42
    assert manifest.classifier.max_length == 32 and manifest.classifier.memory == {
        "k": 10,
        "temperature": 0.02,
    }


def test_same_data_and_seed_train_the_same_model_whatever_the_row_order(tmp_path):
    frame = labelled_tickets(60, seed=2)
    shuffled = frame.sample(frac=1.0, random_state=7).reset_index(drop=True)
    config = tiny_config(tmp_path, fields=["group", "type"])
    first, second = train(frame, config), train(shuffled, config)
    assert first.data_hash == second.data_hash
    assert first.holdout["text_hash"].tolist() == second.holdout["text_hash"].tolist()
    texts = [*first.holdout["text"].tolist(), "an unseen ticket about a broken vpn router"]
    one, two = first.model.predict_proba(texts), second.model.predict_proba(texts)
    for field in one:
        np.testing.assert_allclose(one[field], two[field], atol=1e-5)


def test_a_different_seed_gives_a_different_split(trained, tickets, tmp_path):
    other = prepare_frame(tickets, tiny_config(tmp_path, seed=1))
    assert data_hash(other, ["group", "priority", "type"]) == trained.data_hash  # same data
    from triage.models.training import split_holdout

    _, test_rows, _ = split_holdout(other, tiny_config(tmp_path, seed=1))
    assert sorted(other.iloc[test_rows]["text_hash"]) != sorted(trained.holdout["text_hash"])


def test_rows_without_a_label_train_only_the_fields_they_have(tmp_path):
    frame = labelled_tickets(90, seed=3)
    frame.loc[::3, "priority"] = None
    result = train(frame, tiny_config(tmp_path, fields=["priority", "type"], c_dense=0.01))
    assert result.fields["priority"].n_train < result.fields["type"].n_train
    assert result.fields["priority"].n_test == int(result.holdout["priority"].notna().sum())


def test_description_falls_back_to_body_and_label_columns_map_fields(tmp_path):
    frame = labelled_tickets(60, seed=4).rename(columns={"description": "body", "group": "queue"})
    config = tiny_config(tmp_path, fields=["group"], label_columns={"group": "queue"}, c_dense=0.01)
    prepared = prepare_frame(frame, config)
    expected = {ticket_text(s, b) for s, b in zip(frame["subject"], frame["body"], strict=True)}
    assert set(prepared["text"]) == expected
    assert set(prepared["group"]) == {"Billing", "Hardware", "Network"}


def test_missing_columns_are_named(tmp_path):
    frame = labelled_tickets(30).drop(columns=["priority"])
    with pytest.raises(TrainingError, match="priority"):
        train(frame, tiny_config(tmp_path))
    with pytest.raises(TrainingError, match="missing text column 'subject'"):
        train(frame.drop(columns=["subject"]), tiny_config(tmp_path, fields=["type"]))


def test_a_field_without_two_usable_classes_is_skipped_and_none_left_is_an_error(tmp_path):
    frame = labelled_tickets(60, seed=5)
    frame["status"] = "open"
    result = train(frame, tiny_config(tmp_path, fields=["type", "status"], c_dense=0.01))
    assert list(result.fields) == ["type"]
    assert "status" in result.skipped_fields
    with pytest.raises(TrainingError, match="no field can be trained"):
        train(frame, tiny_config(tmp_path, fields=["status"]))


def test_config_refuses_inconsistent_settings(tmp_path):
    with pytest.raises(ValueError, match="suggest_precision"):
        tiny_config(tmp_path, target_precision=0.7, suggest_precision=0.8)
    with pytest.raises(ValueError, match="label_columns"):
        tiny_config(tmp_path, fields=["type"], label_columns={"group": "queue"})


def test_fine_tuning_changes_the_encoder_and_still_trains_every_field(tmp_path):
    from triage.models.classifier import load_encoder
    from triage.models.encoders import resolve_encoder

    config = tiny_config(
        tmp_path, fields=["group"], fine_tune=True, epochs=1, batch_size=16, learning_rate=1e-4, c_dense=0.01
    )
    result = train(labelled_tickets(45, seed=6), config)
    base, _ = load_encoder(resolve_encoder("minilm", tmp_path).path, "cpu")
    tuned = result.model.encoder.encoder.layer[0].attention.self.query.weight.detach()
    assert not torch.allclose(tuned, base.encoder.layer[0].attention.self.query.weight)
    assert result.model.config.fine_tuned and result.fields["group"].evaluation.n > 0


def test_from_settings_follows_the_model_section():
    from triage.models.training_config import TrainConfig
    from triage.settings import load_settings

    model = {"max_length": 64, "seed": 7, "base_encoder": "e5-small", "train_options": {"neighbours": 5}}
    settings = load_settings(model=model)
    config = TrainConfig.from_settings(settings, head="linear")
    assert (config.max_length, config.seed, config.base_encoder, config.head) == (64, 7, "e5-small", "linear")
    assert config.neighbours == 5
    assert config.fields == settings.enabled_fields()
    assert config.embedding_cache == settings.model.store / "embedding-cache"


class RecordingProgress:
    """A triage.models.progress.Progress that keeps every event."""

    def __init__(self):
        self.events = []

    def started(self, phase, total):
        self.events.append(("started", phase, total))

    def advanced(self, phase, done, total):
        self.events.append(("advanced", phase, done, total))

    def finished(self, phase, seconds):
        self.events.append(("finished", phase, seconds))


def test_training_reports_every_phase_in_order_with_steps_ending_at_their_total(tmp_path):
    recorder = RecordingProgress()
    train(labelled_tickets(60, seed=2), tiny_config(tmp_path, fields=["group", "type"]), progress=recorder)
    phases, current = [], None  # (name, started total, [(done, total)], seconds), one phase at a time
    for event in recorder.events:
        if event[0] == "started":
            assert current is None, f"{event[1]} started inside {current}"
            current = (event[1], event[2], [])
        elif event[0] == "advanced":
            assert current is not None and event[1] == current[0]
            current[2].append((event[2], event[3]))
        else:
            assert current is not None and event[1] == current[0] and event[2] >= 0.0
            phases.append(current)
            current = None
    names = [name for name, _, _ in phases]
    assert names == ["preparation", "embedding", "features", "head selection", "final fit", "evaluation"]
    for name, _, steps in phases:
        assert steps, f"{name} reported no step"
        done = [d for d, _ in steps]
        assert done == sorted(set(done)), f"{name} not monotone: {steps}"
        assert steps[-1][0] == steps[-1][1] > 0, f"{name} does not end at its total: {steps}"
    totals = {name: steps[-1][1] for name, _, steps in phases}
    assert totals["head selection"] == 2 * 7 * 3  # two fields x seven candidates x three folds
    assert totals["final fit"] == 2 and totals["evaluation"] == 3  # the hold-out's features, then per field
    assert totals["embedding"] >= 1  # token-budget batches


def test_the_baseline_is_scikit_learns_tfidf_baseline_on_the_same_rows(trained, tickets):
    """Training fits the baseline's logistic regression with its own solver on n-grams vectorised
    once for all fields: the hold-out scores are those of the scikit-learn TfidfBaseline trained on
    the same rows, every class included."""
    from sklearn.metrics import f1_score

    from triage.models.baseline import TfidfBaseline
    from triage.models.training import TEXT, split_holdout

    data = prepare_frame(tickets, trained.config)
    train_rows, test_rows, _ = split_holdout(data, trained.config)
    train_part, holdout = data.iloc[train_rows], data.iloc[test_rows]
    for name, outcome in trained.fields.items():
        fit_part = train_part[train_part[name].isin(outcome.labels)]
        reference = TfidfBaseline(seed=trained.config.seed).fit(
            fit_part[TEXT].tolist(), fit_part[name].tolist()
        )
        labelled = holdout[holdout[name].notna()]
        predicted = reference.predict(labelled[TEXT].tolist())
        expected = f1_score(labelled[name].tolist(), predicted, average="macro", zero_division=0)
        assert outcome.baseline.labels == outcome.labels
        assert abs(outcome.baseline.macro_f1 - expected) <= 0.02, name
