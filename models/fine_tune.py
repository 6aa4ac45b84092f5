"""Fine-tuning the encoder itself (meant for a GPU; minutes per epoch on a CPU).

The encoder is trained with temporary linear heads on its pooled embedding, one per field, on
class-weighted cross-entropy summed over fields (rows without a label for a field, or with a
class left out of its head, do not count for it). The real heads are fitted afterwards on the tuned
encoder's embeddings, exactly as for a frozen encoder.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from triage.models.head_fitting import class_weights

if TYPE_CHECKING:
    from triage.models.classifier import TriageClassifier
    from triage.models.training_config import TrainConfig

log = logging.getLogger(__name__)
IGNORE = -100


def fine_tune_encoder(
    classifier: TriageClassifier,
    texts: Sequence[str],
    labels: dict[str, np.ndarray],
    config: TrainConfig,
) -> None:
    """Train ``classifier.encoder`` on ``texts`` with per-field label indices (-1: no label).

    AdamW (encoder at ``learning_rate``, the temporary heads 30x faster), gradient clipping,
    ``epochs`` passes in seeded random order, batches of ``batch_size``; bf16 autocast on CUDA.
    """
    token_ids = classifier.tokenize(texts)
    dim = classifier.embed_mean.shape[0]
    device = classifier.device
    targets, weights, probes = {}, {}, torch.nn.ModuleList()
    for field in classifier.fields:
        y, n_classes = labels[field], len(classifier.config.labels[field])
        targets[field] = torch.from_numpy(np.where(y >= 0, y, IGNORE))
        per_class = class_weights(y[y >= 0], n_classes, config.class_weight)
        weights[field] = torch.from_numpy(per_class).to(device)
        probes.append(torch.nn.Linear(dim, n_classes))
    probes.to(device)
    optimizer = torch.optim.AdamW(
        [
            {"params": classifier.encoder.parameters(), "lr": config.learning_rate},
            {"params": probes.parameters(), "lr": config.learning_rate * 30},
        ],
        weight_decay=0.01,
    )
    generator = torch.Generator().manual_seed(config.seed)
    classifier.encoder.train()
    for epoch in range(config.epochs):
        order = torch.randperm(len(texts), generator=generator)
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            with classifier.autocast():
                pooled = classifier.pool(*classifier.pad([token_ids[i] for i in batch]))
                loss = torch.zeros((), device=device)
                for probe, field in zip(probes, classifier.fields, strict=True):
                    target = targets[field][batch].to(device)
                    if (target != IGNORE).any():
                        loss = loss + torch.nn.functional.cross_entropy(
                            probe(pooled).float(), target, weight=weights[field], ignore_index=IGNORE
                        )
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(classifier.encoder.parameters(), 1.0)
            optimizer.step()
        log.info("fine-tuning epoch %d/%d done (last batch loss %.4f)", epoch + 1, config.epochs, loss.item())
    classifier.encoder.eval()
