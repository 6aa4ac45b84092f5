"""The encoder in float32 on ONNX Runtime: the same numbers as torch, from fused CPU kernels.

:func:`onnx_encoder` exports a transformers encoder to ONNX (once per process, in memory), lets
ONNX Runtime's transformer optimiser fuse attention, GELU, skip + LayerNorm and the embedding
layer (float32 throughout: no quantisation), and checks the result against the torch encoder on
probe batches before anything uses it: an export that computes something else is refused with
:class:`OnnxExportError`. :class:`OnnxEncoder` then stands in for the torch encoder inside
:class:`triage.models.classifier.TriageClassifier` (same call, same ``last_hidden_state``).

Why float32 and not ONNX Runtime's int8: the heads' neighbour memory weighs neighbours at
temperature 0.02, so an embedding must stay within about 1e-6 of float32's cosine for
probabilities to stay within 0.02; int8 moves it by 1e-4 to 1e-2 (``bench/results/inference.md``).
"""

from __future__ import annotations

import copy
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput

from triage.errors import TriageError

OPSET = 17
PROBE_LENGTHS = (1, 7, 64, 256)
"""Rows of the probe batch (lengths in tokens, padded to the longest): short, long and padded rows."""
MAX_PROBE_DIFF = 1e-4
"""Largest allowed difference of a hidden state, relative to the largest hidden value."""


class OnnxExportError(TriageError, RuntimeError):
    """The exported encoder does not compute what the torch encoder computes."""


class OnnxEncoder(nn.Module):
    """An ONNX Runtime session with a transformers encoder's call: ``(input_ids, attention_mask)`` in,
    an output with ``last_hidden_state`` (float32 tensor) out. CPU only."""

    def __init__(self, model: bytes, config: Any, *, threads: int) -> None:
        import onnxruntime as ort

        super().__init__()
        self.config = config
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> BaseModelOutput:
        feeds = {
            "input_ids": input_ids.cpu().numpy().astype(np.int64, copy=False),
            "attention_mask": attention_mask.cpu().numpy().astype(np.int64, copy=False),
        }
        (hidden,) = self.session.run(["last_hidden_state"], feeds)
        return BaseModelOutput(last_hidden_state=torch.from_numpy(hidden))


def export_onnx(encoder: PreTrainedModel) -> bytes:
    """``encoder`` as an optimised float32 ONNX graph (bytes): exported with dynamic batch and length,
    then fused by ONNX Runtime's transformer optimiser where the architecture is BERT-like."""
    from onnxruntime.transformers.optimizer import optimize_model

    source = copy.deepcopy(encoder).cpu().eval()
    source.config._attn_implementation = "eager"  # the plain attention pattern the optimiser fuses
    ids = torch.tensor([[101, 2023, 2003, 102], [101, 2023, 102, 0]])
    mask = (ids != 0).long()
    axes = {0: "batch", 1: "tokens"}
    with tempfile.TemporaryDirectory() as folder:
        raw, fused = Path(folder, "encoder.onnx"), Path(folder, "fused.onnx")
        with warnings.catch_warnings():  # tracer notes on the mask's shape arithmetic
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _LastHiddenState(source),
                (ids, mask),
                str(raw),
                dynamo=False,
                opset_version=OPSET,
                input_names=["input_ids", "attention_mask"],
                output_names=["last_hidden_state"],
                dynamic_axes={"input_ids": axes, "attention_mask": axes, "last_hidden_state": axes},
            )
        config = encoder.config
        optimised = optimize_model(
            str(raw),
            model_type="bert",
            num_heads=int(config.num_attention_heads),
            hidden_size=int(config.hidden_size),
            opt_level=0,
        )
        optimised.save_model_to_file(str(fused))
        return fused.read_bytes()


class _LastHiddenState(nn.Module):
    def __init__(self, encoder: PreTrainedModel) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def check_export(candidate: nn.Module, reference: PreTrainedModel, *, seed: int = 0) -> float:
    """The largest difference of ``candidate``'s last hidden states from ``reference``'s over the real
    tokens of a probe batch of random token ids (rows of :data:`PROBE_LENGTHS`, right-padded), relative
    to the largest reference value; raises :class:`OnnxExportError` above :data:`MAX_PROBE_DIFF`."""
    config = reference.config
    limit = min(int(config.max_position_embeddings), max(PROBE_LENGTHS))
    generator = torch.Generator().manual_seed(seed)
    ids = torch.zeros((len(PROBE_LENGTHS), limit), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, length in enumerate(PROBE_LENGTHS):
        n = min(length, limit)
        ids[row, :n] = torch.randint(1, int(config.vocab_size), (n,), generator=generator)
        mask[row, :n] = 1
    real = mask.bool()
    with torch.inference_mode():
        got = candidate(input_ids=ids, attention_mask=mask).last_hidden_state[real]
        want = reference(input_ids=ids, attention_mask=mask).last_hidden_state[real]
    diff = float((got - want).abs().max() / want.abs().max())
    if not diff <= MAX_PROBE_DIFF:  # also refuses NaN
        raise OnnxExportError(
            f"the ONNX export of the encoder differs from torch by {diff:.3g} (relative) on the probe batch "
            f"(allowed: {MAX_PROBE_DIFF:g}); refusing it. Use precision 'float32'."
        )
    return diff


def onnx_encoder(encoder: PreTrainedModel) -> OnnxEncoder:
    """``encoder`` exported, fused and checked (:func:`check_export`), on ONNX Runtime with torch's
    CPU thread count."""
    candidate = OnnxEncoder(export_onnx(encoder), encoder.config, threads=torch.get_num_threads())
    check_export(candidate, encoder)
    return candidate
