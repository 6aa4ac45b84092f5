"""Honest promotion: both models scored only on tickets neither trained on.

The current model trains on tickets 0..239 (its training part 0..215, cutoff ticket 215); the
candidate on the overlapping later history 40..279 (temporal hold-out 208..279). Tickets 0..199
carry 40% random group labels, which a model trained on them memorises: scoring the current model
on tickets it trained on (as the old rule did) makes it look far better than it is.
"""

import json
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from model_tickets import TOPICS, labelled_tickets, tiny_config

from triage.models.evaluation import apply_gap, evaluate_field
from triage.models.manifest import ModelManifest, keys_sha256
from triage.models.store import ModelStore, promotion_tickets, score_version
from triage.models.training import ID, TrainingError, prepare_frame, train

START = datetime(2026, 1, 1, tzinfo=UTC)
CURRENT_TRAINED = range(0, 216)
FRESH = range(216, 280)
"""The candidate's hold-out tickets resolved after the current model's cutoff."""


def history(n: int = 280, *, noisy_below: int = 200) -> pd.DataFrame:
    """Tickets 0..n-1, one an hour from ``START``; below ``noisy_below``, 40% random groups."""
    frame = labelled_tickets(n, seed=5)
    rng = random.Random(1)
    frame["ticket_id"] = range(n)
    frame["updated_at"] = [START + timedelta(hours=i) for i in range(n)]
    frame["group"] = [
        rng.choice(list(TOPICS)) if i < noisy_below and rng.random() < 0.4 else group
        for i, group in enumerate(frame["group"])
    ]
    return frame


def ids(keys) -> set[int]:
    return {int(key) for key in keys}


@pytest.fixture(scope="module")
def tickets_over_time():
    return history()


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    return lambda **kw: tiny_config(
        tmp_path_factory.mktemp("enc"), fields=["group"], c_dense=0.01, neighbours=0, **kw
    )


@pytest.fixture(scope="module")
def current(tickets_over_time, config):
    return train(tickets_over_time.iloc[0:240], config(test_size=0.1))


@pytest.fixture(scope="module")
def candidate(tickets_over_time, config):
    return train(tickets_over_time.iloc[40:280], config(test_size=0.3))


@pytest.fixture(scope="module")
def untimed(tickets_over_time, config):
    """The candidate's history without times: split at random, as training did before."""
    return train(tickets_over_time.iloc[40:280].drop(columns=["updated_at"]), config(test_size=0.3))


@pytest.fixture
def store(tmp_path, current):
    """A store whose current model is ``current``."""
    store = ModelStore(tmp_path)
    store.register(current)
    return store


def test_model_json_records_the_training_cutoff_and_a_fingerprint_of_the_tickets(store, tickets_over_time):
    folder = store.current().path
    manifest = ModelManifest.read(folder)
    recorded = manifest.training.training_set
    assert recorded.key == ID and recorded.count == len(CURRENT_TRAINED)
    assert recorded.sha256 == keys_sha256(str(i) for i in CURRENT_TRAINED)
    assert recorded.cutoff == START + timedelta(hours=CURRENT_TRAINED[-1])
    assert manifest.training.split.startswith("temporal: the newest 24 by updated_at")
    text = (folder / "model.json").read_text()
    assert json.loads(text)["training"]["training_set"]["cutoff"] == "2026-01-09T23:00:00Z"
    assert not [s for s in tickets_over_time["subject"] if s in text]  # never ticket text


def test_the_hold_out_is_the_newest_resolved_tickets(candidate):
    assert ids(candidate.holdout[ID]) == set(range(208, 280))
    assert ids(candidate.train_keys) == set(range(40, 208))


def test_overlapping_histories_are_compared_on_tickets_after_the_current_cutoff_only(
    store, candidate, untimed
):
    current_version = store.current()
    # The old rule: the current model scored on the candidate's (random, stratified) hold-out.
    old = untimed
    assert ids(old.holdout[ID]) & set(CURRENT_TRAINED)  # tickets the current model trained on
    leaky = score_version(current_version.path, old.holdout, ["group"], old.config)[0]["group"]
    old_gap = leaky.macro_f1 - old.fields["group"].evaluation.macro_f1
    assert old_gap > store.tolerance + 0.05  # the leak favours the current model by far

    tickets, rule = promotion_tickets(candidate, ModelManifest.read(current_version.path))
    assert ids(tickets[ID]) == set(FRESH) and rule.startswith("resolved after current's training cutoff")
    version, promoted, reason = store.register(candidate)
    recorded = store.manifest(version.version).promotion
    assert recorded.scored_on.count == len(FRESH) and recorded.scored_on.key == ID
    assert recorded.scored_on.sha256 == keys_sha256(str(i) for i in FRESH)
    row = recorded.comparison["group"]
    assert row["tickets"] == len(FRESH) and f"on {len(FRESH)} tickets neither trained on" in reason
    assert row["current_macro_f1"] < leaky.macro_f1  # honestly scored, the current model is worse
    assert row["current_macro_f1"] - row["candidate_macro_f1"] < old_gap - 0.05
    assert promoted == (row["candidate_macro_f1"] >= row["current_macro_f1"] - store.tolerance)


def test_too_few_fresh_tickets_promote_nothing_and_say_what_to_do(tmp_path, current, candidate):
    store = ModelStore(tmp_path, min_tickets=len(FRESH) + 1)
    first, _, _ = store.register(current)
    version, promoted, reason = store.register(candidate)
    assert not promoted and store.current().version == first.version
    assert "too few tickets neither model trained on (resolved after current's training cutoff" in reason
    assert f"group {len(FRESH)} labelled, at least {len(FRESH) + 1} needed" in reason
    assert f"`triage models promote {version.version}`" in reason
    recorded = store.manifest(version.version).promotion
    assert recorded.scored_on.count == len(FRESH) and not recorded.comparison


def test_without_times_only_a_model_trained_on_the_same_tickets_is_compared(
    tmp_path, store, untimed, trained
):
    _, promoted, reason = store.register(untimed)
    assert not promoted and "the candidate's training data had no updated_at column" in reason
    same = ModelStore(tmp_path / "same", min_tickets=1)
    same.register(trained)  # the untimed synthetic tickets, twice
    _, promoted, reason = same.register(trained)
    assert promoted and "both trained on the same tickets" in reason


def test_apply_gap_names_a_head_without_an_apply_threshold():
    truth = ["a", "b"] * 50
    sure = np.array([[0.99, 0.01] if t == "a" else [0.01, 0.99] for t in truth])
    flat = np.full((100, 2), 0.5)
    good, none = (evaluate_field("group", truth, p, ["a", "b"]) for p in (sure, flat))
    assert none.apply is None and good.apply is not None
    warning = apply_gap(none, good, "baseline")
    assert warning.startswith(
        "group: reaches no apply threshold at precision 0.90, where the baseline covers"
    )
    assert apply_gap(good, none, "baseline") is None and apply_gap(none, none, "baseline") is None


def test_a_candidate_that_loses_the_apply_threshold_is_not_promoted(store, candidate, monkeypatch):
    current_version = store.current()

    def scored(folder, tickets, fields, config):  # the current model sure and right, the candidate flat
        truth = tickets["group"].tolist()
        labels = sorted(set(truth))
        sure = np.array([[float(label == t) for label in labels] for t in truth])
        proba = sure if folder == current_version.path else np.full(sure.shape, 1 / len(labels))
        return {"group": evaluate_field("group", truth, proba, labels)}, None

    monkeypatch.setattr("triage.models.store.score_version", scored)
    _, promoted, reason = store.register(candidate)
    assert not promoted and reason.startswith("worse than current")
    assert (
        f"group: reaches no apply threshold at precision 0.90, where the current {current_version.version}"
        in reason
    )


def test_a_head_without_an_apply_threshold_where_the_baseline_has_one_is_flagged(tmp_path, candidate):
    outcome = candidate.fields["group"]
    flat = np.full((outcome.evaluation.n, len(outcome.labels)), 1 / len(outcome.labels))
    truth = candidate.holdout["group"].dropna().tolist()
    blind = replace(outcome, evaluation=evaluate_field("group", truth, flat, outcome.labels))
    assert outcome.baseline.apply is not None and blind.apply_warning
    result = replace(candidate, fields={"group": blind})
    assert result.report().notes == [f"WARNING {blind.apply_warning}"]
    _, promoted, reason = ModelStore(tmp_path).register(result)
    assert promoted and reason == f"first model in the store; WARNING {blind.apply_warning}"


def test_times_that_are_not_times_are_named(tmp_path):
    frame = history(5).astype({"updated_at": object})
    frame.loc[2, "updated_at"] = "yesterday-ish"
    with pytest.raises(TrainingError, match="column 'updated_at' holds values that are not times"):
        prepare_frame(frame, tiny_config(tmp_path))
