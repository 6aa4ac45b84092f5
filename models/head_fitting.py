"""Fitting a field's linear head: convex, deterministic, regularisation chosen on a validation slice.

A head (:class:`models.heads.FieldHead`) is fitted with L-BFGS on class-weighted cross-entropy
plus one L2 penalty per input block (embedding, TF-IDF, memory). The problem is convex, so the
result does not depend on a random start; the only choice is the embedding's L2 strength, taken
from a small grid by macro-F1 on 20% of the field's training rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split

from models.heads import FieldHead, SparseRows

if TYPE_CHECKING:
    from models.classifier import TriageClassifier
    from models.training import TrainConfig

log = logging.getLogger(__name__)

C_DENSE_GRID = (0.001, 0.01, 0.1)
C_SPARSE_GRID = (10.0,)
"""Candidate inverse L2 strengths (scikit-learn's ``C``) of the embedding and the TF-IDF weights,
tried per field when none is configured. 10 for TF-IDF is the baseline's own setting."""
VALIDATION_SHARE = 0.2

Strengths = tuple[float, float, float]
"""Inverse L2 strengths of the (embedding, TF-IDF, memory) weights."""


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread: head fits are many small operations, which extra threads only slow
    down (by 10x on a busy machine, where threads wait for each other)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def class_weights(y: np.ndarray, n_classes: int, mode: str) -> np.ndarray:
    """Per-class weights: ``balanced`` (n / (classes x count), as scikit-learn) or all ones."""
    if mode == "none":
        return np.ones(n_classes, dtype=np.float32)
    counts = np.bincount(y, minlength=n_classes)
    return (len(y) / (n_classes * np.maximum(counts, 1))).astype(np.float32)


def fit_head(
    head: FieldHead,
    inputs: tuple[torch.Tensor, SparseRows | None, torch.Tensor | None],
    y: torch.Tensor,
    weights: torch.Tensor,
    c: Strengths,
    max_iter: int,
    *,
    warm_start: bool = False,
) -> None:
    """Minimise weighted mean cross-entropy + ``sum_b |W_b|^2 / (2 C_b n)`` with L-BFGS.

    ``inputs`` are the head's (embeddings, TF-IDF rows, neighbour shares), ``weights`` one per
    row, ``c`` the inverse L2 strengths of the embedding, TF-IDF and memory weights. Each term is
    scikit-learn's logistic-regression penalty divided by ``n``, so ``C`` means the same as there.
    Biases are not penalised. The problem is convex: from zero weights (or, with ``warm_start``,
    from the current ones, which only saves iterations) the fit reaches the same optimum.
    """
    if not warm_start:
        head.reset_to_zero()
    n = len(y)
    blocks = (head.dense.weight, head.sparse_weight, head.memory_weight)
    penalties = [
        (w, 1.0 / (2.0 * strength * n)) for w, strength in zip(blocks, c, strict=True) if w is not None
    ]
    optimizer = torch.optim.LBFGS(
        head.parameters(),
        lr=1.0,
        max_iter=max_iter,
        history_size=10,
        tolerance_grad=1e-6,
        tolerance_change=1e-10,
        line_search_fn="strong_wolfe",
    )
    total = weights.sum()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        losses = torch.nn.functional.cross_entropy(head(*inputs), y, reduction="none")
        loss = (losses * weights).sum() / total + sum(w * m.pow(2).sum() for m, w in penalties)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)


def candidates(config: TrainConfig) -> list[Strengths]:
    """Strength triples to try; a configured value replaces its grid."""
    dense = [config.c_dense] if config.c_dense else list(C_DENSE_GRID)
    sparse = [config.c_sparse] if config.c_sparse else list(C_SPARSE_GRID)
    return [(d, s, config.c_memory) for d in dense for s in sparse]


def fit_field(
    classifier: TriageClassifier,
    name: str,
    embeddings: np.ndarray,
    sparse: sp.csr_matrix | None,
    neighbours: torch.Tensor | None,
    y: np.ndarray,
    config: TrainConfig,
) -> Strengths:
    """Fit the head of field ``name`` on its training rows; returns the strengths used.

    ``y`` holds label indices. With more than one candidate, each is fitted on 80% of the rows
    and scored by macro-F1 on the other 20%; the best (ties: the stronger regularisation) is
    refitted on all rows, starting from its 80% solution.
    """
    head = classifier.head(name)
    device = classifier.device
    emb = classifier.standardise(torch.from_numpy(embeddings).to(device))
    per_class = class_weights(y, head.n_classes, config.class_weight)

    def part(
        rows: np.ndarray, for_training: bool
    ) -> tuple[torch.Tensor, SparseRows | None, torch.Tensor | None]:
        rows_sparse = None
        if sparse is not None:
            rows_sparse = SparseRows.from_csr(sparse[rows], device, for_training=for_training)
        return emb[rows], rows_sparse, neighbours[rows] if neighbours is not None else None

    def fit(rows: np.ndarray, c: Strengths, warm_start: bool = False) -> None:
        weights = torch.from_numpy(per_class[y[rows]]).to(device)
        targets = torch.from_numpy(y[rows]).to(device)
        fit_head(head, part(rows, True), targets, weights, c, config.max_iter, warm_start=warm_start)

    options = candidates(config)
    best, best_state, split = options[0], None, None
    if len(options) > 1:
        try:
            split = train_test_split(
                np.arange(len(y)), test_size=VALIDATION_SHARE, random_state=config.seed, stratify=y
            )
        except ValueError:  # too few rows per class to hold any out: keep the first candidate
            log.info("field %s: too few rows to choose the regularisation; using %s", name, best)
    if split is not None:
        fit_rows, val_rows = split
        held_out = part(val_rows, False)
        scores: list[float] = []
        for c in options:
            fit(fit_rows, c)
            with torch.inference_mode():
                predicted = head(*held_out).argmax(dim=1).cpu().numpy()
            scores.append(float(f1_score(y[val_rows], predicted, average="macro", zero_division=0)))
            if scores[-1] > max(scores[:-1], default=-1.0):
                best, best_state = c, {k: v.clone() for k, v in head.state_dict().items()}
        log.info(
            "field %s: C=%s, validation macro-F1 %s", name, best, dict(zip(options, scores, strict=True))
        )
    if best_state is not None:
        head.load_state_dict(best_state)
    fit(np.arange(len(y)), best, warm_start=best_state is not None)
    return best
