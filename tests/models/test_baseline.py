"""The TF-IDF + logistic-regression baseline: shape, determinism, and that it learns."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression

from triage.models.baseline import RowsBaseline, TfidfBaseline, tfidf_features

TOPICS = {
    "billing": ["invoice charged twice", "refund my payment", "wrong amount on the invoice", "billing error"],
    "network": ["vpn connection drops", "wifi is down", "cannot reach the server", "network outage"],
    "hardware": ["printer jammed", "laptop screen broken", "keyboard not working", "monitor flickers"],
}


def _data(repeat: int = 5):
    texts, labels = [], []
    for label, phrases in TOPICS.items():
        for i in range(repeat):
            for phrase in phrases:
                texts.append(f"{phrase} ticket {i}")
                labels.append(label)
    return texts, labels


def test_fit_predict_proba_shape_and_classes():
    texts, labels = _data()
    model = TfidfBaseline(seed=42).fit(texts, labels)
    assert model.classes_ == ["billing", "hardware", "network"]
    proba = model.predict_proba(["the invoice is wrong", "printer broken", "vpn down"])
    assert proba.shape == (3, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert list(model.predict(["the invoice is wrong", "printer jammed again", "vpn is down"])) == [
        "billing",
        "hardware",
        "network",
    ]


def test_deterministic():
    texts, labels = _data()
    probe = ["invoice for the printer", "server outage", ""]
    first = TfidfBaseline(seed=7).fit(texts, labels).predict_proba(probe)
    second = TfidfBaseline(seed=7).fit(texts, labels).predict_proba(probe)
    np.testing.assert_array_equal(first, second)


def test_is_a_scikit_learn_estimator():
    model = clone(TfidfBaseline(seed=3, C=1.0))
    assert model.get_params()["seed"] == 3 and model.get_params()["C"] == 1.0


def test_missing_texts_are_empty_not_nan():
    texts, labels = _data()
    model = TfidfBaseline().fit([*texts, None, float("nan")], [*labels, "billing", "network"])
    assert model.predict_proba([None]).shape == (1, 3)


@pytest.mark.parametrize(
    ("texts", "labels", "message"),
    [(["a", "b"], ["x"], "2 texts but 1 labels"), (["a", "b"], ["x", "x"], "two classes")],
)
def test_bad_input(texts, labels, message):
    with pytest.raises(ValueError, match=message):
        TfidfBaseline().fit(texts, labels)


def test_one_string_is_refused():
    texts, labels = _data()
    with pytest.raises(TypeError):
        TfidfBaseline().fit(texts, labels).predict_proba("a single string")


def _noisy(n: int, seed: int) -> tuple[list[str], list[str]]:
    """The topics' phrases with a random word each and 20% of the labels swapped: not separable."""
    rng = np.random.default_rng(seed)
    names = sorted(TOPICS)
    texts, labels = [], []
    for i in range(n):
        label = names[i % len(names)]
        texts.append(f"{rng.choice(TOPICS[label])} {rng.choice(['today', 'again', 'please', 'urgent'])}")
        labels.append(str(rng.choice(names)) if rng.random() < 0.2 else label)
    return texts, labels


def test_rows_baseline_is_scikit_learns_logistic_regression_on_the_same_rows():
    """The torch-solved baseline over precomputed TF-IDF rows is the same model as scikit-learn's
    (multinomial, C, balanced weights) converged on those rows: the same probabilities."""
    texts, labels = _noisy(240, seed=0)
    probe, _ = _noisy(60, seed=1)
    vectorizer = tfidf_features().fit(texts)
    rows, probe_rows = vectorizer.transform(texts).astype(np.float32), vectorizer.transform(probe)
    theirs = LogisticRegression(C=10.0, class_weight="balanced", tol=1e-8, max_iter=5000).fit(rows, labels)
    ours = RowsBaseline(tol=1e-6).fit(sp.csr_matrix(rows), labels)
    assert ours.classes_ == list(theirs.classes_)
    np.testing.assert_allclose(ours.predict_proba(probe_rows), theirs.predict_proba(probe_rows), atol=2e-3)


def test_rows_baseline_refuses_mismatched_or_single_class_labels():
    rows = sp.csr_matrix(np.eye(3, dtype=np.float32))
    with pytest.raises(ValueError, match="3 rows but 2 labels"):
        RowsBaseline().fit(rows, ["a", "b"])
    with pytest.raises(ValueError, match="two classes"):
        RowsBaseline().fit(rows, ["a", "a", "a"])
