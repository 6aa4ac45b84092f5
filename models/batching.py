"""Length-sorted batches under a token budget, padded only to the longest text in each batch.

Sorting by length keeps similar lengths together, so little compute goes to padding; the token
budget (rows x longest row) bounds memory whatever the mix of long and short texts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def token_budget_batches(lengths: Sequence[int], batch_tokens: int) -> list[np.ndarray]:
    """Split row indices into batches, longest texts first, each with ``rows * max_len <= batch_tokens``.

    A single text longer than the budget still gets a batch of its own. The sort is stable, so
    equal lengths keep their input order and the batching is deterministic.
    """
    if batch_tokens < 1:
        raise ValueError("batch_tokens must be positive")
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        longest = max(int(lengths[order[start]]), 1)
        rows = max(1, batch_tokens // longest)
        batches.append(order[start : start + rows])
        start += rows
    return batches


def pad_batch(token_ids: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` int64 tensors padded on the right to the longest row."""
    width = max(len(ids) for ids in token_ids)
    input_ids = torch.full((len(token_ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(token_ids), width), dtype=torch.long)
    for row, ids in enumerate(token_ids):
        input_ids[row, : len(ids)] = torch.as_tensor(ids, dtype=torch.long)
        mask[row, : len(ids)] = 1
    return input_ids, mask
