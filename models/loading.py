"""Loading a stored model version, once per process: a small cache keyed by folder, device and precision.

Shared by batched inference (:class:`triage.models.inference.InferenceEngine`) and the store's promotion,
which scores the current version (:func:`triage.models.store.score_version`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Literal, cast

import torch
from transformers import PreTrainedModel

from triage.models.bf16_encoder import Bf16Encoder
from triage.models.classifier import TriageClassifier
from triage.models.encoders import quantise_int8
from triage.models.manifest import ModelManifest
from triage.models.onnx_encoder import onnx_encoder

CACHE_SIZE = 2

Precision = Literal["float32", "onnx-float32", "bfloat16", "int8"]

_cache: OrderedDict[tuple[str, str, str], tuple[TriageClassifier, ModelManifest]] = OrderedDict()
_cache_lock = threading.Lock()


def load_cached(
    folder: Path, device: torch.device, precision: Precision = "float32"
) -> tuple[TriageClassifier, ModelManifest]:
    """The classifier and manifest of the version folder ``folder``, read from disk once per process
    (the :data:`CACHE_SIZE` most recently used stay loaded); ``int8`` quantises the encoder,
    ``onnx-float32`` runs it on ONNX Runtime (:mod:`triage.models.onnx_encoder`), ``bfloat16`` under CPU
    bf16 autocast (:mod:`triage.models.bf16_encoder`)."""
    key = (str(folder.resolve()), str(device), precision)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
        manifest = ModelManifest.read(folder)
        model = TriageClassifier.load(folder, manifest.classifier, device=device)
        if precision == "int8":
            model.encoder = quantise_int8(model.encoder)
        elif precision == "onnx-float32":  # stand-ins with the encoder's call and output
            model.encoder = cast(PreTrainedModel, onnx_encoder(model.encoder))
        elif precision == "bfloat16":
            model.encoder = cast(PreTrainedModel, Bf16Encoder(model.encoder))
        _cache[key] = (model, manifest)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
        return model, manifest


def clear_cache() -> None:
    """Forget every loaded model (the next :meth:`InferenceEngine.load` reads from disk again)."""
    with _cache_lock:
        _cache.clear()
