"""Head fitting: the TF-IDF-only candidate is the baseline, and richer heads are chosen on evidence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_tickets import labelled_tickets
from scipy import sparse

from triage.models import head_fitting, heads
from triage.models.baseline import TfidfBaseline
from triage.models.features import HashedTfidf
from triage.models.head_fitting import (
    CHOICE_MARGIN,
    OFF,
    HeadChoice,
    HeadInputs,
    _splits,
    candidates,
    choose,
    class_weights,
    fit_field,
    fit_head,
    refit_head,
    select_head,
)
from triage.models.heads import FieldHead, HeadFeatures, SparseRows
from triage.models.text import ticket_text
from triage.models.training_config import TrainConfig

DIM = 8


def _noisy_tickets(n: int, seed: int) -> tuple[list[str], list[str]]:
    """Ticket texts with their group, 15% of the labels swapped: not separable, like real data."""
    frame = labelled_tickets(n, seed=seed)
    texts = [ticket_text(s, d) for s, d in zip(frame["subject"], frame["description"], strict=True)]
    rng = np.random.default_rng(seed)
    labels = frame["group"].to_numpy(dtype=object)
    flip = rng.random(n) < 0.15
    labels[flip] = rng.choice(sorted(set(labels)), size=int(flip.sum()))
    return texts, labels.tolist()


def _field_inputs(texts, labels, embeddings):
    """(head, standardised embeddings, TF-IDF rows, label indices, class names) for one field."""
    features = HashedTfidf().fit(texts)
    names = sorted(set(labels))
    y = np.array([names.index(label) for label in labels])
    emb = torch.from_numpy(((embeddings - embeddings.mean(0)) / embeddings.std(0)).astype(np.float32))
    head = FieldHead(emb.shape[1], features.n_features, len(names))
    return head, features, emb, y, names


def test_tfidf_only_candidate_reproduces_the_baseline():
    texts, labels = _noisy_tickets(150, seed=0)
    test_texts, _ = _noisy_tickets(60, seed=1)
    noise = np.random.default_rng(0).normal(size=(len(texts), DIM))
    head, features, emb, y, names = _field_inputs(texts, labels, noise)
    weights = torch.from_numpy(class_weights(y, len(names), "balanced")[y])
    rows = SparseRows.from_csr(features.transform(texts), for_training=True)
    fit_head(head, (emb, rows, None), torch.from_numpy(y), weights, (OFF, 10.0, OFF), max_iter=1000)

    assert not head.dense.weight.any()  # the embedding block stayed off
    test_emb = torch.from_numpy(
        np.random.default_rng(1).normal(size=(len(test_texts), DIM)).astype(np.float32)
    )
    with torch.inference_mode():
        logits = head(test_emb, SparseRows.from_csr(features.transform(test_texts)))
    ours = torch.softmax(logits, dim=1).numpy()
    baseline = TfidfBaseline(C=10.0).fit(texts, labels)
    assert baseline.classes_ == names
    theirs = baseline.predict_proba(test_texts)
    np.testing.assert_allclose(ours, theirs, atol=0.01)
    assert (ours.argmax(1) == theirs.argmax(1)).all()


def test_an_off_block_stays_zero_even_from_a_warm_start():
    texts, labels = _noisy_tickets(90, seed=2)
    head, features, emb, y, _ = _field_inputs(texts, labels, np.random.default_rng(2).normal(size=(90, DIM)))
    inputs = (emb, SparseRows.from_csr(features.transform(texts), for_training=True), None)
    weights = torch.ones(len(y))
    fit_head(head, inputs, torch.from_numpy(y), weights, (1.0, 10.0, OFF), max_iter=50)
    assert head.dense.weight.any()
    fit_head(head, inputs, torch.from_numpy(y), weights, (OFF, 10.0, OFF), max_iter=50, warm_start=True)
    assert not head.dense.weight.any()
    assert head.dense.weight.requires_grad  # switched off for the fit only


def test_candidates_start_with_the_baseline_and_a_configured_strength_replaces_the_grid():
    grid = candidates(TrainConfig(), sparse=True, memory=True)
    assert grid[0] == (OFF, 10.0, OFF)
    assert len(grid) == 7 and len(set(grid)) == 7
    assert all(dense > 0 and sparse == 10.0 for dense, sparse, _ in grid[1:])
    assert [memory for *_, memory in grid[1:]] == [OFF] * 3 + [100.0] * 3  # without the memory first
    assert candidates(TrainConfig(c_dense=1.0, c_sparse=1.0), sparse=True, memory=False) == [(1.0, 1.0, OFF)]
    linear = candidates(TrainConfig(), sparse=False, memory=True)
    assert linear and all(sparse == OFF and dense > 0 for dense, sparse, _ in linear)


def test_a_richer_head_must_beat_tfidf_alone_by_the_margin_and_two_standard_errors():
    simple, rich, richer = (OFF, 10.0, OFF), (0.01, 10.0, 100.0), (0.1, 10.0, 100.0)
    tiny = CHOICE_MARGIN / 2
    assert choose({simple: (0.70, 0.70, 0.70), rich: (0.70 + tiny,) * 3, richer: (0.69,) * 3}) == simple
    assert choose({simple: (0.70,) * 3, rich: (0.72, 0.73, 0.72), richer: (0.72 + tiny,) * 3}) == rich
    # gains +0.023, -0.006, +0.019 (mean 0.012, standard error 0.009): not two standard errors
    assert choose({simple: (0.645, 0.601, 0.608), rich: (0.668, 0.595, 0.627)}) == simple
    assert choose({simple: (0.70,) * 3, rich: (0.72,) * 3, richer: (0.74, 0.75, 0.74)}) == richer
    # +0.02 on average, but all of it from one fold: not evidence enough
    assert choose({simple: (0.70, 0.70, 0.70), rich: (0.66, 0.70, 0.80)}) == simple
    # each richer head is judged against TF-IDF alone: a higher mean from noisy folds is not enough
    assert choose({simple: (0.70,) * 3, rich: (0.715, 0.72, 0.715), richer: (0.69, 0.78, 0.75)}) == rich


def _choice(texts, labels, embeddings, seed=42, workers=1) -> tuple[HeadChoice, FieldHead]:
    head, features, emb, y, _ = _field_inputs(texts, labels, embeddings)
    config = TrainConfig(seed=seed, neighbours=0)
    inputs = HeadInputs(HeadFeatures(emb, features.transform(texts)), y, config)
    return fit_field(head, inputs, workers=workers), head


def test_text_that_carries_the_label_keeps_the_baseline_head():
    texts, labels = _noisy_tickets(120, seed=3)
    noise = np.random.default_rng(3).normal(size=(len(texts), DIM))
    choice, head = _choice(texts, labels, noise)
    assert choice.strengths == (OFF, 10.0, OFF)
    assert choice.folds == 3 and len(choice.scores) == 4  # no memory: TF-IDF only, then 3 with the embedding
    assert not head.dense.weight.any()  # the final head is the baseline's too
    assert "TF-IDF (C=10)" in choice.summary() and "3-fold" in choice.summary()


def test_an_embedding_that_carries_the_label_is_chosen_on_evidence():
    texts, _ = _noisy_tickets(120, seed=4)
    rng = np.random.default_rng(4)
    labels = rng.choice(["a", "b", "c"], size=len(texts)).tolist()  # unrelated to the words
    centres = rng.normal(size=(3, DIM)) * 2
    embeddings = centres[[["a", "b", "c"].index(label) for label in labels]] + rng.normal(
        size=(len(texts), DIM)
    )
    choice, head = _choice(texts, labels, embeddings)
    assert choice.strengths[0] != OFF
    best_dense = max(score for c, score in choice.scores.items() if c[0] != OFF)
    assert best_dense > choice.scores[(OFF, 10.0, OFF)] + 0.2
    assert head.dense.weight.any()


@pytest.mark.parametrize("seed", [0, 7])
def test_the_choice_is_deterministic_for_a_seed_with_or_without_parallel_fits(seed):
    texts, labels = _noisy_tickets(90, seed=5)
    embeddings = np.random.default_rng(5).normal(size=(len(texts), DIM))
    first, first_head = _choice(texts, labels, embeddings, seed=seed)
    second, second_head = _choice(texts, labels, embeddings, seed=seed, workers=3)
    assert first == second
    for mine, theirs in zip(first_head.parameters(), second_head.parameters(), strict=True):
        torch.testing.assert_close(mine, theirs)


def test_a_class_too_rare_to_hold_out_stays_in_every_fitting_part():
    texts, labels = _noisy_tickets(30, seed=6)
    texts, labels = [*texts, "a lone ticket about the canteen"], [*labels, "Facilities"]
    names = sorted(set(labels))
    y = np.array([names.index(label) for label in labels])
    splits = _splits(y, 42)
    lone = labels.index("Facilities")
    assert len(splits) == 3
    assert all(lone in fit and lone not in val for fit, val in splits)
    choice, _ = _choice(texts, labels, np.random.default_rng(6).normal(size=(len(texts), DIM)))
    assert choice.folds == 3  # the other classes are still cross-validated


def test_fewer_than_two_classes_to_hold_out_fit_the_simplest_candidate_without_a_choice():
    texts, labels = _noisy_tickets(30, seed=6)
    labels = ["Billing"] * 28 + ["Facilities"] * 2
    choice, _ = _choice(texts, labels, np.random.default_rng(6).normal(size=(len(texts), DIM)))
    assert choice.strengths == (OFF, 10.0, OFF) and not choice.scores
    assert "too few rows per class" in choice.summary()


def test_large_data_choose_on_one_split_pruned_and_deterministic(monkeypatch):
    monkeypatch.setattr(head_fitting, "SPLIT_ROWS", 100)
    monkeypatch.setattr(head_fitting, "SELECTION_ROWS", 80)
    texts, _ = _noisy_tickets(150, seed=4)
    rng = np.random.default_rng(4)
    labels = rng.choice(["a", "b", "c"], size=len(texts)).tolist()  # carried by the embedding only
    centres = rng.normal(size=(3, DIM)) * 2
    embeddings = centres[[["a", "b", "c"].index(label) for label in labels]] + rng.normal(
        size=(len(texts), DIM)
    )
    choice, head = _choice(texts, labels, embeddings)
    assert choice.folds == 1 and choice.split_rows[1] == 30 and abs(choice.split_rows[0] - 80) <= 2
    assert set(choice.errors) == set(choice.scores) and choice.errors[(OFF, 10.0, OFF)] == 0.0
    assert choice.strengths[0] != OFF and head.dense.weight.any()
    assert len(choice.scores) <= 5  # the grid without the memory, then the memory at the best strength
    assert "one stratified validation split" in choice.summary() and "30 scored" in choice.summary()
    again, again_head = _choice(texts, labels, embeddings)
    assert again == choice
    for mine, theirs in zip(head.parameters(), again_head.parameters(), strict=True):
        torch.testing.assert_close(mine, theirs)


def test_the_final_fit_on_large_data_starts_from_the_chosen_candidates_weights(monkeypatch):
    """From SPLIT_ROWS rows the final fit on all rows is warm: it starts from the weights the chosen
    candidate reached on the selection rows, with at most LARGE_REFIT_MAX_ITER iterations."""
    monkeypatch.setattr(head_fitting, "SPLIT_ROWS", 100)
    monkeypatch.setattr(head_fitting, "SELECTION_ROWS", 80)
    texts, labels = _noisy_tickets(150, seed=5)
    head, features, emb, y, _ = _field_inputs(texts, labels, np.random.default_rng(5).normal(size=(150, DIM)))
    inputs = HeadInputs(HeadFeatures(emb, features.transform(texts)), y, TrainConfig(neighbours=0))
    choice = select_head(head, inputs)
    chosen = {k: v.clone() for k, v in head.state_dict().items()}
    assert chosen["sparse_weight"].any()
    calls, fit = [], head_fitting.fit_head

    def spy(h, inputs, y, weights, c, max_iter, **options):
        calls.append((max_iter, options["warm_start"], {k: v.clone() for k, v in h.state_dict().items()}))
        fit(h, inputs, y, weights, c, max_iter, **options)

    monkeypatch.setattr(head_fitting, "fit_head", spy)
    refit_head(head, inputs, choice)
    ((max_iter, warm, start),) = calls
    assert warm and max_iter == min(head_fitting.LARGE_REFIT_MAX_ITER, inputs.config.max_iter)
    for name, weights in chosen.items():
        torch.testing.assert_close(start[name], weights)


def test_one_split_needs_the_gain_beyond_two_bootstrap_errors():
    simple, rich = (OFF, 10.0, OFF), (0.01, 10.0, OFF)
    assert choose({simple: (0.70,), rich: (0.72,)}, {simple: 0.0, rich: 0.005}) == rich
    assert choose({simple: (0.70,), rich: (0.72,)}, {simple: 0.0, rich: 0.015}) == simple


def test_the_training_product_and_its_gradient_are_the_sparse_product_of_the_rows():
    """Training's product (with its transpose for the gradient): the same logits as inference's
    CSR product, and the gradient of the weights is X^T G."""
    texts, labels = _noisy_tickets(60, seed=8)
    head, features, emb, _, _ = _field_inputs(texts, labels, np.random.default_rng(8).normal(size=(60, DIM)))
    x = features.transform(texts)
    with torch.no_grad():
        head.sparse_weight.copy_(
            torch.randn(head.sparse_weight.shape, generator=torch.Generator().manual_seed(0))
        )
    training = head(emb, SparseRows.from_csr(x, for_training=True))
    with torch.inference_mode():
        inference = head(emb, SparseRows.from_csr(x))
    torch.testing.assert_close(training.detach(), inference)
    grad = torch.randn(training.shape, generator=torch.Generator().manual_seed(1))
    training.backward(grad)
    expected = torch.from_numpy(np.asarray(x.T @ grad.numpy(), dtype=np.float32))
    torch.testing.assert_close(head.sparse_weight.grad, expected)


@pytest.mark.parametrize("n_classes", [4, heads.SCIPY_FROM_CLASSES])
def test_few_classes_train_on_torchs_csr_product_many_on_scipys_with_the_same_result(monkeypatch, n_classes):
    """The training product runs where it is faster (torch's CSR kernels below SCIPY_FROM_CLASSES,
    scipy from there); either gives X W and the gradient X^T G."""
    x = sparse.random(40, 300, density=0.05, format="csr", dtype=np.float32, random_state=3)
    head = FieldHead(DIM, x.shape[1], n_classes)
    with torch.no_grad():
        head.sparse_weight.copy_(
            torch.randn(head.sparse_weight.shape, generator=torch.Generator().manual_seed(0))
        )
    rows = SparseRows.from_csr(x, for_training=True)
    wrapped, wrap = [], heads._torch_csr
    monkeypatch.setattr(heads, "_torch_csr", lambda *args: wrapped.append(1) or wrap(*args))
    logits = head(torch.zeros(x.shape[0], DIM), rows)
    grad = torch.randn(logits.shape, generator=torch.Generator().manual_seed(1))
    logits.backward(grad)
    assert len(wrapped) == (0 if n_classes >= heads.SCIPY_FROM_CLASSES else 1)  # the backward's X^T
    dense = torch.from_numpy(x.toarray())
    torch.testing.assert_close(
        logits.detach(), dense @ head.sparse_weight.detach() + head.dense.bias.detach()
    )
    torch.testing.assert_close(head.sparse_weight.grad, dense.T @ grad)


def test_the_single_split_starts_at_split_rows():
    y = np.arange(head_fitting.SPLIT_ROWS) % 50
    assert len(_splits(y, 42)) == 1  # one stratified validation split ...
    fit, val = _splits(y, 42)[0]
    assert (
        len(val) == round(head_fitting.VALIDATION_SHARE * len(y)) and len(fit) <= head_fitting.SELECTION_ROWS
    )
    assert set(y[fit]) == set(y)  # every class is learned
    assert len(_splits(y[:-1], 42)) == head_fitting.CV_FOLDS  # ... below it, cross-validation as before


def test_a_pruned_candidate_is_never_the_chosen_one(monkeypatch):
    """Text carries the label, the embedding is noise: stronger embeddings score worse on the one
    split, so the grid is abandoned early; the choice is among the scored, here TF-IDF alone."""
    monkeypatch.setattr(head_fitting, "SPLIT_ROWS", 100)
    monkeypatch.setattr(head_fitting, "SELECTION_ROWS", 120)
    texts, labels = _noisy_tickets(200, seed=9)
    noise = np.random.default_rng(9).normal(size=(len(texts), DIM)) * 3
    choice, _ = _choice(texts, labels, noise)
    options = candidates(TrainConfig(neighbours=0), sparse=True, memory=False)
    assert choice.folds == 1
    assert len(choice.scores) < len(options)  # some strengths were never fitted
    assert choice.strengths in choice.scores
    assert choice.strengths == (OFF, 10.0, OFF)
