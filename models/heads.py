"""Per-field classification heads over a pooled embedding and (optionally) hashed TF-IDF features.

A head is linear: ``logits = W_e . embedding + X . W_s + b``, where ``X`` is the sparse TF-IDF
matrix of the batch. Inference runs the product on torch's CSR kernels. Training also keeps the
transpose ``X^T`` (scipy CSR, computed once) for the gradient ``X^T G``. From
:data:`SCIPY_FROM_CLASSES` classes both training products run in scipy on ``X^T`` (forward as CSC of
``X``, which walks ``W_s`` in order and scatters into the logits): faster there than torch's CSR
product, whose random reads of ``W_s`` miss the cache. With fewer classes torch's CSR kernels are
faster (twice at 4 classes) and are used for both.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn


def _torch_csr(matrix: sp.csr_matrix, device: torch.device | str) -> torch.Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta": the product used here is stable
        warnings.simplefilter("ignore", UserWarning)
        # 32-bit indices where they fit: a third less memory than 64-bit, the same products
        index = np.int32 if max(matrix.nnz, *matrix.shape) < 2**31 else np.int64
        return torch.sparse_csr_tensor(  # the scipy arrays themselves where the types already match
            torch.from_numpy(matrix.indptr.astype(index, copy=False)),
            torch.from_numpy(matrix.indices.astype(index, copy=False)),
            torch.from_numpy(matrix.data.astype(np.float32, copy=False)),
            size=matrix.shape,
            check_invariants=False,
        ).to(device)


@dataclass(frozen=True)
class SparseRows:
    """A batch of TF-IDF rows as a torch CSR tensor (plus its transpose, scipy CSR, when gradients
    are needed)."""

    matrix: torch.Tensor
    transposed: sp.csr_matrix | None = None

    @classmethod
    def from_csr(
        cls, matrix: sp.csr_matrix, device: torch.device | str = "cpu", *, for_training: bool = False
    ) -> SparseRows:
        matrix = sp.csr_matrix(matrix, dtype=np.float32)
        transposed = matrix.T.tocsr() if for_training else None
        return cls(_torch_csr(matrix, device), transposed)


@dataclass(frozen=True)
class HeadFeatures:
    """A field head's inputs for some rows: the standardised embeddings, their TF-IDF rows (a hybrid
    head's) and the neighbour memory's label shares for the field (a head with a memory's)."""

    embeddings: torch.Tensor
    sparse: sp.csr_matrix | None = None
    neighbours: torch.Tensor | None = None
    training_rows: SparseRows | None = None
    """``sparse`` already prepared for training (with its transpose), where several heads learn
    from these very rows: built once and shared instead of once per head."""

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    def rows(self, rows: np.ndarray) -> HeadFeatures:
        """These features for the positions ``rows`` only (these very features, uncopied, when
        ``rows`` is every position in order)."""
        if len(rows) == len(self) and np.array_equal(rows, np.arange(len(self))):
            return self
        return HeadFeatures(
            self.embeddings[rows],
            self.sparse[rows] if self.sparse is not None else None,
            self.neighbours[rows] if self.neighbours is not None else None,
        )


SCIPY_FROM_CLASSES = 32
"""From this many classes training's TF-IDF products run in scipy, below it on torch's CSR kernels.
Measured (one thread, CPU time of forward + backward, 83,886 n-grams, 745 a row): 40,000 rows x
4 classes torch 103 ms, scipy 217 ms; x 10: 224 vs 447; x 25: 611 vs 667; x 50: 1,770 vs 1,412;
x 100: 5,894 vs 4,402; 8,000 rows x 100: 532 vs 368."""


def _in_scipy(n_classes: int) -> bool:
    """Whether training's TF-IDF products for a head of ``n_classes`` run in scipy."""
    return n_classes >= SCIPY_FROM_CLASSES


class _SparseMatmul(torch.autograd.Function):
    """``X @ W`` for training; the gradient of ``W`` is ``X^T @ G``. In scipy on ``X^T`` alone (which
    releases the GIL, so heads fit side by side) or on torch's CSR kernels: see :func:`_in_scipy`."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, rows: SparseRows) -> torch.Tensor:
        assert rows.transposed is not None  # FieldHead.forward checks it
        ctx.transposed, ctx.device = rows.transposed, weight.device
        if not _in_scipy(weight.shape[1]):
            return rows.matrix @ weight.detach()
        return torch.from_numpy(rows.transposed.T @ weight.detach().cpu().numpy()).to(weight.device)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        if not _in_scipy(grad.shape[1]):  # the scipy arrays wrapped, not copied
            return _torch_csr(ctx.transposed, ctx.device) @ grad.contiguous(), None
        product = ctx.transposed @ grad.detach().cpu().contiguous().numpy()
        return torch.from_numpy(product).to(ctx.device), None


class FieldHead(nn.Module):
    """Linear head for one field over up to three blocks of inputs.

    Always the (standardised) embedding; with ``n_sparse > 0`` the TF-IDF row; with ``memory`` the
    neighbour label shares of :class:`triage.models.memory.NeighbourMemory` (one weight per label pair).
    """

    def __init__(self, dim: int, n_sparse: int, n_classes: int, *, memory: bool = False) -> None:
        super().__init__()
        self.dense = nn.Linear(dim, n_classes)
        self.sparse_weight = nn.Parameter(torch.zeros(n_sparse, n_classes)) if n_sparse else None
        self.memory_weight = nn.Parameter(torch.zeros(n_classes, n_classes)) if memory else None
        self.reset_to_zero()

    @property
    def n_classes(self) -> int:
        return self.dense.out_features

    def reset_to_zero(self) -> None:
        """Start from all-zero weights: the convex training problem then has a seed-free start."""
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.zero_()

    def forward(
        self,
        embeddings: torch.Tensor,
        sparse: SparseRows | None = None,
        neighbours: torch.Tensor | None = None,
    ) -> torch.Tensor:
        logits = self.dense(embeddings)
        if self.memory_weight is not None:
            if neighbours is None:
                raise ValueError("this head needs the neighbour-memory features")
            logits = logits + neighbours @ self.memory_weight
        if self.sparse_weight is None:
            return logits
        if sparse is None:
            raise ValueError("this head needs the hashed TF-IDF features")
        if not (torch.is_grad_enabled() and self.sparse_weight.requires_grad):
            return logits + sparse.matrix @ self.sparse_weight
        if sparse.transposed is None:
            raise ValueError("training needs SparseRows.from_csr(..., for_training=True)")
        return logits + _SparseMatmul.apply(self.sparse_weight, sparse)

    def proba(
        self,
        embeddings: torch.Tensor,
        sparse: SparseRows | None = None,
        neighbours: torch.Tensor | None = None,
    ) -> np.ndarray:
        """Class probabilities ``(rows, n_classes)``: the softmax of the logits, without gradients."""
        with torch.inference_mode():
            return torch.softmax(self(embeddings, sparse, neighbours).float(), dim=-1).cpu().numpy()
