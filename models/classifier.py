"""The triage classifier: one shared text encoder, one head per field.

One forward pass of the encoder over a batch gives the pooled embedding every head reads, so all
fields cost one encoder pass. With the ``hybrid`` head each field also reads hashed word and
character n-gram TF-IDF features (:mod:`triage.models.features`), which carry exact wording the frozen
embedding blurs; the ``linear`` head reads the embedding only.

A neighbour memory (:mod:`triage.models.memory`) can add, for every field, the labels of the most similar
training tickets as a third input of the heads.

On disk (a model version folder): ``encoder/`` as transformers saves model and tokenizer
(safetensors), ``heads.safetensors`` (head weights, embedding standardisation, IDF weights, the
memory) and the classifier's settings inside ``model.json`` (see :mod:`triage.models.manifest`).
Nothing is pickled.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from triage.models.batching import pad_batch, token_budget_batches
from triage.models.features import HashedTfidf, HashingConfig
from triage.models.heads import FieldHead, HeadFeatures, SparseRows
from triage.models.manifest import ClassifierConfig, ModelFolderError
from triage.models.memory import NeighbourMemory
from triage.models.tags import TAGS
from triage.settings import ModelSettings

DEFAULT_BATCH_TOKENS = ModelSettings().batch_tokens

ENCODER_DIR = "encoder"
HEADS_FILE = "heads.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz")


def pick_device(device: str = "auto") -> torch.device:
    """``auto``: CUDA if present, else CPU (sparse heads lack MPS kernels); other values as given."""
    if device != "auto":
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def check_model_folder(folder: Path) -> None:
    """Refuse ``folder`` if it holds pickle-capable files (only safetensors and JSON load) or
    symlinks leading out of it (a version folder is self-contained)."""
    root = folder.resolve()
    pickles = []
    for parent, dirs, files in os.walk(folder):  # symlinked folders are listed, not entered
        for name in dirs + files:
            path = Path(parent, name)
            relative = path.relative_to(folder).as_posix()
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                raise ModelFolderError(
                    f"{folder}: {relative} is a symlink to {path.resolve()}, outside the model folder; "
                    "a model folder must hold its own files"
                )
            if path.suffix in PICKLE_SUFFIXES:
                pickles.append(relative)
    if pickles:
        raise ModelFolderError(
            f"{folder} holds pickle-capable files ({', '.join(sorted(pickles))}); "
            "model folders must contain only safetensors and JSON. Remove them or re-save with safetensors."
        )


def load_encoder(path: Path | str, device: torch.device) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """An encoder and its tokenizer from a local folder (or a hub id where a hub is reachable).

    Weights are read from safetensors only (``use_safetensors=True``); no pickle is ever loaded.
    """
    hf_logging.disable_progress_bar()
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=Path(path).exists())
    encoder = AutoModel.from_pretrained(
        str(path), local_files_only=Path(path).exists(), use_safetensors=True, dtype=torch.float32
    )
    return encoder.to(device).eval(), tokenizer


def group_tensors(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors named ``prefix...``, the prefix removed."""
    return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}


class TriageClassifier(nn.Module):
    """Shared encoder + per-field heads. Build with :meth:`create` (training) or :meth:`load`."""

    # Buffers registered in __init__ (nn.Module's __getattr__ would type them Tensor | Module).
    embed_mean: torch.Tensor
    embed_scale: torch.Tensor

    def __init__(
        self,
        encoder: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        config: ClassifierConfig,
        features: HashedTfidf | None,
        memory: NeighbourMemory | None = None,
    ) -> None:
        super().__init__()
        if (config.head == "hybrid") != (features is not None):
            raise ValueError("a hybrid head needs hashed features; a linear head takes none")
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.config = config
        self.features = features
        self.memory = memory
        dim = int(encoder.config.hidden_size)
        self.register_buffer("embed_mean", torch.zeros(dim))
        self.register_buffer("embed_scale", torch.ones(dim))
        self.heads = nn.ModuleList()  # one per field, in ``config.labels`` order (see :meth:`head`)
        self.tags_head: FieldHead | None = None  # one output per tag in ``config.tags`` (multi-label)
        self._build_heads()

    def _build_heads(self) -> None:
        """Fresh zero heads sized for the embedding, the (fitted) hashed features and the memory."""
        dim = self.embed_mean.shape[0]
        n_sparse = self.features.n_features if self.features is not None else 0
        memory = self.config.memory is not None
        self.heads = nn.ModuleList(
            FieldHead(dim, n_sparse, len(labels), memory=memory) for labels in self.config.labels.values()
        ).to(self.embed_mean.device)
        tags = self.config.tags
        self.tags_head = FieldHead(dim, n_sparse, len(tags)).to(self.embed_mean.device) if tags else None

    def head(self, field: str) -> FieldHead:
        head = self.heads[self.fields.index(field)]
        assert isinstance(head, FieldHead)  # _build_heads fills ``heads`` with FieldHeads only
        return head

    def fit_features(
        self,
        texts: Sequence[str],
        embeddings: np.ndarray,
        labels: dict[str, np.ndarray],
        memory_rows: np.ndarray | None = None,
    ) -> None:
        """Fit everything the heads read besides the embedding, from the training rows.

        The hashed TF-IDF (hybrid head) learns its buckets and IDF weights from ``texts``; the
        embedding standardisation its mean and scale; the neighbour memory (if configured) keeps
        the ``memory_rows`` (default: all) of ``embeddings`` with each field's label index
        (``labels``, -1: none). Heads restart from zero.
        """
        if self.features is not None:
            self.features.fit(texts)
        self.embed_mean.copy_(torch.from_numpy(embeddings.mean(axis=0)))
        self.embed_scale.copy_(torch.from_numpy(embeddings.std(axis=0) + 1e-6))
        if self.config.memory is not None:
            rows = np.arange(len(embeddings)) if memory_rows is None else memory_rows
            n_classes = {field: len(names) for field, names in self.config.labels.items()}
            memory_labels = {field: y[rows] for field, y in labels.items()}
            settings = self.config.memory
            self.memory = NeighbourMemory(
                embeddings[rows],
                memory_labels,
                n_classes,
                k=int(settings["k"]),
                temperature=float(settings["temperature"]),
            )
        self._build_heads()

    @classmethod
    def create(
        cls,
        encoder_path: Path | str,
        config: ClassifierConfig,
        *,
        device: torch.device | str = "cpu",
    ) -> TriageClassifier:
        """A classifier with untrained (zero) heads over the base encoder at ``encoder_path``."""
        device = torch.device(device)
        encoder, tokenizer = load_encoder(encoder_path, device)
        features = HashedTfidf(HashingConfig.from_dict(config.hashing)) if config.hashing else None
        return cls(encoder, tokenizer, config, features).to(device)

    @property
    def device(self) -> torch.device:
        return self.embed_mean.device

    @property
    def fields(self) -> list[str]:
        return list(self.config.labels)

    # -- text to token ids to embeddings -------------------------------------------------------------

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text (query prefix added, truncated to ``max_length``), unpadded."""
        prefixed = [self.config.query_prefix + text for text in texts]
        encoded = self.tokenizer(prefixed, truncation=True, max_length=self.config.max_length)
        return encoded["input_ids"]

    def pool(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean of the last hidden states over real tokens, L2-normalised (float32)."""
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        summed = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return nn.functional.normalize(summed.float(), dim=-1)

    def pad(self, token_ids: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        input_ids, mask = pad_batch(token_ids, int(self.tokenizer.pad_token_id or 0))
        return input_ids.to(self.device), mask.to(self.device)

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA; plain float32 elsewhere."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def embed(
        self,
        texts: Sequence[str],
        *,
        batch_tokens: int = DEFAULT_BATCH_TOKENS,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> np.ndarray:
        """Pooled embeddings ``(len(texts), dim)`` in input order, from length-sorted token-budget batches.

        ``on_batch(done, total)`` is called after tokenising (``0`` of the batches) and after each batch.
        """
        token_ids = self.tokenize(texts)
        out = np.zeros((len(texts), self.embed_mean.shape[0]), dtype=np.float32)
        batches = token_budget_batches([len(ids) for ids in token_ids], batch_tokens)
        if on_batch is not None:
            on_batch(0, len(batches))
        with torch.inference_mode(), self.autocast():
            for done, batch in enumerate(batches, start=1):
                pooled = self.pool(*self.pad([token_ids[i] for i in batch]))
                out[batch] = pooled.float().cpu().numpy()
                if on_batch is not None:
                    on_batch(done, len(batches))
        return out

    def sparse_features(self, texts: Sequence[str]) -> sp.csr_matrix | None:
        return self.features.transform(texts) if self.features is not None else None

    # -- heads ---------------------------------------------------------------------------------------

    def standardise(self, embeddings: torch.Tensor) -> torch.Tensor:
        return (embeddings - self.embed_mean) / self.embed_scale

    def neighbour_features(
        self, embeddings: np.ndarray, *, self_index: np.ndarray | None = None
    ) -> dict[str, torch.Tensor] | None:
        """Per field, the memory's neighbour label shares as tensors (None without a memory)."""
        if self.memory is None:
            return None
        shares = self.memory.features(embeddings, self_index=self_index)
        return {field: torch.from_numpy(value).to(self.device) for field, value in shares.items()}

    def head_features(self, embeddings: np.ndarray, sparse: sp.csr_matrix | None) -> dict[str, HeadFeatures]:
        """Per field, its head's inputs for rows with these (pooled) embeddings and TF-IDF rows: the
        standardised embeddings, the TF-IDF rows and the memory's neighbour label shares."""
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        emb = self.standardise(torch.from_numpy(embeddings).to(self.device))
        neighbours = self.neighbour_features(embeddings)
        return {
            field: HeadFeatures(emb, sparse, neighbours[field] if neighbours else None)
            for field in self.fields
        }

    def proba_from_features(
        self, embeddings: np.ndarray, sparse: sp.csr_matrix | None
    ) -> dict[str, np.ndarray]:
        """Class probabilities per field from precomputed embeddings and TF-IDF rows."""
        features = self.head_features(embeddings, sparse)
        rows = SparseRows.from_csr(sparse, self.device) if sparse is not None else None
        return {
            field: self.head(field).proba(inputs.embeddings, rows, inputs.neighbours)
            for field, inputs in features.items()
        }

    def tag_proba(self, embeddings: np.ndarray, sparse: sp.csr_matrix | None) -> np.ndarray:
        """``(rows, len(config.tags))``: each tag's own probability (a sigmoid per tag) for rows with
        these (pooled) embeddings and TF-IDF rows. Raises ValueError for a model without a tags head."""
        if self.tags_head is None:
            raise ValueError("this model has no tags head")
        emb = self.standardise(
            torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32)).to(self.device)
        )
        rows = SparseRows.from_csr(sparse, self.device) if sparse is not None else None
        return self._tag_sigmoid(self.tags_head, emb, rows)

    @staticmethod
    def _tag_sigmoid(head: FieldHead, embeddings: torch.Tensor, rows: SparseRows | None) -> np.ndarray:
        with torch.inference_mode():
            return torch.sigmoid(head(embeddings, rows).float()).cpu().numpy()

    def predict_proba(
        self, texts: Sequence[str], *, batch_tokens: int = DEFAULT_BATCH_TOKENS
    ) -> dict[str, np.ndarray]:
        """Class probabilities per field, ``(len(texts), n_labels)``; columns follow ``config.labels``.
        With a tags head also ``tags``: each tag's own probability, columns following ``config.tags``."""
        if not texts:
            out = {
                field: np.zeros((0, len(labels)), np.float32) for field, labels in self.config.labels.items()
            }
            if self.config.tags:
                out[TAGS] = np.zeros((0, len(self.config.tags)), np.float32)
            return out
        sparse = self.sparse_features(texts)
        if not self.reads_embedding():
            return self._proba_without_encoder(len(texts), sparse)
        embeddings = self.embed(texts, batch_tokens=batch_tokens)
        out = self.proba_from_features(embeddings, sparse)
        if self.tags_head is not None:
            out[TAGS] = self.tag_proba(embeddings, sparse)
        return out

    def _all_heads(self) -> list[FieldHead]:
        return [self.head(field) for field in self.fields] + ([self.tags_head] if self.tags_head else [])

    def reads_embedding(self) -> bool:
        """Whether any head's output depends on the encoder: an embedding or memory weight not zero.

        Where head selection kept TF-IDF alone for every field (the baseline's recipe, when the encoder
        does not earn its place), prediction skips the encoder: the same probabilities, bit for bit.
        """
        return any(
            bool(head.dense.weight.any())
            or (head.memory_weight is not None and bool(head.memory_weight.any()))
            for head in self._all_heads()
        )

    def _proba_without_encoder(self, n: int, sparse: sp.csr_matrix | None) -> dict[str, np.ndarray]:
        """:meth:`predict_proba` for heads whose embedding and memory weights are all zero: their inputs
        are zeros (the products that read them are zero exactly), the TF-IDF rows as they are."""
        rows = SparseRows.from_csr(sparse, self.device) if sparse is not None else None
        zeros = torch.zeros((n, self.embed_mean.shape[0]), device=self.device)
        out = {}
        for field in self.fields:
            head = self.head(field)
            shares = (
                torch.zeros((n, head.n_classes), device=self.device)
                if head.memory_weight is not None
                else None
            )
            out[field] = head.proba(zeros, rows, shares)
        if self.tags_head is not None:
            out[TAGS] = self._tag_sigmoid(self.tags_head, zeros, rows)
        return out

    # -- persistence ---------------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """Write ``encoder/`` (model + tokenizer, safetensors) and ``heads.safetensors`` into ``folder``."""
        encoder_dir = folder / ENCODER_DIR
        self.encoder.save_pretrained(encoder_dir, safe_serialization=True)
        self.tokenizer.save_pretrained(encoder_dir)
        tensors = {
            "embed.mean": self.embed_mean,
            "embed.scale": self.embed_scale,
            **{
                f"head.{field}.{name}": value
                for field in self.fields
                for name, value in self.head(field).state_dict().items()
            },
        }
        if self.tags_head is not None:
            tensors.update({f"tags.{name}": value for name, value in self.tags_head.state_dict().items()})
        if self.features is not None:
            tensors.update(
                {f"features.{k}": torch.from_numpy(v) for k, v in self.features.state_arrays().items()}
            )
        if self.memory is not None:
            tensors.update(
                {f"memory.{k}": torch.from_numpy(v) for k, v in self.memory.state_arrays().items()}
            )
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(folder / HEADS_FILE))

    @classmethod
    def load(
        cls, folder: Path, config: ClassifierConfig, *, device: torch.device | str = "cpu"
    ) -> TriageClassifier:
        """Load a saved classifier; :class:`ModelFolderError` names a refused, missing or corrupt file."""
        check_model_folder(folder)
        device = torch.device(device)
        try:
            encoder, tokenizer = load_encoder(folder / ENCODER_DIR, device)
        except (OSError, ValueError, SafetensorError) as exc:
            raise ModelFolderError(f"{folder / ENCODER_DIR}: cannot load the encoder ({exc})") from None
        try:
            tensors = load_file(str(folder / HEADS_FILE))
        except (OSError, SafetensorError) as exc:
            raise ModelFolderError(
                f"{folder / HEADS_FILE}: unreadable, truncated or corrupt ({exc})"
            ) from None

        def group(prefix: str) -> dict[str, np.ndarray]:
            return {k.removeprefix(prefix): v.numpy() for k, v in tensors.items() if k.startswith(prefix)}

        features = None
        if config.hashing:
            features = HashedTfidf.from_state(HashingConfig.from_dict(config.hashing), group("features."))
        memory = None
        if config.memory is not None:
            n_classes = {field: len(names) for field, names in config.labels.items()}
            memory = NeighbourMemory.from_state(group("memory."), n_classes, config.memory)
        model = cls(encoder, tokenizer, config, features, memory)
        model.embed_mean.copy_(tensors["embed.mean"])
        model.embed_scale.copy_(tensors["embed.scale"])
        for field in model.fields:
            model.head(field).load_state_dict(group_tensors(tensors, f"head.{field}."), strict=True)
        if model.tags_head is not None:
            model.tags_head.load_state_dict(group_tensors(tensors, "tags."), strict=True)
        return model.to(device).eval()
