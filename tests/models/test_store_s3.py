"""The model store on object storage: moto's S3 server on loopback, named by the AWS environment.

Save, list, promote and rollback as on a local store; a version visible only once whole; the pointer
replaced by one PUT (a reader sees the old version or the new one); a worker loading a version from its
local cache, downloaded once.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from s3_server import s3_server

from triage.models.inference import InferenceEngine, resolve_model_folder
from triage.models.loading import clear_cache
from triage.models.manifest import ModelFolderError
from triage.models.store import CURRENT_FILE, VERSIONS_DIR, ModelStore, StoreError
from triage.models.store_fs import RemoteFiles, local_root

BUCKET = "triage-models"


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    with s3_server(BUCKET):
        yield f"s3://{BUCKET}"


@pytest.fixture(scope="module")
def shared(s3, trained, tmp_path_factory):
    """One store on S3 holding two saved versions of ``trained`` (the first registered, so current)."""
    uri = f"{s3}/shared"
    store = ModelStore(uri, cache=tmp_path_factory.mktemp("trainer-cache"))
    first, promoted, _ = store.register(trained)
    second = store.save(trained)
    assert promoted
    return uri, first.version, second.version


def keys(prefix: str) -> list[str]:
    import boto3

    pages = boto3.client("s3").get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def put(key: str, body: bytes) -> None:
    import boto3

    boto3.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body)


def test_a_saved_version_is_on_s3_and_listed_by_another_machine(shared, tmp_path):
    uri, first, second = shared
    names = keys(f"shared/{VERSIONS_DIR}/{first}/")
    assert {"model.json", "heads.safetensors", "encoder/model.safetensors", "report/report.json"} <= {
        n.removeprefix(f"shared/{VERSIONS_DIR}/{first}/") for n in names
    }
    worker = ModelStore(uri, cache=tmp_path / "worker")
    listed = worker.list()
    assert [v.version for v in listed] == [first, second]
    assert [v.is_current for v in listed] == [True, False]
    assert worker.current().version == first and worker.manifest(first).promotion.promoted
    assert not (tmp_path / "worker").exists()  # listing reads model.json only: nothing downloaded
    assert worker.location_of(first) == f"{uri}/{VERSIONS_DIR}/{first}"  # what the train flow reports


def test_a_worker_downloads_a_version_once_and_predicts_from_its_cache(shared, tmp_path, monkeypatch):
    uri, first, second = shared
    downloads = []
    real = RemoteFiles.download
    monkeypatch.setattr(RemoteFiles, "download", lambda self, *a: downloads.append(a) or real(self, *a))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    clear_cache()
    engine = InferenceEngine.load(uri)
    assert engine.model_version == first
    assert engine.predict(["printer broken"])["group"].proba.shape[0] == 1
    folder = resolve_model_folder(uri)
    assert folder == tmp_path / "xdg" / "triage" / "models" / "s3" / BUCKET / "shared" / VERSIONS_DIR / first
    assert local_root(uri) == tmp_path / "xdg" / "triage" / "models" / "s3" / BUCKET / "shared"
    assert len(downloads) == 1  # the second resolve found the complete local copy
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no staging left behind
    other = ModelStore(uri).path(second)  # the same frozen encoder: one copy in the cache
    weights = [f / "encoder" / "model.safetensors" for f in (folder, other)]
    assert len(downloads) == 2 and weights[0].stat().st_ino == weights[1].stat().st_ino


def test_promote_and_rollback_move_the_pointer_on_s3(shared, tmp_path):
    uri, first, second = shared
    store = ModelStore(uri, cache=tmp_path)
    assert store.promote(second).version == second
    assert store.current().version == second
    pointer = RemoteFiles(uri).read(CURRENT_FILE, parse=json.loads)
    assert (pointer["version"], pointer["previous"][-1]) == (second, first)
    # Another machine rolls back: the stack of earlier versions travels in the pointer itself.
    assert ModelStore(uri, cache=tmp_path / "other").rollback().version == first
    assert store.current().version == first
    with pytest.raises(StoreError, match="nothing to roll back to"):
        store.rollback()
    with pytest.raises(StoreError, match=f"no model version 'nope' in {uri}"):
        store.promote("nope")


def test_a_promotion_cut_off_before_its_pointer_put_leaves_the_old_pointer_and_its_history(
    shared, tmp_path, monkeypatch
):
    uri, first, second = shared
    store = ModelStore(uri, cache=tmp_path)
    store.promote(second)
    before = RemoteFiles(uri).read(CURRENT_FILE, parse=json.loads)
    real = RemoteFiles.write

    def dies_before_the_pointer(self, data: bytes, *parts: str) -> None:
        if parts == (CURRENT_FILE,):
            raise ConnectionError("killed before the PUT")
        real(self, data, *parts)

    monkeypatch.setattr(RemoteFiles, "write", dies_before_the_pointer)
    with pytest.raises(ConnectionError):
        store.promote(first)
    monkeypatch.undo()
    assert RemoteFiles(uri).read(CURRENT_FILE, parse=json.loads) == before
    assert store.rollback().version == first  # the history survived: rollback is still right
    assert store.current().version == first


def test_a_version_cut_off_before_its_model_json_is_invisible(shared, trained, tmp_path, monkeypatch):
    uri, first, second = shared
    store = ModelStore(uri, cache=tmp_path)
    real = RemoteFiles.upload

    def cut_off(self, folder: Path, prefix: tuple[str, ...], *, last: str) -> None:
        (folder / last).unlink()  # everything but model.json reaches S3, then the process dies
        real(self, folder, prefix, last="heads.safetensors")
        raise ConnectionError("lost the store")

    monkeypatch.setattr(RemoteFiles, "upload", cut_off)
    with pytest.raises(ConnectionError):
        store.save(trained)
    partial = {n.split("/")[2] for n in keys(f"shared/{VERSIONS_DIR}/")} - {first, second}
    assert len(partial) == 1  # its files are there ...
    (name,) = partial
    assert [v.version for v in store.list()] == [first, second]  # ... but it is no version
    with pytest.raises(StoreError, match="no model version"):
        store.path(name)
    with pytest.raises(StoreError, match="no model version"):
        store.promote(name)
    assert not list((tmp_path / VERSIONS_DIR).iterdir())  # and no local copy of it either


def test_a_reader_during_promotions_sees_the_old_or_the_new_version(shared, tmp_path):
    uri, first, second = shared
    writer, reader = ModelStore(uri, cache=tmp_path / "w"), ModelStore(uri, cache=tmp_path / "r")
    seen, errors, done = [], [], threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                seen.append(reader.current().version)
            except Exception as exc:  # a torn pointer would show here
                errors.append(exc)

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for _ in range(10):
            writer.promote(second)
            writer.rollback()
    finally:
        done.set()
        thread.join()
    assert not errors and seen and set(seen) <= {first, second}
    assert writer.current().version == first


def test_a_pointer_torn_by_many_writes_in_a_row_is_read_again_not_refused(shared, monkeypatch):
    """Promotions back to back can tear several reads running (the CI saw four): still the old or new one."""
    files = RemoteFiles(shared[0])
    pointer = files.read(CURRENT_FILE, parse=json.loads)
    whole, torn = files.fs.open_input_stream, iter(range(8))

    class CutShort:
        def __init__(self, stream):
            self.stream = stream

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.stream.close()

        def read(self):
            return self.stream.read()[:-7]  # a prefix of the object, as a replaced one reads

    def open_input_stream(key):
        return CutShort(whole(key)) if next(torn, None) is not None else whole(key)

    monkeypatch.setattr(files, "fs", type("Fs", (), {"open_input_stream": staticmethod(open_input_stream)})())
    assert files.read(CURRENT_FILE, parse=json.loads) == pointer
    assert next(torn, None) is None  # all eight torn reads were tried again


def test_a_garbled_pointer_or_manifest_on_s3_is_named_in_a_one_line_error(s3, trained, tmp_path):
    uri = f"{s3}/garbled"
    store = ModelStore(uri, cache=tmp_path)
    saved = store.save(trained)
    put(f"garbled/{CURRENT_FILE}", b"\x00not json")
    with pytest.raises(StoreError, match=f"{uri}/{CURRENT_FILE} is not a valid pointer") as bad:
        store.current()
    assert "\n" not in str(bad.value)
    assert store.promote(saved.version).version == saved.version  # promoting by hand repairs it
    put(f"garbled/{VERSIONS_DIR}/{saved.version}/model.json", b'{"format": 1}')
    with pytest.raises(
        ModelFolderError, match=f"{uri}/{VERSIONS_DIR}/{saved.version}/model.json: not a valid"
    ):
        ModelStore(uri, cache=tmp_path / "fresh").current()


def test_an_s3_store_uri_with_an_endpoint_or_keys_in_it_is_refused(tmp_path):
    for uri in (f"s3://{BUCKET}/m?endpoint_override=127.0.0.1:9000", f"s3://AKIAEXAMPLE:hunter2@{BUCKET}/m"):
        with pytest.raises(ValueError, match="AWS_ENDPOINT_URL") as refused:
            ModelStore(uri, cache=tmp_path)
        assert f"s3://{BUCKET}/m:" in str(refused.value)
        assert "hunter2" not in str(refused.value) and "9000" not in str(refused.value)


def test_settings_keep_an_s3_store_as_a_uri_and_a_folder_as_a_path(tmp_path, monkeypatch):
    from triage.settings import load_settings

    monkeypatch.chdir(tmp_path)
    assert load_settings(model={"store": f"s3://{BUCKET}/models/"}).model.store == f"s3://{BUCKET}/models"
    assert load_settings(model={"store": "data/m"}).model.store == Path("data/m")
    monkeypatch.setenv("TRIAGE_MODEL__STORE", f"s3://{BUCKET}/env")
    assert load_settings().model.store == f"s3://{BUCKET}/env"
