"""Token-budget batches: every text once, budget respected, longest first, deterministic."""

import numpy as np
import pytest

from triage.models.batching import pad_batch, token_budget_batches


def test_batches_cover_every_row_once_within_the_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 300, size=500).tolist()
    batches = token_budget_batches(lengths, batch_tokens=2048)
    rows = np.concatenate(batches)
    assert sorted(rows.tolist()) == list(range(500))
    for batch in batches:
        assert len(batch) * max(lengths[i] for i in batch) <= 2048
    firsts = [lengths[b[0]] for b in batches]
    assert firsts == sorted(firsts, reverse=True)  # length-sorted: little padding
    again = token_budget_batches(lengths, batch_tokens=2048)
    assert all((a == b).all() for a, b in zip(batches, again, strict=True))


def test_a_text_longer_than_the_budget_gets_its_own_batch():
    batches = token_budget_batches([10, 5000, 10], batch_tokens=256)
    assert [b.tolist() for b in batches] == [[1], [0, 2]]
    with pytest.raises(ValueError):
        token_budget_batches([1], batch_tokens=0)


def test_pad_batch_pads_right_with_a_mask():
    ids, mask = pad_batch([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert mask.tolist() == [[1, 1, 1], [1, 0, 0]]
