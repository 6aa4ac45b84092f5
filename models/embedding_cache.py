"""On-disk cache of frozen-encoder embeddings, keyed by encoder fingerprint and text hash.

Embedding thousands of tickets takes minutes on a CPU, and nightly retraining sees mostly the
same resolved tickets again. With a cache only new texts go through the encoder. Entries live in
``<root>/<fingerprint>/<shard>.safetensors`` (text hashes as raw bytes + float32 embeddings), where
the fingerprint covers the encoder's weights and config, the query prefix, pooling and max length.
Only frozen (not fine-tuned) embeddings belong here.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file


def encoder_fingerprint(encoder_dir: Path, *, query_prefix: str, max_length: int, pooling: str) -> str:
    """SHA-256 (first 16 hex digits) over the encoder's config, weights and the input settings."""
    digest = hashlib.sha256(f"{query_prefix!r}|{max_length}|{pooling}".encode())
    files = sorted(encoder_dir.glob("*.json")) + sorted(encoder_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no config or safetensors files in {encoder_dir}")
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 22), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


class EmbeddingCache:
    """Embeddings for one encoder fingerprint; ``lookup`` then ``add`` what was missing."""

    def __init__(self, root: Path, fingerprint: str) -> None:
        self.folder = Path(root) / fingerprint
        self._rows: dict[bytes, np.ndarray] = {}
        for shard in sorted(self.folder.glob("*.safetensors")):
            data = load_file(str(shard))
            for key, row in zip(data["hash"], data["embedding"], strict=True):
                self._rows[key.tobytes()] = row

    def __len__(self) -> int:
        return len(self._rows)

    def lookup(self, hashes: Sequence[str]) -> tuple[np.ndarray | None, list[int]]:
        """Cached rows stacked in ``hashes`` order (zeros where missing) and the missing positions."""
        missing = [i for i, h in enumerate(hashes) if bytes.fromhex(h) not in self._rows]
        if len(missing) == len(hashes):
            return None, missing
        dim = next(iter(self._rows.values())).shape[0]
        out = np.zeros((len(hashes), dim), dtype=np.float32)
        for i, h in enumerate(hashes):
            row = self._rows.get(bytes.fromhex(h))
            if row is not None:
                out[i] = row
        return out, missing

    def add(self, hashes: Sequence[str], embeddings: np.ndarray) -> None:
        """Store new rows as one more shard (written to a temporary file, then renamed)."""
        new = {bytes.fromhex(h): row for h, row in zip(hashes, embeddings, strict=True)}
        new = {k: v for k, v in new.items() if k not in self._rows}
        if not new:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        keys = np.frombuffer(b"".join(new), dtype=np.uint8).reshape(len(new), 32)
        tensors: dict[str, np.ndarray] = {
            "hash": keys.copy(),
            "embedding": np.stack(list(new.values())).astype(np.float32),
        }
        fd, tmp = tempfile.mkstemp(suffix=".tmp", dir=self.folder)
        os.close(fd)
        save_file(tensors, tmp)
        shard = self.folder / f"{len(list(self.folder.glob('*.safetensors'))):06d}-{os.getpid()}.safetensors"
        os.replace(tmp, shard)
        self._rows.update(new)
