"""The baseline every model must beat: TF-IDF n-grams and logistic regression.

Word 1-2-grams and character 3-5-grams (within word boundaries), sublinear TF, and a multinomial
logistic regression with balanced class weights. ``max_features`` (None: all) keeps at most
half of it from each vectorizer, the most frequent n-grams (training sets it on large many-class
data, as it bounds the head's TF-IDF block). It is trained and used in memory during an
evaluation only; it is never saved (so never unpickled either).

:class:`RowsBaseline` is the same logistic regression over TF-IDF rows already computed, solved in
torch: training gives it this module's n-grams (:func:`tfidf_features`), vectorised once for the
fields that learn from the same rows instead of once per field.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline, make_union

from triage.models.head_fitting import OFF, class_weights, fit_head
from triage.models.heads import FieldHead, SparseRows


class TfidfBaseline(ClassifierMixin, BaseEstimator):
    """TF-IDF (word 1-2-grams + char 3-5-grams) + logistic regression, scikit-learn style.

    >>> baseline = TfidfBaseline(seed=42).fit(train_texts, train_labels)  # doctest: +SKIP
    >>> baseline.predict_proba(test_texts)  # rows x baseline.classes_     # doctest: +SKIP
    """

    def __init__(
        self,
        seed: int = 42,
        C: float = 10.0,
        class_weight: str | None = "balanced",
        max_iter: int = 2000,
        max_features: int | None = None,
    ):
        self.seed = seed
        self.max_features = max_features
        self.C = C
        self.class_weight = class_weight
        self.max_iter = max_iter

    def fit(self, texts: Sequence[str], y: Sequence[str]) -> TfidfBaseline:
        texts, labels = as_texts(texts), [str(label) for label in y]
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
        if len(set(labels)) < 2:
            raise ValueError("the baseline needs at least two classes to learn from")
        features = tfidf_features(self.max_features)
        classifier = LogisticRegression(
            C=self.C, class_weight=self.class_weight, max_iter=self.max_iter, random_state=self.seed
        )
        self.pipeline_ = Pipeline([("tfidf", features), ("logreg", classifier)]).fit(texts, labels)
        self.classes_: list[str] = [str(c) for c in self.pipeline_.classes_]
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities, one row per text, one column per label in :attr:`classes_`."""
        return self.pipeline_.predict_proba(as_texts(texts))

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.classes_, dtype=object)[self.predict_proba(texts).argmax(axis=1)]


class RowsBaseline(ClassifierMixin, BaseEstimator):
    """The baseline's logistic regression over TF-IDF rows computed elsewhere (a CSR matrix).

    The same model as :class:`TfidfBaseline`'s (multinomial, L2 at ``C``, unpenalised intercepts,
    balanced class weights), solved with the heads' torch L-BFGS in float32
    (:func:`triage.models.head_fitting.fit_head`) and scikit-learn's stopping rule: at most
    ``max_iter`` iterations, or once no gradient component exceeds ``tol``. On large many-class
    data it is several times faster per iteration than scikit-learn's float64 solver and keeps half
    the memory.

    >>> baseline = RowsBaseline(seed=42).fit(train_rows, train_labels)  # doctest: +SKIP
    >>> baseline.predict_proba(test_rows)  # rows x baseline.classes_   # doctest: +SKIP
    """

    def __init__(
        self,
        seed: int = 42,
        C: float = 10.0,
        class_weight: str | None = "balanced",
        max_iter: int = 2000,
        tol: float = 1e-4,
    ):
        self.seed = seed
        self.C = C
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, rows: sp.csr_matrix | SparseRows, y: Sequence[str]) -> RowsBaseline:
        """Learn from TF-IDF ``rows`` (a CSR matrix, or :class:`SparseRows` already prepared for
        training, shared with the heads) and their labels ``y``."""
        labels = [str(label) for label in y]
        if not isinstance(rows, SparseRows):
            rows = SparseRows.from_csr(rows, for_training=True)
        n_rows, n_columns = rows.matrix.shape
        if n_rows != len(labels):
            raise ValueError(f"{n_rows} rows but {len(labels)} labels")
        self.classes_: list[str] = sorted(set(labels))
        if len(self.classes_) < 2:
            raise ValueError("the baseline needs at least two classes to learn from")
        position = {label: i for i, label in enumerate(self.classes_)}
        targets = np.array([position[label] for label in labels], dtype=np.int64)
        mode = "balanced" if self.class_weight == "balanced" else "none"
        weights = class_weights(targets, len(self.classes_), mode)[targets]
        with warnings.catch_warnings():  # "initializing zero-element tensors": there is no embedding
            warnings.simplefilter("ignore", UserWarning)
            self.head_ = FieldHead(0, n_columns, len(self.classes_))  # TF-IDF only
        inputs = (torch.zeros(len(labels), 0), rows, None)
        strengths = (OFF, self.C, OFF)
        target, weight = torch.from_numpy(targets), torch.from_numpy(weights)
        fit_head(self.head_, inputs, target, weight, strengths, self.max_iter, tolerance=self.tol)
        return self

    def predict_proba(self, rows: sp.csr_matrix) -> np.ndarray:
        """Probabilities, one row per TF-IDF row, one column per label in :attr:`classes_`."""
        return self.head_.proba(torch.zeros(rows.shape[0], 0), SparseRows.from_csr(rows))


def tfidf_features(max_features: int | None = None) -> FeatureUnion:
    """The baseline's n-grams: word 1-2-grams and char 3-5-grams, sublinear TF, each vectorizer
    keeping at most half of ``max_features`` (None: all)."""
    each = None if max_features is None else max(1, max_features // 2)
    return make_union(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, max_features=each),
        TfidfVectorizer(
            analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, min_df=2, max_features=each
        ),
    )


def as_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("expected a sequence of texts, got one string")
    return ["" if t is None or t != t else str(t) for t in texts]  # t != t: NaN from pandas
