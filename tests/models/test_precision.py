"""Inference precision: ONNX Runtime float32 and int8 against float32 on real tickets, a wrong export
refused, the setting end to end, and the benchmark's refusal to record on a busy machine."""

import copy
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from model_tickets import tiny_config
from torch import nn

from triage.models import onnx_encoder
from triage.models.bf16_encoder import Bf16Encoder
from triage.models.inference import TOLERANCE, Comparison, FieldPredictions, InferenceEngine, compare
from triage.models.loading import clear_cache
from triage.models.text import ticket_text
from triage.settings import ConfigError, ModelSettings, load_settings

ROOT = Path(__file__).resolve().parents[2]
TOBI = ROOT.parent / "shared" / "data" / "tobi_bueck" / "combined_v4v5_sample_en_de_dedup.csv"


@pytest.fixture(scope="module")
def real_model(tmp_path_factory) -> tuple[Path, list[str], dict[str, FieldPredictions]]:
    """A store with the default model (embedding, hashed TF-IDF and the neighbour memory, which amplifies
    any change of the embedding) trained on 300 real tobi_bueck tickets, 300 other real tickets, and the
    float32 engine's predictions of them (the reference every precision is compared with)."""
    from triage.models.store import ModelStore
    from triage.models.training import train

    if not TOBI.is_file():
        pytest.skip(f"shared data not here: {TOBI}")
    frame = (
        pd.read_csv(TOBI)
        .sample(600, random_state=0)
        .rename(columns={"queue": "group", "body": "description"})
    )
    root = tmp_path_factory.mktemp("real-store")
    ModelStore(root).register(train(frame.iloc[:300], tiny_config(root)))
    rest = frame.iloc[300:]
    texts = [ticket_text(s, d) for s, d in zip(rest["subject"], rest["description"], strict=True)]
    return root, texts, InferenceEngine.load(root, device="cpu").predict(texts)


def test_onnx_float32_predictions_stay_within_tolerance_of_float32(real_model):
    """ONNX Runtime's fused float32 encoder vs torch on 300 real tickets, through the sensitive memory:
    within the tolerance, and in fact the same numbers up to float rounding."""
    root, texts, reference = real_model
    onnx = InferenceEngine.load(root, device="cpu", precision="onnx-float32")
    assert isinstance(onnx.model.encoder, onnx_encoder.OnnxEncoder)
    found = compare(reference, onnx.predict(texts))
    assert found.texts == 300
    assert found.within, found
    assert all(agreement == 1.0 for agreement in found.label_agreement.values()), found
    assert max(found.max_probability_diff.values()) < 1e-3, found


def test_bfloat16_predictions_stay_within_tolerance_of_float32(real_model):
    """CPU bf16 autocast vs float32 on 300 real tickets through the memory: within the tolerance (here
    labels 99.7-100% identical, probabilities within 0.009), not the same numbers."""
    root, texts, reference = real_model
    bf16 = InferenceEngine.load(root, device="cpu", precision="bfloat16")
    assert isinstance(bf16.model.encoder, Bf16Encoder)
    found = compare(reference, bf16.predict(texts))
    assert found.within, found


def test_an_export_that_computes_something_else_is_refused(stored, monkeypatch):
    """An export of a slightly different encoder (one LayerNorm scaled by 1%) fails the load's check."""
    root, _ = stored
    real_export = onnx_encoder.export_onnx

    def wrong_export(encoder):
        altered = copy.deepcopy(encoder)
        with torch.no_grad():
            altered.embeddings.LayerNorm.weight.mul_(1.01)
        return real_export(altered)

    clear_cache()
    monkeypatch.setattr(onnx_encoder, "export_onnx", wrong_export)
    with pytest.raises(onnx_encoder.OnnxExportError, match="differs from torch"):
        InferenceEngine.load(root, device="cpu", precision="onnx-float32")
    monkeypatch.setattr(onnx_encoder, "export_onnx", real_export)
    engine = InferenceEngine.load(root, device="cpu", precision="onnx-float32")
    assert isinstance(engine.model.encoder, onnx_encoder.OnnxEncoder)


def test_the_int8_engine_quantises_only_its_own_copy_of_the_encoder(stored):
    root, _ = stored
    plain = InferenceEngine.load(root, device="cpu")
    quantised = InferenceEngine.load(root, device="cpu", precision="int8")
    assert quantised.precision == "int8" and plain.precision == "float32"
    assert quantised.model is not plain.model
    assert any(type(m) is nn.Linear for m in plain.model.encoder.modules())
    assert not any(type(m) is nn.Linear for m in quantised.model.encoder.modules())
    assert InferenceEngine.load(root, device="cpu", precision="int8").model is quantised.model  # cached


@pytest.mark.xfail(
    strict=True,
    reason="int8 moves labels and probabilities far outside the tolerance through the neighbour memory "
    "(bench/results/inference.md: 2-7% of labels, up to 0.46; needed: 99.5%, 0.02), so model.precision is not "
    "int8 by default; an XPASS means int8 became accurate enough to reconsider",
)
def test_int8_predictions_stay_within_tolerance_of_float32(real_model):
    """Quantised vs float32 predictions on 300 real tickets: labels identical on 99.5%, probabilities within 0.02."""
    root, texts, reference = real_model
    found = compare(reference, InferenceEngine.load(root, device="cpu", precision="int8").predict(texts))
    assert found.texts == 300
    assert found.within, found


def test_compare_judges_labels_and_probabilities_per_field():
    def predictions(rows: list[list[float]]) -> dict[str, FieldPredictions]:
        return {"group": FieldPredictions("group", ["a", "b"], np.array(rows), 1)}

    base = predictions([[0.9, 0.1]] * 200)
    assert compare(base, base).within
    nudged = predictions([[0.89, 0.11]] * 200)
    assert compare(base, nudged).within
    one_flip = predictions([[0.4, 0.6]] + [[0.9, 0.1]] * 199)
    found = compare(base, one_flip)
    assert found.label_agreement == {"group": 0.995}
    assert not found.within  # the flipped ticket's probability moved by 0.5
    drifted = predictions([[0.85, 0.15]] * 200)
    assert compare(base, drifted).max_probability_diff["group"] == pytest.approx(0.05)
    assert not compare(base, drifted).within
    assert Comparison(200, {"group": 0.99}, {"group": 0.0}).within is False
    assert TOLERANCE.label_agreement == 0.995 and TOLERANCE.probability == 0.02


def test_the_precision_setting_reaches_the_engine(stored, tmp_path, monkeypatch):
    from triage.tasks.predict import load_engine

    root, _ = stored
    assert ModelSettings().precision == "float32", "int8 is outside the tolerance (see the xfail above)"
    config = tmp_path / "config.yml"
    config.write_text(f"model:\n  store: {root}\n  precision: int8\n  device: cpu\n")
    settings = load_settings(config)
    assert settings.model.precision == "int8"
    assert load_engine(settings).precision == "int8"
    monkeypatch.setenv("TRIAGE_MODEL__PRECISION", "float32")
    assert load_engine(load_settings(config)).precision == "float32"
    monkeypatch.setenv("TRIAGE_MODEL__PRECISION", "onnx-float32")
    assert load_engine(load_settings(config)).precision == "onnx-float32"
    monkeypatch.setenv("TRIAGE_MODEL__PRECISION", "int4")
    with pytest.raises(ConfigError, match=r"model\.precision"):
        load_settings(config)


def test_int8_is_refused_off_cpu(stored):
    root, _ = stored
    for precision in ("int8", "onnx-float32", "bfloat16"):
        with pytest.raises(ValueError, match="CPU only"):
            InferenceEngine.load(root, device="meta", precision=precision)
    with pytest.raises(ValueError, match="precision"):
        InferenceEngine.load(root, device="cpu", precision="fp16")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_inference", ROOT / "bench" / "inference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_runs_only_on_a_quiet_machine(bench):
    assert bench.check_load(0.3, 0.5) is False
    with pytest.raises(bench.MachineBusyError, match=r"load average 2\.60 is above --max-load 0\.5.*--force"):
        bench.check_load(2.6, 0.5)
    assert bench.check_load(2.6, 0.5, force=True) is True  # recorded, flagged busy
    assert bench.check_load(2.3, 0.5, own_threads=2) is False  # its own threads are not other work
    with pytest.raises(bench.MachineBusyError, match="beyond this run's 2 threads"):
        bench.check_load(3.1, 0.5, own_threads=2)


def test_a_busy_machine_exits_non_zero_and_records_nothing(bench, tmp_path, monkeypatch, capsys):
    out = tmp_path / "inference.json"
    monkeypatch.setattr(bench, "load1", lambda: 4.2)
    monkeypatch.setattr(bench, "throughput", lambda args: pytest.fail("measured on a busy machine"))
    monkeypatch.setattr("sys.argv", ["bench/inference.py", "throughput", "--out", str(out)])
    with pytest.raises(SystemExit) as exited:
        bench.main()
    assert exited.value.code == 2
    assert "machine busy" in capsys.readouterr().err
    assert not out.exists()
