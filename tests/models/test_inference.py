"""Batched inference: batch-independent results, the long output format, streaming over Parquet."""

import hashlib

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from model_tickets import labelled_tickets

from triage.models.inference import OUTPUT_COLUMNS, InferenceEngine, prediction_schema
from triage.models.text import ticket_text
from triage.models.training import TEXT


@pytest.fixture(scope="module")
def engine(stored):
    root, _ = stored
    return InferenceEngine.load(root, top_k=2)


@pytest.fixture(scope="module")
def open_tickets():
    frame = labelled_tickets(40, seed=11)
    frame["description"] = frame["description"] + [" extra words" * (i % 7) for i in range(len(frame))]
    return frame.assign(ticket_id=np.arange(1000, 1000 + len(frame)))[["ticket_id", "subject", "description"]]


def test_the_engine_describes_the_stored_model(engine, stored, trained):
    _, version = stored
    assert engine.model_version == version.version and engine.model_name == version.name
    assert engine.fields == ["group", "priority", "type"]
    assert engine.labels("group") == trained.fields["group"].labels
    evaluation = trained.fields["group"].evaluation
    assert engine.thresholds("group") == (evaluation.apply_threshold, evaluation.suggest_threshold)


def test_a_folder_is_loaded_once_per_process(stored):
    root, version = stored
    first, second = InferenceEngine.load(root), InferenceEngine.load(root / "versions" / version.version)
    assert first.model is second.model


def test_the_stored_model_predicts_what_training_evaluated(engine, trained):
    texts = trained.holdout[TEXT].tolist()
    predicted = engine.predict(texts)
    in_memory = trained.model.predict_proba(texts)
    for field in engine.fields:
        np.testing.assert_allclose(predicted[field].proba, in_memory[field], atol=1e-5)


@pytest.mark.parametrize("precision", ["float32", "onnx-float32"])
def test_results_do_not_depend_on_batch_composition(stored, open_tickets, precision):
    """Padding and batch size change nothing, also in ONNX Runtime's fused attention."""
    engine = InferenceEngine.load(stored[0], top_k=2, precision=precision)
    texts = [
        ticket_text(s, d) for s, d in zip(open_tickets["subject"], open_tickets["description"], strict=True)
    ]
    together = engine.predict(texts)
    engine.batch_tokens = 64  # many tiny batches, different padding (this engine object is the test's own)
    alone = [engine.predict([text]) for text in texts[:8]]
    reordered = engine.predict(texts[::-1])
    for field in engine.fields:
        np.testing.assert_allclose(reordered[field].proba[::-1], together[field].proba, atol=1e-5)
        stacked = np.vstack([one[field].proba for one in alone])
        np.testing.assert_allclose(stacked, together[field].proba[:8], atol=1e-5)


def test_predict_frame_has_one_row_per_ticket_and_field(engine, open_tickets):
    out = engine.predict_frame(open_tickets)
    assert list(out.columns) == OUTPUT_COLUMNS
    assert len(out) == len(open_tickets) * 3
    assert out["ticket_id"].tolist()[:3] == [1000, 1000, 1000]
    assert out["field"].tolist()[:3] == ["group", "priority", "type"]
    first = open_tickets.iloc[0]
    text = ticket_text(first["subject"], first["description"])
    assert out["text_hash"].iloc[0] == hashlib.sha256(text.encode("utf-8")).hexdigest()
    for row in out.itertuples():
        assert len(row.top_k) == 2 and row.top_k[0]["label"] == row.label
        assert row.top_k[0]["probability"] == pytest.approx(row.probability)
        assert row.top_k[0]["probability"] >= row.top_k[1]["probability"]
        assert row.label in engine.labels(row.field) and 0.0 < row.probability <= 1.0
    assert set(out["model_version"]) == {engine.model_version}


def test_predict_frame_names_missing_columns(engine, open_tickets):
    with pytest.raises(ValueError, match="ticket_id"):
        engine.predict_frame(open_tickets.drop(columns=["ticket_id"]))


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_streaming_over_chunks_equals_predicting_in_memory(engine, open_tickets, tmp_path, suffix):
    src, dst = tmp_path / f"tickets{suffix}", tmp_path / "out" / "predictions.parquet"
    if suffix == ".csv":
        open_tickets.to_csv(src, index=False)
    else:
        open_tickets.to_parquet(src, index=False)
    rows = engine.predict_parquet(src, dst, chunk_rows=7)  # 40 tickets: 6 chunks, the last one short
    assert rows == len(open_tickets) * 3
    streamed = pq.read_table(dst)
    expected_id = "string" if suffix == ".csv" else "int64"
    assert streamed.schema.equals(prediction_schema(streamed.schema.field("ticket_id").type))
    assert str(streamed.schema.field("ticket_id").type) == expected_id
    streamed = streamed.to_pandas()
    in_memory = engine.predict_frame(open_tickets)
    assert streamed["ticket_id"].astype(str).tolist() == in_memory["ticket_id"].astype(str).tolist()
    assert streamed["label"].tolist() == in_memory["label"].tolist()
    assert streamed["text_hash"].tolist() == in_memory["text_hash"].tolist()
    np.testing.assert_allclose(streamed["probability"], in_memory["probability"], atol=1e-5)
    assert [p.name for p in dst.parent.iterdir()] == ["predictions.parquet"]  # no temporary file left


def test_bad_input_writes_nothing(engine, open_tickets, tmp_path):
    folder = tmp_path / "io"
    folder.mkdir()
    src, dst = folder / "tickets.parquet", folder / "predictions.parquet"
    open_tickets.drop(columns=["description"]).to_parquet(src)
    with pytest.raises(ValueError, match="neither a 'description' nor a 'body'"):
        engine.predict_parquet(src, dst)
    with pytest.raises(ValueError, match=r"expected a \.csv or \.parquet"):
        engine.predict_parquet(folder / "tickets.json", dst)
    assert [p.name for p in folder.iterdir()] == ["tickets.parquet"]


def test_an_empty_input_gives_an_empty_result(engine):
    predictions = engine.predict([])
    assert all(p.proba.shape == (0, len(engine.labels(f))) for f, p in predictions.items())
    out = engine.predict_frame(pd.DataFrame({"ticket_id": [], "subject": [], "description": []}))
    assert list(out.columns) == OUTPUT_COLUMNS and out.empty


def test_a_model_whose_heads_read_no_embedding_predicts_without_the_encoder(trained, monkeypatch):
    """TF-IDF alone in every head (head selection's choice where the encoder does not earn its place):
    the encoder is not run, and the probabilities are those of the full path, bit for bit."""
    import copy

    import torch

    model = copy.deepcopy(trained.model)
    heads = [model.head(field) for field in model.fields]
    with torch.no_grad():
        for head in heads:
            head.dense.weight.zero_()
            if head.memory_weight is not None:
                head.memory_weight.zero_()
    texts = trained.holdout[TEXT].tolist()
    assert not model.reads_embedding()
    full = model.proba_from_features(model.embed(texts), model.sparse_features(texts))

    def no_encoder(*args, **kwargs):
        raise AssertionError("the encoder ran")

    monkeypatch.setattr(model, "embed", no_encoder)
    skipped = model.predict_proba(texts)
    assert skipped.keys() == full.keys()
    for field in model.fields:
        np.testing.assert_array_equal(skipped[field], full[field])

    with torch.no_grad():
        heads[-1].dense.weight[0, 0] = 0.5  # one field reads the embedding again: so does prediction
    assert model.reads_embedding()
    with pytest.raises(AssertionError, match="the encoder ran"):
        model.predict_proba(texts)
