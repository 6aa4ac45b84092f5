"""Fitting a field's linear head: convex, deterministic, its blocks chosen on held-out training rows.

A head (:class:`triage.models.heads.FieldHead`) is fitted with L-BFGS on class-weighted cross-entropy
plus one L2 penalty per input block (embedding, TF-IDF, memory); a block can be switched off. The
problem is convex, so the result does not depend on a random start. The candidates start with the
baseline's own model (TF-IDF only, at the baseline's C), then add the embedding (a small grid of
strengths) and the neighbour memory. A richer candidate is kept only when its held-out macro-F1
on the training rows beats the simpler one by a margin, so the head is the baseline's unless the
data show the embedding helps.

How the candidates are scored depends on the size of the data. Below :data:`SPLIT_ROWS` training
rows: stratified :data:`CV_FOLDS`-fold cross-validation of every candidate (cheap there, and the
folds give the gain's standard error). From :data:`SPLIT_ROWS` rows: one stratified validation
split, the candidates fitted on at most :data:`SELECTION_ROWS` of the other rows (a stratified
sample keeping every class) with at most :data:`SELECTION_MAX_ITER` L-BFGS iterations, one after
the other, each warm-started from the one before; the embedding's strengths are tried from the
weakest up and abandoned once one scores worse than the best so far, and the neighbour memory is
tried only beside the best of them; the gain's standard error comes from a paired bootstrap of the
validation rows. Rows of classes too rare to be held out (fewer than the folds, or than two) always
stay in the fitting part: every class is learned, only the common ones are scored.

A field's inputs (:class:`HeadInputs`: its head's features, label indices and the configuration)
go to :func:`fit_field`, or to :func:`select_head` then :func:`refit_head`. :class:`HeadEstimator`
is a head in the estimator contract (:class:`triage.models.estimator.Estimator`) that evaluation uses.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold, train_test_split
from torch import nn

from triage.models.heads import FieldHead, HeadFeatures, SparseRows
from triage.models.training_config import TrainConfig

C_DENSE_GRID = (0.001, 0.01, 0.1)
"""Inverse L2 strengths (scikit-learn's ``C``) of the embedding weights tried per field."""
C_SPARSE = 10.0
"""Inverse L2 strength of the TF-IDF weights unless configured: the baseline's own ``C``."""
CV_FOLDS = 3
SPLIT_ROWS = 5_000
"""From this many training rows a field's candidates are scored on one stratified validation split
of :data:`VALIDATION_SHARE` of the rows instead of :data:`CV_FOLDS`-fold cross-validation."""
VALIDATION_SHARE = 0.2
SELECTION_ROWS = 8_000
"""Most rows a candidate is fitted on while choosing on one split (a stratified sample keeping every
class); the chosen head is then refitted on all rows."""
SELECTION_MAX_ITER = 150
"""Most L-BFGS iterations of a candidate fit while choosing on one split."""
LARGE_REFIT_MAX_ITER = 300
"""From :data:`SPLIT_ROWS` rows: most L-BFGS iterations of the final fit on all rows (it starts from
the chosen candidate's weights; ``max_iter`` applies when lower)."""
BOOTSTRAP_RESAMPLES = 200
CHOICE_MARGIN = 0.005
"""Least mean cross-validated macro-F1 a candidate must gain over the first to be chosen."""
CHOICE_ERRORS = 2.0
"""... and the gain must be this many standard errors (of the per-fold gains) above zero."""

OFF = 0.0
"""A block's strength that switches it off: its weights stay zero."""

Strengths = tuple[float, float, float]
"""Inverse L2 strengths of the (embedding, TF-IDF, memory) weights; :data:`OFF` pins a block at zero."""


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
    multilabel: bool = False,
    tolerance: float = 1e-6,
) -> None:
    """Minimise weighted mean cross-entropy + ``sum_b |W_b|^2 / (2 C_b n)`` with L-BFGS.

    ``multilabel``: ``y`` is a 0/1 matrix (rows x outputs) and each output is its own logistic
    regression (the binary cross-entropies summed per row), so every column's optimum is scikit-learn's
    one-vs-rest logistic regression at the same ``C``.

    ``inputs`` are the head's (embeddings, TF-IDF rows, neighbour shares), ``weights`` one per
    row, ``c`` the inverse L2 strengths of the embedding, TF-IDF and memory weights. Each term is
    scikit-learn's logistic-regression penalty divided by ``n``, so ``C`` means the same as there.
    Biases are not penalised. L-BFGS stops after ``max_iter`` iterations or once no gradient
    component exceeds ``tolerance`` (scikit-learn's ``tol`` means the same). The problem is convex:
    from zero weights (or, with ``warm_start``, from the current ones, which only saves iterations)
    the fit reaches the same optimum.

    The embedding block is fitted in preconditioned coordinates (see :func:`_preconditioner`):
    the same optimum, reached in several times fewer iterations than on the correlated
    embedding dimensions themselves.
    """
    if not warm_start:
        head.reset_to_zero()
    n = len(y)
    blocks = [
        (w, strength)
        for w, strength in zip((head.dense.weight, head.sparse_weight, head.memory_weight), c, strict=True)
        if w is not None
    ]
    with torch.no_grad():
        for w, strength in blocks:
            if strength == OFF:
                w.zero_()
            w.requires_grad_(strength != OFF)  # an off block costs no gradient
    penalties = [(w, 1.0 / (2.0 * strength * n)) for w, strength in blocks if strength != OFF]
    embeddings, *others = inputs
    transform = None
    if c[0] != OFF:  # fit V = W M^-1 on E M: the same logits E W^T, the same penalty |V M|^2
        transform, inverse = _preconditioner(embeddings, weights, 1.0 / (c[0] * n))
        embeddings = embeddings @ transform
        with torch.no_grad():
            head.dense.weight.copy_(head.dense.weight @ inverse)
    optimizer = torch.optim.LBFGS(
        [head.dense.bias, *(w for w, _ in penalties)],
        lr=1.0,
        max_iter=max_iter,
        history_size=10,
        tolerance_grad=tolerance,
        tolerance_change=1e-10,
        line_search_fn="strong_wolfe",
    )
    total = weights.sum()

    def penalty(w: torch.Tensor) -> torch.Tensor:
        if w is head.dense.weight:
            assert transform is not None  # the dense block is penalised only when on (c[0] != OFF)
            w = w @ transform
        return w.pow(2).sum()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = head(embeddings, *others)
        if multilabel:
            losses = nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none").sum(1)
        else:
            losses = nn.functional.cross_entropy(logits, y, reduction="none")
        loss = (losses * weights).sum() / total + sum(coef * penalty(w) for w, coef in penalties)
        loss.backward()
        return loss

    try:
        with torch.enable_grad():
            optimizer.step(closure)
        if transform is not None:
            with torch.no_grad():
                head.dense.weight.copy_(head.dense.weight @ transform)
    finally:
        for w, _ in blocks:
            w.requires_grad_(True)


def _preconditioner(
    embeddings: torch.Tensor, weights: torch.Tensor, ridge: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``M = (S + ridge I)^(-1/2)`` and its inverse, ``S`` the weighted second moment of the rows.

    ``S + ridge I`` approximates the curvature of the loss in the embedding weights (up to the
    softmax's own factor); in coordinates ``V = W M^-1`` it is the identity, so L-BFGS no longer
    crawls along the directions in which correlated embedding dimensions barely change the loss.
    """
    moment = (embeddings * (weights / weights.sum()).unsqueeze(1)).T @ embeddings
    values, vectors = torch.linalg.eigh(moment.double())
    values = values.clamp(min=0.0) + ridge
    transform = (vectors * values.rsqrt()) @ vectors.T
    inverse = (vectors * values.sqrt()) @ vectors.T
    return transform.to(embeddings.dtype), inverse.to(embeddings.dtype)


def candidates(config: TrainConfig, *, sparse: bool, memory: bool) -> list[Strengths]:
    """Strength triples to try, simplest first (``sparse``/``memory``: the head has those blocks).

    Unless ``c_dense`` is configured (then it is the only candidate): the baseline's own model
    (TF-IDF only, at its ``C``), then the embedding at each :data:`C_DENSE_GRID` strength beside
    the TF-IDF, first without and then with the neighbour memory.
    """
    c_sparse = (config.c_sparse or C_SPARSE) if sparse else OFF
    if config.c_dense:
        return [(config.c_dense, c_sparse, config.c_memory if memory else OFF)]
    memories = [OFF, config.c_memory] if memory else [OFF]
    baseline = [(OFF, c_sparse, OFF)] if sparse else []
    return baseline + [(d, c_sparse, m) for m in memories for d in C_DENSE_GRID]


def describe(c: Strengths) -> str:
    """The blocks a head with strengths ``c`` uses, e.g. ``"embedding (C=0.01) + TF-IDF (C=10)"``."""
    names = ("embedding", "TF-IDF", "neighbour memory")
    used = [f"{name} (C={strength:g})" for name, strength in zip(names, c, strict=True) if strength != OFF]
    return " + ".join(used)


@dataclass(frozen=True)
class HeadChoice:
    """The strengths a field's head was fitted with, and the evidence they were chosen on."""

    strengths: Strengths
    fold_scores: dict[Strengths, tuple[float, ...]] = field(default_factory=dict)
    """Macro-F1 per candidate on each cross-validation fold (empty: nothing was chosen)."""
    note: str = ""
    """Why nothing was chosen, when ``fold_scores`` is empty."""
    errors: dict[Strengths, float] = field(default_factory=dict)
    """On one validation split: each candidate's bootstrap standard error of its gain over the first
    (empty: cross-validated, the error comes from the folds)."""
    split_rows: tuple[int, int] = (0, 0)
    """On one validation split: the rows candidates were fitted on and scored on."""

    @property
    def scores(self) -> dict[Strengths, float]:
        """Mean cross-validated macro-F1 per candidate."""
        return {c: float(np.mean(s)) for c, s in self.fold_scores.items()}

    @property
    def folds(self) -> int:
        return len(next(iter(self.fold_scores.values()), ()))

    def summary(self) -> str:
        """One sentence for reports: the blocks used and why."""
        text = f"Head: {describe(self.strengths)}"
        if not self.fold_scores:
            return f"{text} ({self.note})."
        tried = "; ".join(f"{describe(c)}: {score:.3f}" for c, score in self.scores.items())
        if self.errors:
            fitted, scored = self.split_rows
            return (
                f"{text}, chosen on one stratified validation split ({fitted} rows fitted, {scored} "
                f"scored; weaker candidates pruned early) by macro-F1 (a richer head must beat TF-IDF "
                f"alone by more than {CHOICE_MARGIN} and more than {CHOICE_ERRORS:g} bootstrap standard "
                f"errors of its gain): {tried}."
            )
        return (
            f"{text}, chosen by {self.folds}-fold cross-validated macro-F1 on the training rows (a "
            f"richer head must beat TF-IDF alone by more than {CHOICE_MARGIN} and more than "
            f"{CHOICE_ERRORS:g} standard errors of its gain across the folds): {tried}."
        )


def choose(
    fold_scores: dict[Strengths, tuple[float, ...]], errors: dict[Strengths, float] | None = None
) -> Strengths:
    """The candidate the evidence supports; the first (the baseline's own model) unless proven worse.

    A later candidate is eligible when its mean gain over the first across the folds is above
    :data:`CHOICE_MARGIN` and :data:`CHOICE_ERRORS` standard errors of that gain (so a gain that
    one lucky fold makes is not enough). Among the eligible, the best mean score wins; a simpler
    one (earlier in the order) within ``CHOICE_MARGIN`` of it is preferred. ``errors`` (one
    validation split) gives each candidate's standard error of its gain instead of the folds'.
    """
    first, *others = fold_scores
    eligible = []
    for c in others:
        gains = np.subtract(fold_scores[c], fold_scores[first])
        if errors is not None:
            error = errors.get(c, 0.0)
        else:
            error = gains.std(ddof=1) / np.sqrt(len(gains)) if len(gains) > 1 else 0.0
        if gains.mean() > max(CHOICE_MARGIN, CHOICE_ERRORS * error):
            eligible.append(c)
    if not eligible:
        return first
    means = {c: float(np.mean(fold_scores[c])) for c in eligible}
    top = max(means.values())
    return next(c for c in eligible if means[c] >= top - CHOICE_MARGIN)


def fit_field(head: FieldHead, inputs: HeadInputs, *, workers: int = 1) -> HeadChoice:
    """Fit a field's head on its training rows; returns the strengths and their evidence.

    ``inputs`` holds the head's features (standardised embeddings, TF-IDF rows and the memory's
    label shares, None where the head has no such block), the label indices and the configuration.
    With more than one candidate, each is scored by macro-F1 in a stratified ``CV_FOLDS``-fold
    cross-validation (``workers`` candidates fitted side by side, each on its own copy of the head,
    starting from its previous fold's solution, which only saves iterations); :func:`choose` picks
    one, which is refitted on all rows. :func:`select_head` then :func:`refit_head`.
    """
    choice = select_head(head, inputs, workers=workers)
    refit_head(head, inputs, choice)
    return choice


def selection_fits(y: np.ndarray, config: TrainConfig, *, sparse: bool, memory: bool) -> int:
    """How many fits :func:`select_head` makes at most for labels ``y`` (candidates x folds; 0: no
    choice). On one validation split pruning may skip some: the rest are reported done at the end."""
    options = candidates(config, sparse=sparse, memory=memory)
    splits = _splits(y, config.seed) if len(options) > 1 else []
    if not splits:
        return 0
    return len(options) * len(splits)


def select_head(
    head: FieldHead,
    inputs: HeadInputs,
    *,
    workers: int = 1,
    on_fit: Callable[[], None] | None = None,
) -> HeadChoice:
    """Choose the head's strengths on held-out training rows (see the module's docstring);
    ``on_fit`` is called after each of the :func:`selection_fits` candidate fits (pruned ones
    included). When a choice was made, ``head`` is left with the chosen candidate's last weights
    (the refit's warm start)."""
    features, y, config = inputs.features, inputs.y, inputs.config
    options = candidates(config, sparse=features.sparse is not None, memory=features.neighbours is not None)
    folds = _splits(y, config.seed) if len(options) > 1 else []
    if not folds:
        note = "too few rows per class to hold any out" if len(options) > 1 else "the one configured"
        return HeadChoice(options[0], note=note)
    if len(folds) == 1:
        return _select_on_split(head, inputs, options, folds[0], on_fit)
    heads = {c: copy.deepcopy(head) for c in options}
    fold_scores: dict[Strengths, list[float]] = {c: [] for c in options}
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for k, (fit_rows, val_rows) in enumerate(folds):
            fit = inputs.fitter(fit_rows, head.n_classes)
            held_out, truth = inputs.part(val_rows, False), y[val_rows]
            jobs = [pool.submit(_scored_fit, heads[c], c, fit, held_out, truth, k > 0) for c in options]
            for c, job in zip(options, jobs, strict=True):
                fold_scores[c].append(job.result())
                if on_fit is not None:
                    on_fit()
    scores = {c: tuple(s) for c, s in fold_scores.items()}
    best = choose(scores)
    head.load_state_dict(heads[best].state_dict())
    return HeadChoice(best, scores)


def refit_head(head: FieldHead, inputs: HeadInputs, choice: HeadChoice) -> None:
    """Fit ``head`` on all rows with the chosen strengths (warm from :func:`select_head`'s weights
    when it made a choice, which only saves iterations; else from zero); from :data:`SPLIT_ROWS`
    rows with at most :data:`LARGE_REFIT_MAX_ITER` iterations."""
    large = len(inputs.y) >= SPLIT_ROWS
    fit = inputs.fitter(np.arange(len(inputs.y)), head.n_classes, LARGE_REFIT_MAX_ITER if large else None)
    fit(head, choice.strengths, bool(choice.fold_scores))


class HeadInputs:
    """A field's training inputs (its head's features, label indices and the configuration), cut
    into the rows of a fit or a validation fold."""

    def __init__(self, features: HeadFeatures, y: np.ndarray, config: TrainConfig) -> None:
        if len(features) != len(y):
            raise ValueError(f"{len(features)} rows of features but {len(y)} labels")
        self.features, self.y, self.config = features, y, config

    def part(
        self, rows: np.ndarray, for_training: bool
    ) -> tuple[torch.Tensor, SparseRows | None, torch.Tensor | None]:
        """The head's inputs for ``rows`` (TF-IDF rows with their transpose ``for_training``)."""
        part = self.features.rows(rows)
        rows_sparse = None
        if for_training and part is self.features and part.training_rows is not None:
            rows_sparse = part.training_rows
        elif part.sparse is not None:
            rows_sparse = SparseRows.from_csr(part.sparse, part.embeddings.device, for_training=for_training)
        return part.embeddings, rows_sparse, part.neighbours

    def fitter(
        self, rows: np.ndarray, n_classes: int, max_iter: int | None = None
    ) -> Callable[[FieldHead, Strengths, bool], None]:
        """Fits a head of ``n_classes`` on ``rows`` with given strengths (from its weights: warm),
        with at most ``max_iter`` L-BFGS iterations (default: the configuration's)."""
        device, y = self.features.embeddings.device, self.y
        max_iter = min(max_iter, self.config.max_iter) if max_iter else self.config.max_iter
        inputs = self.part(rows, True)
        per_class = class_weights(y, n_classes, self.config.class_weight)
        weights = torch.from_numpy(per_class[y[rows]]).to(device)
        targets = torch.from_numpy(y[rows]).to(device)
        return lambda h, c, warm: fit_head(h, inputs, targets, weights, c, max_iter, warm_start=warm)


class HeadEstimator:
    """A field's head as an :class:`~triage.models.estimator.Estimator` over :class:`HeadFeatures`.

    ``fit(X, y)`` (``y``: label indices into :attr:`classes_`) fits the head with ``choice``'s
    strengths, or, without a choice, chooses them first by cross-validation (:func:`fit_field`),
    which ``choice`` then holds. ``config`` says how it fits; :meth:`predict_proba` needs none of it.
    """

    def __init__(
        self,
        head: FieldHead,
        classes: Sequence[str],
        config: TrainConfig,
        choice: HeadChoice | None = None,
        *,
        workers: int = 1,
    ) -> None:
        if len(classes) != head.n_classes:
            raise ValueError(f"{len(classes)} classes for a head of {head.n_classes}")
        self.head = head
        self.classes_ = list(classes)
        self.config = config
        self.choice = choice
        self.workers = workers

    def fit(self, X: HeadFeatures, y: np.ndarray) -> HeadEstimator:
        inputs = HeadInputs(X, y, self.config)
        if self.choice is None:
            self.choice = fit_field(self.head, inputs, workers=self.workers)
        else:
            refit_head(self.head, inputs, self.choice)
        return self

    def predict_proba(self, X: HeadFeatures) -> np.ndarray:
        device = X.embeddings.device
        sparse = SparseRows.from_csr(X.sparse, device) if X.sparse is not None else None
        return self.head.proba(X.embeddings, sparse, X.neighbours)


def _scored_fit(
    head: FieldHead,
    c: Strengths,
    fit: Callable[[FieldHead, Strengths, bool], None],
    held_out: tuple[torch.Tensor, SparseRows | None, torch.Tensor | None],
    truth: np.ndarray,
    warm: bool,
) -> float:
    """Fit ``head`` with strengths ``c``; its macro-F1 on the held-out rows."""
    fit(head, c, warm)
    with torch.inference_mode():
        predicted = head(*held_out).argmax(dim=1).cpu().numpy()
    return float(f1_score(truth, predicted, average="macro", zero_division=0))


def _splits(y: np.ndarray, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Fit and validation rows: stratified :data:`CV_FOLDS` folds below :data:`SPLIT_ROWS` rows,
    else one stratified split (the fitting part a stratified sample of at most
    :data:`SELECTION_ROWS`). Rows of classes too rare to be held out (fewer rows than folds, or
    than two) are in every fitting part and never scored; none when fewer than two classes can be
    scored."""
    counts = np.bincount(y) if len(y) else np.zeros(0, dtype=int)
    large = len(y) >= SPLIT_ROWS
    needed = 2 if large else CV_FOLDS
    common = np.isin(y, np.flatnonzero(counts >= needed))
    if np.count_nonzero(counts >= needed) < 2:
        return []
    rare_rows, rows = np.flatnonzero(~common), np.flatnonzero(common)
    if not large:
        splitter = StratifiedKFold(n_splits=CV_FOLDS, shuffle=True, random_state=seed)
        return [
            (np.sort(np.concatenate([rows[fit], rare_rows])), rows[val])
            for fit, val in splitter.split(np.zeros(len(rows)), y[rows])
        ]
    fit, val = train_test_split(rows, test_size=VALIDATION_SHARE, random_state=seed, stratify=y[rows])
    fit = np.concatenate([fit, rare_rows])
    if len(fit) > SELECTION_ROWS:
        fit = _stratified_sample(fit, y[fit], SELECTION_ROWS, seed)
    return [(np.sort(fit), np.sort(val))]


def _stratified_sample(rows: np.ndarray, y: np.ndarray, size: int, seed: int) -> np.ndarray:
    """About ``size`` of ``rows``, each class in proportion but with at least
    ``min(its rows, 5)``: rare classes stay learnable."""
    rng = np.random.default_rng(seed)
    keep = []
    share = size / len(rows)
    for label in np.unique(y):
        mine = rows[y == label]
        take = min(len(mine), max(5, round(share * len(mine))))
        keep.append(rng.choice(mine, size=take, replace=False))
    return np.concatenate(keep)


def _select_on_split(
    head: FieldHead,
    inputs: HeadInputs,
    options: list[Strengths],
    split: tuple[np.ndarray, np.ndarray],
    on_fit: Callable[[], None] | None,
) -> HeadChoice:
    """Score ``options`` on one validation split, pruned and warm-started (see the module docstring)."""
    fit_rows, val_rows = split
    fit = inputs.fitter(fit_rows, head.n_classes, SELECTION_MAX_ITER)
    held_out, truth = inputs.part(val_rows, False), inputs.y[val_rows]
    work = copy.deepcopy(head)
    states: dict[Strengths, dict[str, torch.Tensor]] = {}
    predicted: dict[Strengths, np.ndarray] = {}

    def score(c: Strengths) -> float:
        fit(work, c, bool(states))
        with torch.inference_mode():
            predicted[c] = work(*held_out).argmax(dim=1).cpu().numpy()
        states[c] = {k: v.clone() for k, v in work.state_dict().items()}
        if on_fit is not None:
            on_fit()
        return float(f1_score(truth, predicted[c], average="macro", zero_division=0))

    scores: dict[Strengths, float] = {}
    first = options[0]
    plain: list[Strengths] = []
    with_memory: list[Strengths] = []
    for c in options[1:]:
        (with_memory if c[2] != OFF else plain).append(c)
    scores[first] = score(first)
    best_dense: Strengths | None = None
    for c in plain:  # the embedding from the weakest strength up, until one does worse
        scores[c] = score(c)
        if best_dense is None or scores[c] > scores[best_dense]:
            best_dense = c
        elif scores[c] < scores[best_dense] - CHOICE_MARGIN:
            break
    memory = [c for c in with_memory if best_dense is None or c[0] == best_dense[0]][:1]
    for c in memory:  # the neighbour memory beside the best embedding strength only
        if best_dense is not None:
            work.load_state_dict(states[best_dense])
        scores[c] = score(c)
    if on_fit is not None:
        for _ in range(len(options) - len(scores)):  # the pruned candidates count as done
            on_fit()
    errors = {c: _gain_error(truth, predicted[c], predicted[first], inputs.config.seed) for c in scores}
    fold_scores: dict[Strengths, tuple[float, ...]] = {c: (s,) for c, s in scores.items()}
    best = choose(fold_scores, errors)
    head.load_state_dict(states[best])
    return HeadChoice(best, fold_scores, errors=errors, split_rows=(len(fit_rows), len(val_rows)))


def _gain_error(truth: np.ndarray, mine: np.ndarray, first: np.ndarray, seed: int) -> float:
    """Bootstrap standard error of macro-F1(``mine``) - macro-F1(``first``) over the same rows."""
    if mine is first or np.array_equal(mine, first):
        return 0.0
    labels = np.unique(np.concatenate([truth, mine, first]))
    k = len(labels)
    index = {label: i for i, label in enumerate(labels)}
    t, a, b = (np.array([index[v] for v in values]) for values in (truth, mine, first))
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(t), size=(BOOTSTRAP_RESAMPLES, len(t)))
    offset = np.arange(BOOTSTRAP_RESAMPLES)[:, None] * k

    def macro(predicted: np.ndarray) -> np.ndarray:
        truth_rows, predicted_rows = t[rows], predicted[rows]
        hits = np.bincount(
            (truth_rows + offset)[truth_rows == predicted_rows], minlength=BOOTSTRAP_RESAMPLES * k
        ).reshape(BOOTSTRAP_RESAMPLES, k)
        total = np.bincount((truth_rows + offset).ravel(), minlength=BOOTSTRAP_RESAMPLES * k) + np.bincount(
            (predicted_rows + offset).ravel(), minlength=BOOTSTRAP_RESAMPLES * k
        )
        total = total.reshape(BOOTSTRAP_RESAMPLES, k)
        f1 = np.divide(2 * hits, total, out=np.zeros(hits.shape), where=total > 0)
        scored = total > 0  # as f1_score: the labels in the truth or the predictions
        return (f1 * scored).sum(axis=1) / np.maximum(scored.sum(axis=1), 1)

    return float(np.std(macro(a) - macro(b), ddof=1))
