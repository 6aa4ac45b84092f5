"""Hashed TF-IDF features: word and character n-grams without a stored vocabulary.

N-grams are hashed into large fixed spaces (scikit-learn's :class:`HashingVectorizer`, MurmurHash3).
``fit`` keeps the hash buckets seen in enough training texts (per block) and their IDF weights;
``transform`` maps a text onto those buckets (unseen n-grams are dropped, as a vocabulary would).
The learned state is two arrays per block, bucket ids and IDF weights, saved as safetensors next to
a few JSON settings: nothing is pickled, and head weights exist only for buckets that were seen.

Each block (words, characters) is sublinear-TF x IDF and L2-normalised, then the blocks are stacked:
the same recipe as the TF-IDF + logistic-regression baseline, so a head over these features and an
encoder embedding starts from everything the baseline sees.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.preprocessing import normalize


@dataclass(frozen=True)
class HashingConfig:
    """Hash space sizes (0 turns a block off), n-gram ranges and minimum document frequencies.

    The defaults are the baseline's (:mod:`triage.models.baseline`): every word 1-2-gram, char 3-5-grams
    seen in at least two training texts.
    """

    word_buckets: int = 2**20
    char_buckets: int = 2**20
    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] = (3, 5)
    word_min_df: int = 1
    char_min_df: int = 2
    max_features: int | None = None
    """Most buckets kept over both blocks (the most frequent by document frequency); None: all."""

    def __post_init__(self) -> None:
        if self.word_buckets < 0 or self.char_buckets < 0:
            raise ValueError("hash space sizes must not be negative")
        if self.word_buckets == 0 and self.char_buckets == 0:
            raise ValueError("at least one of word_buckets, char_buckets must be positive")
        if self.max_features is not None and self.max_features < 1:
            raise ValueError("max_features must be positive (or None: no limit)")
        if self.word_min_df < 1 or self.char_min_df < 1:
            raise ValueError("word_min_df and char_min_df must be at least 1")
        for name in ("word_ngrams", "char_ngrams"):
            low, high = getattr(self, name)
            if not 1 <= low <= high:
                raise ValueError(f"{name} must be (low, high) with 1 <= low <= high")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> HashingConfig:
        """Inverse of :meth:`to_dict`; ``data`` is decoded JSON (model.json's ``hashing``)."""
        return cls(
            word_buckets=int(data["word_buckets"]),
            char_buckets=int(data["char_buckets"]),
            word_ngrams=tuple(data["word_ngrams"]),
            char_ngrams=tuple(data["char_ngrams"]),
            word_min_df=int(data["word_min_df"]),
            char_min_df=int(data["char_min_df"]),
            max_features=int(data["max_features"]) if data.get("max_features") is not None else None,
        )


class HashedTfidf:
    """Sublinear TF-IDF over hashed word and char_wb n-grams; ``fit`` learns buckets and IDF weights."""

    def __init__(self, config: HashingConfig | None = None) -> None:
        self.config = config or HashingConfig()
        self._vectorizers: dict[str, HashingVectorizer] = {}
        self._min_df = {"word": self.config.word_min_df, "char": self.config.char_min_df}
        if self.config.word_buckets:
            self._vectorizers["word"] = self._vectorizer(
                "word", self.config.word_ngrams, self.config.word_buckets
            )
        if self.config.char_buckets:
            self._vectorizers["char"] = self._vectorizer(
                "char_wb", self.config.char_ngrams, self.config.char_buckets
            )
        self.buckets_: dict[str, np.ndarray] = {}
        self.idf_: dict[str, np.ndarray] = {}
        self._position: dict[str, np.ndarray] = {}

    @staticmethod
    def _vectorizer(analyzer: str, ngrams: tuple[int, int], n_buckets: int) -> HashingVectorizer:
        return HashingVectorizer(
            analyzer=analyzer,
            ngram_range=ngrams,
            n_features=n_buckets,
            alternate_sign=False,
            norm=None,
            lowercase=True,
            dtype=np.float32,
        )

    @property
    def n_features(self) -> int:
        """Number of columns ``transform`` returns: the kept buckets of all blocks."""
        return sum(len(b) for b in self.buckets_.values())

    def fit(self, texts: Sequence[str]) -> HashedTfidf:
        """Keep buckets with document frequency >= the block's min_df (at most ``max_features``, the
        most frequent); IDF is ``ln((1 + n) / (1 + df)) + 1``."""
        n = len(texts)
        frequencies = {}
        for name, vectorizer in self._vectorizers.items():
            df = np.bincount(vectorizer.transform(texts).indices, minlength=vectorizer.n_features)
            frequencies[name] = (df, np.flatnonzero(df >= self._min_df[name]))
        limit = self.config.max_features
        if limit is not None and sum(len(kept) for _, kept in frequencies.values()) > limit:
            # the most frequent buckets of both blocks; at the cut-off frequency, the lowest ids
            pooled = np.concatenate([df[kept] for df, kept in frequencies.values()])
            cutoff = np.sort(pooled)[-limit]
            room = limit - int((pooled > cutoff).sum())
            for name, (df, kept) in frequencies.items():
                at_cutoff = kept[df[kept] == cutoff][: max(room, 0)]
                room -= len(at_cutoff)
                frequencies[name] = (df, np.union1d(kept[df[kept] > cutoff], at_cutoff))
        for name, (df, kept) in frequencies.items():
            self.buckets_[name] = kept.astype(np.int64)
            self.idf_[name] = (np.log((1.0 + n) / (1.0 + df[kept])) + 1.0).astype(np.float32)
        self._index_positions()
        return self

    def _index_positions(self) -> None:
        for name, vectorizer in self._vectorizers.items():
            position = np.full(vectorizer.n_features, -1, dtype=np.int64)
            position[self.buckets_[name]] = np.arange(len(self.buckets_[name]))
            self._position[name] = position

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        """A float32 CSR matrix, one row per text, ``n_features`` columns."""
        if not self.buckets_:
            raise RuntimeError("HashedTfidf is not fitted")
        blocks = []
        for name, vectorizer in self._vectorizers.items():
            counts = vectorizer.transform(texts).tocsr()
            columns = self._position[name][counts.indices]
            seen = columns >= 0
            row_of = np.repeat(np.arange(len(texts)), np.diff(counts.indptr))[seen]
            tf = 1.0 + np.log(counts.data[seen])  # sublinear tf
            values = (tf * self.idf_[name][columns[seen]]).astype(np.float32)
            block = sp.csr_matrix(
                (values, (row_of, columns[seen])),
                shape=(len(texts), len(self.buckets_[name])),
                dtype=np.float32,
            )
            blocks.append(normalize(block, norm="l2", copy=False))
        return sp.hstack(blocks, format="csr", dtype=np.float32)

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The learned state (bucket ids and IDF weights per block), keyed for a safetensors file."""
        state: dict[str, np.ndarray] = {}
        for name in self._vectorizers:
            state[f"{name}.buckets"] = self.buckets_[name]
            state[f"{name}.idf"] = self.idf_[name]
        return state

    @classmethod
    def from_state(cls, config: HashingConfig, arrays: dict[str, np.ndarray]) -> HashedTfidf:
        """Rebuild a fitted instance from :meth:`state_arrays` output."""
        features = cls(config)
        for name, vectorizer in features._vectorizers.items():
            buckets = np.asarray(arrays[f"{name}.buckets"], dtype=np.int64)
            idf = np.asarray(arrays[f"{name}.idf"], dtype=np.float32)
            if buckets.shape != idf.shape or (len(buckets) and buckets.max() >= vectorizer.n_features):
                raise ValueError(f"inconsistent hashed-feature state for block {name!r}")
            features.buckets_[name] = buckets
            features.idf_[name] = idf
        features._index_positions()
        return features
