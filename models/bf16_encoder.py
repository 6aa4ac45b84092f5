"""The encoder under bfloat16 autocast on CPU: its matrix products in bf16, the rest in float32.

On a CPU with bf16 dot-product instructions (AVX512_BF16 or AMX) oneDNN runs these products about
twice as fast as float32; without them bf16 is emulated and slower. The embedding moves by about
1e-5 in cosine, which the heads' neighbour memory (temperature 0.02) amplifies to probability
differences of up to 0.016 on the benchmark's real tickets: inside the 0.02 tolerance, with little
room, so check a model with :func:`triage.models.inference.compare` (``bench/inference.py``) before
relying on it.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput


class Bf16Encoder(nn.Module):
    """``encoder`` called under CPU bf16 autocast, its ``last_hidden_state`` handed back in float32."""

    def __init__(self, encoder: PreTrainedModel) -> None:
        super().__init__()
        self.encoder = encoder
        self.config = encoder.config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> BaseModelOutput:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return BaseModelOutput(last_hidden_state=hidden.float())
