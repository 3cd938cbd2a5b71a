"""Every validation error names file, row and column; skip mode counts what it drops."""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from f2jax.data.checks import validate_tokenized
from f2jax.data.store import TokenizedStore
from f2jax.data.validate import DataValidationError, validate_source


def _table(n=4, negs=3, **override):
    cols = {"query": [f"q{i}" for i in range(n)], "passage": [f"p{i}" for i in range(n)]}
    for j in range(1, negs + 1):
        cols[f"negative_{j}"] = [f"n{i}_{j}" for i in range(n)]
    cols.update(override)
    return pa.table(cols)


def _check(tmp_path, table, row, column, words, task="retrieval", need=3):
    path = tmp_path / "src.parquet"
    pq.write_table(table, path)
    with pytest.raises(DataValidationError) as info:
        validate_source(path, task, need)
    err = info.value
    assert (err.file, err.row, err.column) == (str(path), row, column)
    assert str(path) in str(err) and repr(column) in str(err)
    assert (f"row {row}" if row is not None else "header") in str(err)
    for w in words:
        assert w in str(err)


def test_missing_column(tmp_path):
    _check(tmp_path, _table().drop(["passage"]), None, "passage", ["missing"])


def test_misnamed_column(tmp_path):
    t = _table().rename_columns(["query", "Passage", "negative_1", "negative_2", "negative_3"])
    _check(tmp_path, t, None, "passage", ["missing", "'Passage'"])
    t = _table().rename_columns(["query", "passage", "negative_1", "neg_2", "negative_3"])
    _check(tmp_path, t, None, "neg_2", ["unexpected column"])
    _check(tmp_path, _table().drop(["negative_2"]), None, "negative_2", ["gap"])


def test_non_string_column(tmp_path):
    _check(tmp_path, _table(passage=[1, 2, 3, 4]), None, "passage", ["string column", "int64"])


def test_null_and_empty_text(tmp_path):
    _check(tmp_path, _table(query=["a", None, "c", "d"]), 1, "query", ["null"])
    _check(tmp_path, _table(negative_2=["a", "b", "  ", "d"]), 2, "negative_2", ["empty text"])


def test_too_few_negatives(tmp_path):
    _check(tmp_path, _table(negs=3), None, "negative_4", ["needs 7", "has 3"], need=7)
    _check(tmp_path, _table(negative_3=["a", "b", "c", None]), 3, "negative_3",
           ["needs 3", "has 2"])


def test_non_utf8_bytes(tmp_path):
    bad = pa.array([b"ok", b"fine", b"bad \xff\xfe", b"x"], pa.binary())
    _check(tmp_path, _table(passage=bad), 2, "passage", ["non-UTF-8", "offset 4"])


def test_skip_counts_bad_rows(tmp_path):
    path = tmp_path / "src.parquet"
    pq.write_table(_table(n=6, query=["a", None, "c", "", "e", "f"]), path)
    clean = validate_source(path, "retrieval", 3, on_error="skip")
    assert clean.rows == [0, 2, 4, 5]
    assert clean.query == ["a", "c", "e", "f"]
    assert clean.skipped == 2
    assert clean.reasons == {"query: null value; text expected": 1, "query: empty text": 1}


def test_skip_reported_in_meta(tmp_path):
    from f2jax.data.tokenize import tokenize_sources

    raw = tmp_path / "raw"
    raw.mkdir()
    pq.write_table(_table(n=6, negs=7, query=["a", None, "c", "d", "e", "f"]), raw / "s.parquet")
    meta = tokenize_sources(raw, tmp_path / "out", max_length=16, workers=1, on_error="skip")
    assert meta["sources"]["s"]["rows"] == 5
    assert meta["sources"]["s"]["skipped"] == 1


def _copy(tok_dir, tmp_path):
    dst = tmp_path / "tok"
    shutil.copytree(tok_dir, dst)
    return dst


def test_duplicate_doc_ids(tok_dir, tmp_path):
    from f2jax.data import tfds_builder

    dst = _copy(tok_dir, tmp_path)
    store = TokenizedStore(dst)
    corpus = store.records("corpus", "corpus")
    recs = [dict(corpus[i]) for i in range(len(corpus))]
    recs[5]["doc_id"] = 2
    tfds_builder.write(dst, "corpus", {"corpus": recs})
    with pytest.raises(DataValidationError) as info:
        validate_tokenized(dst)
    assert info.value.row == 5 and info.value.column == "doc_id"
    assert "corpus.array_record" in info.value.file and "duplicate document id 2" in str(info.value)


def test_dangling_doc_ids(tok_dir, tmp_path):
    from f2jax.data import tfds_builder

    dst = _copy(tok_dir, tmp_path)
    store = TokenizedStore(dst)
    splits = {}
    for name in store.meta["sources"]:
        src = store.records("queries", name)
        splits[name] = [dict(src[i]) for i in range(len(src))]
    splits["clus"][7]["negative_ids"] = np.asarray([10**6] * 24, np.int64)
    tfds_builder.write(dst, "queries", splits)
    with pytest.raises(DataValidationError) as info:
        validate_tokenized(dst)
    assert (info.value.row, info.value.column) == (7, "negative_ids")
    assert "clus.array_record" in info.value.file and "dangling document id 1000000" in str(
        info.value)
    # the cheap index check used before training catches it too
    pid = np.load(dst / "index" / "cls.passage_id.npy")
    pid[3] = 10**6
    np.save(dst / "index" / "cls.passage_id.npy", pid)
    with pytest.raises(DataValidationError) as info:
        TokenizedStore(dst)
    assert (info.value.row, info.value.column) == (3, "passage_id")
    assert info.value.file.endswith("cls.passage_id.npy")


def test_clean_tokenized_passes(tok_dir):
    assert validate_tokenized(tok_dir) is None
