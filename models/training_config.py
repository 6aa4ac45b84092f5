"""The training configuration: everything that decides a trained model (:class:`TrainConfig`).

Read by training (:mod:`triage.models.training`), head fitting (:mod:`triage.models.head_fitting`) and
fine-tuning (:mod:`triage.models.fine_tune`); its defaults follow :class:`triage.settings.ModelSettings`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from triage.models.features import HashingConfig
from triage.models.store_fs import local_root
from triage.settings import ModelSettings

if TYPE_CHECKING:
    from triage.settings import Settings

_DEFAULTS = ModelSettings()

EMBEDDING_CACHE_DIR = "embedding-cache"
"""Under the model store: where :meth:`TrainConfig.from_settings` keeps frozen embeddings."""


class TrainConfig(BaseModel):
    """Everything that decides a trained model; defaults follow :class:`triage.settings.ModelSettings`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fields: list[str] = Field(default_factory=lambda: ["group", "priority", "type"], min_length=1)
    label_columns: dict[str, str] = Field(
        default_factory=dict, description="Field -> label column, where they differ (group=queue)."
    )
    text_columns: list[str] = Field(
        default_factory=lambda: ["subject", "description"],
        min_length=1,
        description="Columns joined into the text; 'description' falls back to 'body'.",
    )
    base_encoder: str = _DEFAULTS.base_encoder
    store_root: Path = Field(
        default=local_root(_DEFAULTS.store), description="Where named encoders are built."
    )
    name: str | None = Field(default=None, description="Model name; default '<encoder>+<head>'.")
    max_length: int = Field(default=_DEFAULTS.max_length, ge=16, le=8192)
    min_examples_per_class: int = Field(default=_DEFAULTS.min_examples_per_class, ge=1)
    test_size: float = Field(default=0.2, gt=0.0, lt=1.0)
    seed: int = _DEFAULTS.seed
    target_precision: float = Field(default=_DEFAULTS.target_precision, gt=0.0, le=1.0)
    suggest_precision: float = Field(default=_DEFAULTS.suggest_precision, gt=0.0, le=1.0)
    head: Literal["hybrid", "linear"] = "hybrid"
    hashing: HashingConfig = Field(default_factory=HashingConfig)
    c_dense: float | None = Field(
        default=None,
        gt=0.0,
        description="Inverse L2 strength of the embedding weights; None: the head's blocks and this "
        "strength are chosen per field by cross-validation (triage.models.head_fitting).",
    )
    c_sparse: float | None = Field(
        default=None,
        gt=0.0,
        description="Inverse L2 strength of the TF-IDF weights; None: the baseline's 10.",
    )
    c_memory: float = Field(default=100.0, gt=0.0, description="Inverse L2 strength of the memory weights.")
    neighbours: int = Field(default=10, ge=0, description="Neighbours the memory consults; 0: no memory.")
    neighbour_temperature: float = Field(default=0.02, gt=0.0, description="Softness of neighbour weights.")
    memory_size: int = Field(default=50_000, ge=1, description="Most training tickets the memory keeps.")
    class_weight: Literal["balanced", "none"] = "balanced"
    max_iter: int = Field(default=1000, ge=1, description="Most L-BFGS iterations per head fit.")
    tags: bool = Field(
        default=False,
        description="Also learn the tickets' tags (a multi-label head) where the data has them "
        "(triage.models.tags).",
    )
    fine_tune: bool = False
    epochs: int = Field(default=2, ge=1, description="Fine-tuning epochs.")
    learning_rate: float = Field(
        default=3e-5, gt=0.0, description="Fine-tuning learning rate of the encoder."
    )
    batch_size: int = Field(default=16, ge=1, description="Fine-tuning batch size.")
    batch_tokens: int = Field(
        default=_DEFAULTS.batch_tokens, ge=256, description="Token budget of embedding batches."
    )
    device: str = "auto"
    embedding_cache: Path | None = Field(
        default=None, description="Folder caching frozen embeddings by text hash (speeds up retraining)."
    )

    @field_validator("fields")
    @classmethod
    def _unique_fields(cls, fields: list[str]) -> list[str]:
        if len(set(fields)) != len(fields):
            raise ValueError("fields must not repeat")
        return fields

    @model_validator(mode="after")
    def _suggest_below_apply(self) -> TrainConfig:
        if self.suggest_precision > self.target_precision:
            raise ValueError("suggest_precision must not exceed target_precision")
        unknown = set(self.label_columns) - set(self.fields)
        if unknown:
            raise ValueError(f"label_columns names fields that are not trained: {sorted(unknown)}")
        return self

    def label_column(self, field_name: str) -> str:
        return self.label_columns.get(field_name, field_name)

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> TrainConfig:
        """The training configuration for a project's settings: the enabled fields, the ``model``
        section and its ``train_options``; ``overrides`` win."""
        model = settings.model
        values: dict[str, Any] = {
            "fields": settings.enabled_fields(),
            "base_encoder": model.base_encoder,
            "store_root": local_root(model.store),
            "max_length": model.max_length,
            "min_examples_per_class": model.min_examples_per_class,
            "seed": model.seed,
            "target_precision": model.target_precision,
            "suggest_precision": model.suggest_precision,
            "fine_tune": model.fine_tune,
            "batch_tokens": model.batch_tokens,
            "device": model.device,
            "embedding_cache": local_root(model.store) / EMBEDDING_CACHE_DIR,
        }
        return cls(**{**values, **model.train_options, **overrides})
