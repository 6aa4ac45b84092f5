"""Field metrics against small cases computed by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from triage.models.evaluation import compare_macro_f1, evaluate_field, expected_calibration_error

LABELS = ["a", "b", "c"]
# true label, argmax prediction (confidence):  a a(.95) | a a(.85) | a b(.55) | b b(.65) | b c(.75) | c c(.92)
Y_TRUE = ["a", "a", "a", "b", "b", "c"]
PROBA = np.array(
    [
        [0.95, 0.03, 0.02],
        [0.85, 0.10, 0.05],
        [0.30, 0.55, 0.15],
        [0.20, 0.65, 0.15],
        [0.05, 0.20, 0.75],
        [0.04, 0.04, 0.92],
    ]
)


@pytest.fixture
def ev():
    # point estimates: six rows are far too few for a confidence bound to reach any target
    return evaluate_field("group", Y_TRUE, PROBA, LABELS, min_selected=2, confidence_level=None)


def test_accuracy_and_f1(ev):
    # a: P 2/2, R 2/3, F1 0.8 | b: P 1/2, R 1/2, F1 0.5 | c: P 1/2, R 1/1, F1 2/3
    assert ev.n == 6
    assert ev.accuracy == pytest.approx(4 / 6)
    assert ev.per_class["a"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert ev.per_class["b"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert ev.per_class["c"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert ev.macro_f1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert ev.weighted_f1 == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * 2 / 3) / 6)


def test_confusion_rows_are_true_labels(ev):
    assert ev.confusion == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert ev.outside_head == {}


def test_ece_and_reliability(ev):
    # bins: [.9,1): .95 .92 both right -> |1 - .935| x 2/6 ; [.8,.9): .85 right -> .15 ;
    # [.7,.8): .75 wrong -> .75 ; [.6,.7): .65 right -> .35 ; [.5,.6): .55 wrong -> .55 (each x 1/6)
    assert ev.ece == pytest.approx((2 * 0.065 + 0.15 + 0.75 + 0.35 + 0.55) / 6)
    top = ev.reliability[9]
    assert (top.count, top.accuracy) == (2, 1.0)
    assert top.confidence == pytest.approx(0.935)
    assert [b.count for b in ev.reliability] == [0, 0, 0, 0, 0, 1, 1, 1, 1, 2]
    assert ev.reliability[0].accuracy is None


def test_perfectly_calibrated_has_zero_ece():
    confidence = np.array([0.75] * 4)
    assert expected_calibration_error(confidence, np.array([1, 1, 1, 0], bool)) == pytest.approx(0.0)


def test_curve_points(ev):
    curve = ev.curve()
    assert [p.threshold for p in curve] == pytest.approx([0.95, 0.92, 0.85, 0.75, 0.65, 0.55])
    assert [p.selected for p in curve] == [1, 2, 3, 4, 5, 6]
    assert [p.precision for p in curve] == pytest.approx([1.0, 1.0, 1.0, 0.75, 0.8, 4 / 6])


def test_apply_threshold_is_lowest_reaching_target(ev):
    # precision >= .9 holds down to .85 (3 of 6 rows, all right); below it precision drops to .75/.8
    assert ev.apply_threshold == pytest.approx(0.85)
    assert ev.apply_coverage == pytest.approx(0.5)
    assert ev.apply_precision == pytest.approx(1.0)


def test_suggest_threshold_is_lowest_not_first_reaching(ev):
    # .75 reaches .75 exactly, but .65 (5 rows, 4 right: .8) is lower and also reaches it
    assert ev.suggest_threshold == pytest.approx(0.65)
    assert ev.suggest_coverage == pytest.approx(5 / 6)
    assert ev.suggest_precision == pytest.approx(0.8)


def test_threshold_needs_enough_selected_rows():
    strict = evaluate_field(
        "group", Y_TRUE, PROBA, LABELS, target_precision=1.0, min_selected=3, confidence_level=None
    )
    assert strict.apply_threshold == pytest.approx(0.85)
    too_few = evaluate_field(
        "group", Y_TRUE, PROBA, LABELS, target_precision=1.0, min_selected=4, confidence_level=None
    )
    assert too_few.apply_threshold is None
    assert too_few.apply_coverage == 0.0
    assert too_few.apply_precision is None


def test_unreachable_precision_is_none():
    ev = evaluate_field(
        "group", Y_TRUE, PROBA, LABELS, target_precision=0.9, suggest_precision=0.9, min_selected=4
    )
    assert ev.apply is None and ev.suggest is None


def test_default_min_selected_refuses_tiny_samples(ev):
    default = evaluate_field("group", Y_TRUE, PROBA, LABELS)
    assert default.min_selected == 30
    assert default.apply_threshold is None


def test_at_threshold(ev):
    point = ev.at_threshold(0.75)
    assert (point.selected, point.coverage, point.precision) == pytest.approx((4, 4 / 6, 0.75))
    assert ev.threshold_for_precision(0.8).threshold == pytest.approx(0.65)


def test_labels_outside_the_head_count_as_errors():
    ev = evaluate_field(
        "group",
        ["a", "b", "z", "z"],
        np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]]),
        ["a", "b"],
        min_selected=1,
    )
    assert ev.accuracy == 0.5
    assert ev.outside_head == {"z": 2}
    assert ev.n_outside_head == 2
    assert ev.per_class["z"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    # a and b: P 1/2, R 1 -> F1 2/3 each; z: 0 -> macro over three classes
    assert ev.macro_f1 == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert ev.confusion == [[1, 0], [0, 1]]
    # the two out-of-head rows are in the curve as errors
    assert ev.curve()[-1].precision == pytest.approx(0.5)


def test_thresholds_on_random_data_are_consistent():
    rng = np.random.default_rng(0)
    n, k = 2000, 4
    logits = rng.normal(size=(n, k))
    proba = np.exp(logits * 2) / np.exp(logits * 2).sum(1, keepdims=True)
    # calibrated by construction: each true label is drawn from the predicted distribution
    truth_idx = (proba.cumsum(1) < rng.random((n, 1))).sum(1)
    labels = ["w", "x", "y", "z"]
    ev = evaluate_field("f", [labels[i] for i in truth_idx], proba, labels, target_precision=0.9)
    assert ev.apply is not None and ev.confidence_level == 0.95
    reached = ev.at_threshold(ev.apply_threshold)
    assert reached.precision_lower >= 0.9
    assert reached.precision > reached.precision_lower
    assert reached.selected >= ev.min_selected == 40
    lower = [p for p in ev.curve() if p.threshold < ev.apply_threshold and p.selected >= ev.min_selected]
    assert lower and all(p.precision_lower < 0.9 for p in lower)
    # the point estimate alone would act on more rows than the bound allows
    optimistic = evaluate_field(
        "f", [labels[i] for i in truth_idx], proba, labels, target_precision=0.9, confidence_level=None
    )
    assert optimistic.apply_threshold < ev.apply_threshold
    assert optimistic.apply_coverage > ev.apply_coverage
    assert ev.ece < 0.05  # calibrated data


def test_wilson_lower_bound_matches_the_formula():
    # 45 right of 50 at 95% one-sided (z = 1.645): the Wilson score interval's lower end is 0.8084
    truth = ["a"] * 45 + ["b"] * 5
    proba = np.tile([0.9, 0.1], (50, 1))
    ev = evaluate_field("f", truth, proba, ["a", "b"], min_selected=1, target_precision=0.8)
    (point,) = ev.curve()
    assert point.precision == pytest.approx(0.9)
    assert point.precision_lower == pytest.approx(0.8084, abs=1e-3)
    assert ev.apply_threshold == pytest.approx(0.9)
    stricter = evaluate_field("f", truth, proba, ["a", "b"], min_selected=1, target_precision=0.85)
    assert stricter.apply is None  # 90% observed, but not 85% with 95% confidence


def test_overconfident_model_has_large_ece():
    rng = np.random.default_rng(2)
    proba = np.tile([0.95, 0.05], (400, 1))
    truth = np.where(rng.random(400) < 0.6, "a", "b")  # 95% confident, about 60% right
    assert evaluate_field("f", truth, proba, ["a", "b"]).ece == pytest.approx(0.35, abs=0.06)


def test_to_dict_is_json_and_thinned():
    rng = np.random.default_rng(1)
    proba = rng.dirichlet([1, 1, 1], size=500)
    ev = evaluate_field("f", rng.choice(LABELS, 500), proba, LABELS)
    data = json.loads(json.dumps(ev.to_dict()))
    assert data["field"] == "f"
    curve = data["curve"]
    assert len(curve["threshold"]) == len(curve["precision"]) <= 101
    assert curve["selected"][0] == 1 and curve["coverage"][-1] == 1.0
    assert set(data["per_class"]) == set(LABELS)


@pytest.mark.parametrize(
    ("y_true", "proba", "message"),
    [
        ([], np.zeros((0, 2)), "empty"),
        (["a"], np.array([[0.5, 0.5, 0.0]]), "shape"),
        (["a"], np.array([[np.nan, 0.5]]), "NaN"),
        (["a", "b"], np.array([[0.5, 0.5]]), "shape"),
        (["a", None], np.array([[0.5, 0.5], [0.5, 0.5]]), "missing labels"),
        (["a", float("nan")], np.array([[0.5, 0.5], [0.5, 0.5]]), "missing labels"),
        (["a"], np.array([[0.5, 1.5]]), r"\[0, 1\]"),
    ],
)
def test_bad_input_is_refused(y_true, proba, message):
    with pytest.raises(ValueError, match=message):
        evaluate_field("f", y_true, proba, ["a", "b"])


def _predicting(truth_idx, predicted_idx, labels):
    proba = np.full((len(truth_idx), len(labels)), 0.1)
    proba[np.arange(len(truth_idx)), predicted_idx] = 0.8
    return evaluate_field("f", [labels[i] for i in truth_idx], proba, labels)


def test_bootstrap_of_identical_predictions_is_zero():
    rng = np.random.default_rng(3)
    truth, predicted = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    same = compare_macro_f1(_predicting(truth, predicted, LABELS), _predicting(truth, predicted, LABELS))
    assert (same.difference, same.low, same.high) == (0.0, 0.0, 0.0)
    assert not same.significant


def test_bootstrap_separates_a_clearly_better_model():
    rng = np.random.default_rng(4)
    truth = rng.integers(0, 3, 600)
    good = np.where(rng.random(600) < 0.9, truth, (truth + 1) % 3)
    poor = np.where(rng.random(600) < 0.5, truth, (truth + 1) % 3)
    result = compare_macro_f1(_predicting(truth, good, LABELS), _predicting(truth, poor, LABELS))
    assert 0 < result.low <= result.difference <= result.high
    assert result.significant and result.level == 0.95
    reverse = compare_macro_f1(_predicting(truth, poor, LABELS), _predicting(truth, good, LABELS))
    assert reverse.high < 0 and reverse.significant


def test_bootstrap_of_a_small_difference_is_within_noise():
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 3, 300)
    a = np.where(rng.random(300) < 0.70, truth, (truth + 1) % 3)
    b = np.where(rng.random(300) < 0.68, truth, (truth + 1) % 3)
    result = compare_macro_f1(_predicting(truth, a, LABELS), _predicting(truth, b, LABELS))
    assert result.low < 0 < result.high and not result.significant


def test_bootstrap_needs_the_same_rows():
    rng = np.random.default_rng(6)
    one = _predicting(rng.integers(0, 3, 100), rng.integers(0, 3, 100), LABELS)
    other = _predicting(rng.integers(0, 3, 100), rng.integers(0, 3, 100), LABELS)
    assert compare_macro_f1(one, other) is None
