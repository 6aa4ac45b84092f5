"""Model store: versions as folders, promotion only when not worse, rollback, no pickles.

Promotion on data with times is tested in test_promotion.py; here the synthetic tickets have none,
so two models are compared only when they trained on the same tickets (on their shared hold-out).
"""

import json
from datetime import UTC, datetime

import pytest
from model_tickets import labelled_tickets, tiny_config

from triage.models.classifier import HEADS_FILE, PICKLE_SUFFIXES
from triage.models.inference import InferenceEngine
from triage.models.loading import clear_cache
from triage.models.manifest import ModelFolderError, ModelManifest
from triage.models.store import CURRENT_FILE, ModelStore, StoreError, new_version_id
from triage.models.training import HASH, ID, prepare_frame, train

SMALL_HOLDOUT = 20
"""``min_tickets`` for the synthetic tickets' hold-out (31 rows)."""


@pytest.fixture(scope="module")
def bad_result(tmp_path_factory, tickets, trained):
    """A model trained on ``trained``'s training tickets with shuffled priorities, tested on its
    hold-out: the same tickets, clearly worse on priority."""
    config = tiny_config(tmp_path_factory.mktemp("bad"), c_dense=0.01, neighbours=0)
    prepared = prepare_frame(tickets.assign(ticket_id=range(len(tickets))), config)
    held = prepared[ID][prepared[HASH].isin(trained.holdout[HASH])].astype(int)
    test = tickets.index.isin(held)
    noisy = tickets[~test].copy()
    noisy["priority"] = noisy["priority"].sample(frac=1.0, random_state=1).to_numpy()
    return train(noisy, config, test_frame=tickets[test])


def test_a_version_folder_holds_safetensors_json_and_the_report_only(stored):
    root, version = stored
    folder = ModelStore(root).path(version.version)
    files = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert {"model.json", "heads.safetensors", "encoder/config.json", "encoder/model.safetensors"} <= files
    assert {"report/report.json", "report/report.md", "report/report.html"} <= files
    assert not [f for f in files if f.endswith(PICKLE_SUFFIXES)]
    manifest = ModelManifest.read(folder)
    assert set(manifest.report_files) <= files and manifest.promotion.promoted


def test_an_unchanged_encoder_is_stored_once(tmp_path, trained):
    store = ModelStore(tmp_path)
    first, second = store.save(trained), store.save(trained)
    weights = [v.path / "encoder" / "model.safetensors" for v in (first, second)]
    assert weights[0].stat().st_ino == weights[1].stat().st_ino and weights[0].stat().st_nlink == 2
    proba = InferenceEngine.load(second.path).predict(["printer broken"])["group"].proba
    assert proba.shape == (1, 4)  # Facilities, with 4 rows, is learned too


def test_version_ids_sort_by_creation_time():
    early = new_version_id(datetime(2026, 11, 29, 9, 5, 1, tzinfo=UTC))
    late = new_version_id(datetime(2026, 11, 29, 21, 5, 1, tzinfo=UTC))
    assert early.startswith("20261129-090501-") and len(early) == 22
    assert sorted([late, early]) == [early, late]


def test_versions_saved_in_the_same_second_list_in_the_order_they_were_saved(tmp_path, trained, monkeypatch):
    names = iter(["20261130-120000-ffffff", "20261130-120000-000000"])  # by name the second sorts first
    monkeypatch.setattr("triage.models.store.new_version_id", lambda _now: next(names))
    store = ModelStore(tmp_path)
    first, second = store.save(trained), store.save(trained)
    assert [v.version for v in store.list()] == [first.version, second.version]


def test_a_worse_model_is_not_promoted_and_the_reason_is_recorded(tmp_path, trained, bad_result):
    store = ModelStore(tmp_path, min_tickets=SMALL_HOLDOUT)
    first, promoted, reason = store.register(trained)
    assert promoted and reason == "first model in the store"
    worse, promoted, reason = store.register(bad_result)
    assert not promoted
    assert "worse than current" in reason and "priority" in reason
    assert store.current().version == first.version
    recorded = store.manifest(worse.version).promotion
    assert not recorded.promoted and recorded.compared_with == first.version
    assert recorded.scored_on.count == len(trained.holdout)
    row = recorded.comparison["priority"]
    assert row["candidate_macro_f1"] < row["current_macro_f1"] - store.tolerance
    assert [v.version for v in store.list()] == [first.version, worse.version]


def test_a_model_that_drops_a_field_is_not_promoted(tmp_path, trained):
    store = ModelStore(tmp_path)
    store.register(trained)
    narrower = train(labelled_tickets(90, seed=8), tiny_config(tmp_path, fields=["type"], c_dense=0.01))
    _, promoted, reason = store.register(narrower)
    assert not promoted and reason.startswith("drops field(s) ['group', 'priority']")


def test_a_not_worse_model_is_promoted_and_rollback_returns_to_the_previous(tmp_path, trained):
    store = ModelStore(tmp_path, min_tickets=SMALL_HOLDOUT)
    first, _, _ = store.register(trained)
    second, promoted, reason = store.register(trained)
    assert promoted and reason.startswith(f"not worse than current {first.version}")
    assert store.current().version == second.version
    assert [v.is_current for v in store.list()] == [False, True]
    assert store.rollback().version == first.version
    assert store.current().version == first.version
    with pytest.raises(StoreError, match="nothing to roll back to"):
        store.rollback()


def test_promote_by_hand_and_unknown_versions(tmp_path, trained, bad_result):
    store = ModelStore(tmp_path)
    good, _, _ = store.register(trained)
    bad, promoted, _ = store.register(bad_result)
    assert not promoted
    assert store.promote(bad.version).is_current
    pointer = json.loads((tmp_path / CURRENT_FILE).read_text())
    assert pointer == pointer | {
        "version": bad.version,
        "previous": [good.version],
        "reason": "promoted by hand",
    }
    assert store.rollback().version == good.version
    for name in ("nope", "../versions", ".hidden"):
        with pytest.raises(StoreError, match="no model version"):
            store.promote(name)


def test_an_empty_store_has_no_current_model(tmp_path):
    store = ModelStore(tmp_path)
    assert store.current() is None and store.list() == []
    with pytest.raises(FileNotFoundError, match="no current model"):
        InferenceEngine.load(tmp_path)


def test_a_model_folder_with_a_pickle_is_refused(tmp_path, trained):
    version = ModelStore(tmp_path).save(trained)
    (version.path / "encoder" / "pytorch_model.bin").write_bytes(b"not really a pickle")
    clear_cache()
    with pytest.raises(ValueError, match=r"pickle-capable files \(encoder/pytorch_model.bin\)"):
        InferenceEngine.load(version.path)


@pytest.mark.parametrize("garbage", ["", "not json", "[1, 2]", '{"version": 7}'])
def test_a_garbled_pointer_file_is_named_in_the_error(tmp_path, garbage):
    (tmp_path / CURRENT_FILE).write_text(garbage)
    store = ModelStore(tmp_path)
    for call in (store.current, store.rollback, lambda: InferenceEngine.load(tmp_path)):
        with pytest.raises(StoreError, match=r"current\.json") as info:
            call()
        assert "Expecting value" not in str(info.value)


@pytest.mark.parametrize(
    ("damaged", "named"),
    [(HEADS_FILE, r"heads\.safetensors"), ("encoder/model.safetensors", r"encoder")],
)
def test_a_truncated_weights_file_is_named_in_the_error(tmp_path, trained, damaged, named):
    version = ModelStore(tmp_path).save(trained)
    weights = version.path / damaged
    weights.write_bytes(weights.read_bytes()[:100])
    clear_cache()
    with pytest.raises(ModelFolderError, match=named):
        InferenceEngine.load(version.path)


@pytest.mark.parametrize("what", ["encoder", "heads.safetensors", "encoder/config.json"])
def test_a_symlink_out_of_the_model_folder_is_refused(tmp_path, trained, what):
    version = ModelStore(tmp_path / "store").save(trained)
    inside, outside = version.path / what, tmp_path / "elsewhere" / what
    outside.parent.mkdir(parents=True)
    inside.rename(outside)
    inside.symlink_to(outside)
    clear_cache()
    with pytest.raises(ModelFolderError, match=f"{what}.*outside"):
        InferenceEngine.load(version.path)


def test_a_symlink_within_the_model_folder_is_accepted(tmp_path, trained):
    version = ModelStore(tmp_path).save(trained)
    config = version.path / "encoder" / "config.json"
    moved = version.path / "encoder" / "config.original.json"
    config.rename(moved)
    config.symlink_to(moved.name)
    clear_cache()
    assert InferenceEngine.load(version.path).fields


def test_promoting_by_hand_repairs_a_garbled_pointer(tmp_path, trained):
    store = ModelStore(tmp_path)
    version = store.save(trained)
    (tmp_path / CURRENT_FILE).write_text("{oops")
    store.promote(version.version)
    assert store.current().version == version.version


def test_a_garbled_manifest_is_named_in_the_error(tmp_path, trained):
    version = ModelStore(tmp_path).save(trained)
    (version.path / "model.json").write_text('{"format": 1, "name": ')
    with pytest.raises(ModelFolderError, match=r"model\.json: not a valid model manifest"):
        ModelStore(tmp_path).list()
