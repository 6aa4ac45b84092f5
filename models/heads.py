"""Per-field classification heads over a pooled embedding and (optionally) hashed TF-IDF features.

A head is linear: ``logits = W_e . embedding + X . W_s + b``, where ``X`` is the sparse TF-IDF
matrix of the batch. Inference runs the product on torch's CSR kernels. Training keeps only the
transpose ``X^T`` (scipy CSR, computed once): the forward pass reads it column-wise (``X = (X^T)^T``
as CSC, which walks ``W_s`` in order and scatters into the small logits) and the backward pass
``X^T G`` row-wise; both are 2-3 times faster than torch's CSR product of ``X`` on CPU, whose random
reads of ``W_s`` miss the cache once it holds many classes.
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


class _SparseMatmul(torch.autograd.Function):
    """``X @ W`` from the CSR transpose ``X^T`` alone (as CSC of ``X``); the gradient of ``W`` is
    ``X^T @ G``. On the CPU, in scipy (which releases the GIL, so heads fit side by side)."""

    @staticmethod
    def forward(ctx, weight: torch.Tensor, transposed: sp.csr_matrix) -> torch.Tensor:
        ctx.transposed, ctx.device = transposed, weight.device
        return torch.from_numpy(transposed.T @ weight.detach().cpu().numpy()).to(weight.device)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
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
        return logits + _SparseMatmul.apply(self.sparse_weight, sparse.transposed)

    def proba(
        self,
        embeddings: torch.Tensor,
        sparse: SparseRows | None = None,
        neighbours: torch.Tensor | None = None,
    ) -> np.ndarray:
        """Class probabilities ``(rows, n_classes)``: the softmax of the logits, without gradients."""
        with torch.inference_mode():
            return torch.softmax(self(embeddings, sparse, neighbours).float(), dim=-1).cpu().numpy()
