"""Promotion compares the tags heads too, on the tickets neither model trained on (the fields' temporal
hold-out): a candidate whose tags are worse beyond noise is kept back, and a head on one side only is
named, never compared silently.

The current model trains on tickets 0..359 (temporal hold-out 288..359, so cutoff ticket 287), the
candidates on 60..399 (temporal hold-out 298..399, new to both); hold-outs large enough for tags to reach
apply thresholds. Tags follow the text: ``urgent`` on urgent
tickets and the group's own tag (``billing``, ``hardware``, ``network``).
"""

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from model_tickets import labelled_tickets, tiny_config

from triage.models.manifest import TagsManifest, ThresholdPoint
from triage.models.store import ModelStore
from triage.models.tags import compare_tags
from triage.models.training import train

START = datetime(2026, 1, 1, tzinfo=UTC)
FRESH = 102
"""Tickets 298..399: after the current model's cutoff, outside the candidates' training part."""


def history(n: int = 400) -> pd.DataFrame:
    frame = labelled_tickets(n, seed=7)
    frame["ticket_id"] = range(n)
    frame["updated_at"] = [START + timedelta(hours=i) for i in range(n)]
    frame["tags"] = [
        [group.lower(), *(["urgent"] if priority == "high" else [])]
        for group, priority in zip(frame["group"], frame["priority"], strict=True)
    ]
    return frame


@pytest.fixture(scope="module")
def tickets():
    return history()


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    root = tmp_path_factory.mktemp("enc")
    return lambda **kw: tiny_config(root, fields=["group"], c_dense=0.01, neighbours=0, **kw)


@pytest.fixture(scope="module")
def current(tickets, config):
    return train(tickets.iloc[0:360], config(test_size=0.2, tags=True))


@pytest.fixture(scope="module")
def current_without_tags(tickets, config):
    return train(tickets.iloc[0:360], config(test_size=0.2))


@pytest.fixture(scope="module")
def candidate(tickets, config):
    return train(tickets.iloc[60:400], config(test_size=0.3, tags=True))


@pytest.fixture(scope="module")
def scrambled(tickets, config):
    """The candidate's history with its training part's tags shuffled between tickets: tags learned
    from noise (its hold-out, the tickets compared on, keeps the true tags)."""
    frame = tickets.iloc[60:400].copy()
    rng = np.random.default_rng(3)
    train_part = frame["ticket_id"] < 298
    frame.loc[train_part, "tags"] = pd.Series(
        list(rng.permutation(frame.loc[train_part, "tags"].to_numpy())), index=frame.index[train_part]
    )
    return train(frame, config(test_size=0.3, tags=True))


def store_with(tmp_path, current) -> ModelStore:
    store = ModelStore(tmp_path)
    store.register(current)
    return store


def test_a_candidate_whose_tags_are_worse_beyond_noise_is_kept_back(tmp_path, current, scrambled):
    store = store_with(tmp_path, current)
    before = store.current_version()
    version, promoted, reason = store.register(scrambled)
    assert not promoted and store.current_version() == before
    row = store.manifest(version.version).promotion.comparison["tags"]
    assert row["tickets"] == FRESH and row["candidate_micro_f1"] < row["current_micro_f1"]
    assert row["micro_f1_high"] < 0  # the whole interval of the difference below zero
    assert (
        f"tags micro-F1 {row['candidate_micro_f1']:.3f} < {row['current_micro_f1']:.3f} (95% interval"
        in reason
    )
    assert f"tags: reaches no apply threshold for any tag, where current {before} may add" in reason
    assert f"on {FRESH} tickets neither trained on" in reason
    assert store.manifest(version.version).promotion.comparison["group"]["tickets"] == FRESH


def test_a_candidate_whose_tags_are_as_good_is_promoted_with_the_tags_compared(tmp_path, current, candidate):
    store = store_with(tmp_path, current)
    version, promoted, reason = store.register(candidate)
    row = store.manifest(version.version).promotion.comparison["tags"]
    assert promoted, reason
    assert row["tickets"] == FRESH and row["micro_f1_high"] >= 0  # not worse beyond noise
    assert row["candidate_added"] > 0 and row["current_added"] > 0
    assert reason.endswith(
        f"; tags micro-F1 {row['candidate_micro_f1']:.3f} vs {row['current_micro_f1']:.3f}, precision of the "
        f"tags added {row['candidate_added_precision']:.3f} vs {row['current_added_precision']:.3f} "
        f"({row['candidate_added']:.0f} vs {row['current_added']:.0f} added)"
    )


def test_a_tags_head_on_one_side_only_is_named(tmp_path, current, current_without_tags, candidate):
    store = store_with(tmp_path / "plain", current_without_tags)
    version, promoted, reason = store.register(candidate)  # tags added: said, not compared
    assert promoted, reason
    assert "; tags: a new head (current has none), micro-F1" in reason
    assert "tags" not in store.manifest(version.version).promotion.comparison

    store = store_with(tmp_path / "tagged", current)
    before = store.current_version()
    _, promoted, reason = store.register(current_without_tags)  # tags dropped: kept back
    assert not promoted and store.current_version() == before
    assert reason.startswith("drops the tags head (not asked for: model.train_options {tags: true})")


def test_the_comparison_counts_a_tag_one_head_does_not_know_against_it():
    """Micro-F1 over both heads' tags: a head that never learned ``vpn`` misses it where tickets have it."""
    truth = [("vpn", "urgent"), ("urgent",), ("vpn",), ()] * 25

    def head(tags):
        point = ThresholdPoint(target=0.9, threshold=0.8)
        return TagsManifest(
            labels=tags,
            apply=dict.fromkeys(tags, point),
            suggest=dict.fromkeys(tags, point),
            n_train=1,
            n_test=1,
        )

    sure = np.array([[float("urgent" in t), float("vpn" in t)] for t in truth])
    both = (head(["urgent", "vpn"]), sure)
    urgent_only = (head(["urgent"]), sure[:, :1])
    out = compare_tags(truth, urgent_only, both)
    assert out.micro_f1.current == 1.0 and out.micro_f1.candidate == pytest.approx(2 * 50 / (2 * 50 + 50))
    assert out.precision is not None and out.precision.candidate == out.precision.current == 1.0
    assert out.micro_f1.worse(0.005) and not out.precision.worse(0.005)
    assert out.added == (50, 100) and out.addable == (1, 2)


def test_a_tags_head_that_adds_no_tag_where_the_baseline_would_is_flagged(tmp_path, candidate):
    """As a field's head without an apply threshold: the registration's reason (shown by the CLI) says so."""
    from dataclasses import replace

    from triage.models.tags import evaluate_tags, multi_hot

    outcome = candidate.tags
    holdout = candidate.holdout
    truth = multi_hot(holdout["tags"].tolist(), outcome.tags)
    flat = np.full(truth.shape, 0.5)
    blind = replace(
        outcome,
        evaluation=evaluate_tags(truth, flat, outcome.tags, target_precision=0.9, suggest_precision=0.75),
    )
    addable = [t for t in outcome.tags if outcome.baseline.apply[t] is not None]
    assert addable and outcome.apply_warning is None
    assert blind.apply_warning == (
        f"tags: reaches no apply threshold at precision 0.90 for any tag, where the baseline does for "
        f"{len(addable)} ({', '.join(addable)}): with it no tag is ever added"
    )
    _, promoted, reason = ModelStore(tmp_path).register(replace(candidate, tags=blind))
    assert promoted and reason == f"first model in the store; WARNING {blind.apply_warning}"


def test_tags_added_at_a_lower_precision_beyond_noise_are_a_problem():
    """The candidate adds ``urgent`` to every ticket (half of them wrongly), the current one only where right."""
    truth = [("urgent",), ()] * 60
    point = ThresholdPoint(target=0.9, threshold=0.8)
    head = TagsManifest(
        labels=["urgent"], apply={"urgent": point}, suggest={"urgent": point}, n_train=1, n_test=1
    )
    right = np.array([[float(bool(t))] for t in truth])
    out = compare_tags(truth, (head, np.full((120, 1), 0.9)), (head, right))
    assert out.precision is not None and (out.precision.candidate, out.precision.current) == (0.5, 1.0)
    assert out.added == (120, 60) and out.precision.high < 0
    (problem, other) = out.problems(0.005, "current v1")
    assert problem.startswith("tags micro-F1 0.667 < 1.000")
    assert other.startswith("tags precision of the tags added 0.500 < 1.000 (95% interval of the difference")
