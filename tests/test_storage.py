"""URL inputs staged once per host and reused; outputs published whole, the file a loader opens
first written last, so an interrupted writer leaves nothing a loader accepts."""

from __future__ import annotations

import os
import threading
import time

import pytest
from fake_bucket import fake_bucket

from f2jax import storage
from f2jax.paths import as_path


@pytest.fixture
def stage(tmp_path, monkeypatch):
    monkeypatch.setenv(storage.STAGE_DIR_ENV, str(tmp_path / "stage"))
    monkeypatch.setattr(storage, "_staged", {})
    copies = []
    real = storage.copy_file

    def counting(src, dst):
        copies.append(os.fspath(src))
        real(src, dst)

    monkeypatch.setattr(storage, "copy_file", counting)
    with fake_bucket() as bucket:
        fs = bucket()
        fs.pipe("gs://b/model/config.json", b'{"a": 1}')
        fs.pipe("gs://b/model/model.safetensors", b"w" * 1000)
        fs.pipe("gs://b/model/tokenizer.json", b"{}")
        fs.pipe("gs://b/model/sub/x.npy", b"x" * 10)
        yield fs, copies


def test_local_paths_are_not_copied(tmp_path, stage):
    assert storage.local_copy(tmp_path) == as_path(tmp_path)
    assert stage[1] == []


def test_a_url_is_staged_once_and_reused_until_it_changes(stage, monkeypatch):
    fs, copies = stage
    local = storage.local_copy("gs://b/model/")
    assert not storage.is_url(local)
    assert (local / "model.safetensors").read_bytes() == b"w" * 1000
    assert (local / "sub" / "x.npy").read_bytes() == b"x" * 10
    assert len(copies) == 4
    monkeypatch.setattr(storage, "_staged", {})  # a restarted process: the copy is checked, not redone
    assert storage.local_copy("gs://b/model") == local and len(copies) == 4
    fs.pipe("gs://b/model/config.json", b'{"a": 22}')  # the source changed (its size)
    monkeypatch.setattr(storage, "_staged", {})
    assert (storage.local_copy("gs://b/model") / "config.json").read_text() == '{"a": 22}'
    assert len(copies) == 8


def test_only_stages_the_files_asked_for(stage):
    local = storage.local_copy("gs://b/model", only=("tokenizer.json", "vocab.json"))
    assert sorted(p.name for p in local.iterdir() if not p.name.startswith(".")) == ["tokenizer.json"]
    single = storage.local_copy("gs://b/model/config.json")
    assert single.read_text() == '{"a": 1}'


def test_missing_url_names_it(stage):
    with pytest.raises(FileNotFoundError, match="gs://b/nothing does not exist"):
        storage.local_copy("gs://b/nothing")


def test_one_process_per_host_copies_the_others_wait(stage, monkeypatch):
    """flock is per open file: two threads of one process contend exactly as two processes do."""
    _, copies = stage
    slow = storage.copy_file

    def slower(src, dst):
        time.sleep(0.05)
        slow(src, dst)

    monkeypatch.setattr(storage, "copy_file", slower)
    results = []

    def worker():
        results.append(storage.local_copy("gs://b/model"))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and len(copies) == 4


def test_publish_uploads_last_file_last_and_removes_stale_weights(stage):
    fs, copies = stage
    fs.pipe("gs://b/out/model-00001-of-00002.safetensors", b"old")
    fs.pipe("gs://b/out/keep.txt", b"mine")
    with storage.publish_dir("gs://b/out", last=("config.json",), replace=("config.json", "*.safetensors")) as d:
        (d / "config.json").write_text("{}")
        (d / "model.safetensors").write_bytes(b"new")
        (d / "2_Normalize").mkdir()
    assert copies[-1].endswith("config.json")
    assert sorted(os.path.basename(f) for f in fs.find("gs://b/out")) == [
        "config.json", "keep.txt", "model.safetensors"]


def test_an_interrupted_writer_publishes_nothing(tmp_path, stage):
    out = tmp_path / "model"
    with pytest.raises(KeyboardInterrupt), storage.publish_dir(out, last=("config.json",)) as d:
        (d / "model.safetensors").write_bytes(b"w")
        raise KeyboardInterrupt
    assert not out.exists() and [p for p in os.listdir(tmp_path) if p != "stage"] == []


def test_publish_file_renames_into_place(tmp_path):
    target = tmp_path / "out" / "vectors.npy"
    with storage.publish_file(target) as local:
        local.write_bytes(b"abc")
        assert not target.exists()
    assert target.read_bytes() == b"abc" and os.listdir(target.parent) == ["vectors.npy"]
