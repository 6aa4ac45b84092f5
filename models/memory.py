"""Neighbour memory: the labels of the most similar training tickets, as features for the heads.

Helpdesks see the same issues again and again, phrased a little differently. A linear head
generalises over words; the memory adds "tickets most like this one went to X". It keeps the
pooled (L2-normalised) embeddings of the training tickets, not their text, with each field's label
index (-1 where a ticket has no label for the field or its class is not in the head). For a query
embedding it finds the ``k`` most cosine-similar memory rows and returns, per field, the
similarity-weighted share of each label among them (weights ``exp((s - s_max) / temperature)``).

For the training rows themselves the features are leave-one-out (a row is never its own neighbour),
so the head learns how far to trust the memory from honest estimates. Rows are processed in blocks,
so memory use stays bounded for any number of queries.
"""

from __future__ import annotations

import numpy as np

BLOCK_ROWS = 1024


class NeighbourMemory:
    """Embeddings (float16) and per-field label indices of the training tickets."""

    def __init__(
        self,
        embeddings: np.ndarray,
        labels: dict[str, np.ndarray],
        n_classes: dict[str, int],
        *,
        k: int = 10,
        temperature: float = 0.02,
    ) -> None:
        if k < 1 or temperature <= 0:
            raise ValueError("k must be positive and temperature above zero")
        self.embeddings = np.asarray(embeddings, dtype=np.float16)
        self.labels = {field: np.asarray(y, dtype=np.int32) for field, y in labels.items()}
        for field, y in self.labels.items():
            if y.shape != (len(self.embeddings),):
                raise ValueError(f"memory labels of {field!r} do not match the {len(self.embeddings)} rows")
        self.n_classes = dict(n_classes)
        self.k = k
        self.temperature = temperature
        self._keys = self.embeddings.astype(
            np.float32
        )  # the values used, identical at training and after loading

    def __len__(self) -> int:
        return len(self.embeddings)

    def features(self, queries: np.ndarray, *, self_index: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Per field ``(len(queries), n_classes)`` neighbour label shares (rows sum to 1, or 0 if none).

        ``self_index[i]`` (optional) is the memory row query ``i`` itself is, or -1: that row is
        skipped, so a training ticket is never its own neighbour.
        """
        queries = np.asarray(queries, dtype=np.float32)
        out = {field: np.zeros((len(queries), n), dtype=np.float32) for field, n in self.n_classes.items()}
        k = min(self.k, len(self) - (1 if self_index is not None else 0))
        if k < 1 or not len(queries):
            return out
        for start in range(0, len(queries), BLOCK_ROWS):
            block = slice(start, start + BLOCK_ROWS)
            sims = queries[block] @ self._keys.T
            if self_index is not None:
                own = np.asarray(self_index[block])
                rows = np.flatnonzero(own >= 0)
                sims[rows, own[rows]] = -np.inf
            index = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            best = np.take_along_axis(sims, index, axis=1)
            weights = np.exp((best - best.max(axis=1, keepdims=True)) / self.temperature)
            for field, labels in self.labels.items():
                neighbour_labels = labels[index]
                shares = out[field][block]
                for j in range(k):
                    known = neighbour_labels[:, j] >= 0
                    np.add.at(shares, (np.flatnonzero(known), neighbour_labels[known, j]), weights[known, j])
                totals = shares.sum(axis=1, keepdims=True)
                np.divide(shares, totals, out=shares, where=totals > 0)
        return out

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Embeddings and label indices, keyed for a safetensors file."""
        return {"embeddings": self.embeddings, **{f"labels.{f}": y for f, y in self.labels.items()}}

    def settings(self) -> dict[str, float | int]:
        return {"k": self.k, "temperature": self.temperature}

    @classmethod
    def from_state(
        cls, arrays: dict[str, np.ndarray], n_classes: dict[str, int], settings: dict[str, float | int]
    ) -> NeighbourMemory:
        labels = {field: arrays[f"labels.{field}"] for field in n_classes}
        return cls(
            arrays["embeddings"],
            labels,
            n_classes,
            k=int(settings["k"]),
            temperature=float(settings["temperature"]),
        )
