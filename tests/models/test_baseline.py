"""The TF-IDF + logistic-regression baseline: shape, determinism, and that it learns."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from triage.models.baseline import TfidfBaseline

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
