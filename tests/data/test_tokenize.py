"""Tokenisation: byte-identical re-runs, EOS last, truncation, dedup, instruction prefix, CLI."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from f2jax.data import tokenize as tokmod
from f2jax.data.store import TokenizedStore
from f2jax.data.tasks import instruct
from f2jax.tokenizer import tokenize

INSTRUCTION = "Find the matching answer."  # as in conftest.py


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_rerun_is_byte_identical_and_parallel_matches(raw_dir, tok_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(tokmod, "PARALLEL_MIN_TEXTS", 0)  # force the worker pool
    monkeypatch.setattr(tokmod, "CHUNK", 64)
    tokmod.tokenize_sources(raw_dir, tmp_path / "a", max_length=64, workers=2)
    first, again = _files(tok_dir), _files(tmp_path / "a")
    assert len(first) >= 10
    assert first.keys() == again.keys()
    for k in first:
        assert first[k] == again[k], k


def test_ids_match_tokenizer_and_end_with_eos(raw_dir, tok_dir, tokenizer):
    store = TokenizedStore(tok_dir)
    eos = store.meta["eos_id"]
    assert eos == tokenizer.eos_token_id
    corpus = store.records("corpus", "corpus")
    docs = [corpus[i]["input_ids"] for i in range(len(corpus))]
    assert all(d[-1] == eos and (d[:-1] != eos).all() for d in docs)
    for name in ("retr_a", "retr_instr", "clus", "cls"):
        raw = pd.read_parquet(raw_dir / f"{name}.parquet")
        src = store.records("queries", name)
        expect = tokenize(tokenizer, list(raw["query"]), 64)
        for i in range(len(src)):
            rec = src[i]
            assert rec["row"] == i
            assert rec["query"].tolist() == expect[i]
            passage = tokenize(tokenizer, [raw["passage"][i]], 64)[0]
            assert docs[rec["passage_id"]].tolist() == passage
        np.testing.assert_array_equal(store.sources[name].query_len, [len(e) for e in expect])


def test_instruction_prefix_tokenised_with_query(raw_dir, tok_dir, tokenizer):
    store = TokenizedStore(tok_dir)
    raw = pd.read_parquet(raw_dir / "retr_instr.parquet")
    rec = store.records("queries", "retr_instr")[4]
    text = instruct(INSTRUCTION, raw["query"][4])
    assert text.startswith("Instruct: Find the matching answer.\nQuery: instr question")
    assert rec["query_instructed"].tolist() == tokenize(tokenizer, [text], 64)[0]
    assert len(store.records("queries", "retr_a")[0]["query_instructed"]) == 0


def test_corpus_deduplicates_identical_texts(raw_dir, tok_dir):
    store = TokenizedStore(tok_dir)
    texts = set()
    for name in store.meta["sources"]:
        raw = pd.read_parquet(raw_dir / f"{name}.parquet")
        for col in raw.columns:
            if col != "query":
                texts.update(raw[col])
    assert store.meta["num_docs"] == len(texts) == len(store.doc_len)
    src = store.sources["retr_a"]
    # rows 0 and 60 share their passage text "ret doc 0": one doc id
    assert src.passage_id[0] == src.passage_id[60]
    assert src.negative_ids[0, 2] == src.passage_id[0]  # negative_3 == passage (see conftest)


def test_truncation_keeps_eos(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    long = " ".join(f"word{i}" for i in range(500))
    pd.DataFrame([{"query": long, "passage": long + "!", **{f"negative_{j}": f"n{j}"
                                                            for j in range(1, 8)}}]
                 ).to_parquet(raw / "s.parquet")
    tokmod.tokenize_sources(raw, tmp_path / "out", max_length=16, workers=1)
    store = TokenizedStore(tmp_path / "out")
    q = store.records("queries", "s")[0]["query"]
    assert len(q) == 16 and q[-1] == store.meta["eos_id"]
    assert store.doc_len.max() == 16


def test_cli_registers_tokenize(tmp_path, raw_dir):
    from f2jax.data.cli import add_data_parser

    parser = argparse.ArgumentParser()
    add_data_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "tokenize", str(raw_dir), str(tmp_path / "o"),
                              "--max-length", "32", "--workers", "1"])
    assert (args.max_length, args.tokenizer, args.on_error) == (32, None, "raise")
    assert args.func(args) == 0
    assert TokenizedStore(tmp_path / "o").meta["max_length"] == 32


def test_url_input_and_output_give_the_same_files(raw_dir, tok_dir, tmp_path, monkeypatch):
    """`f2jax data tokenize gs://.../raw gs://.../tok`: staged input, published output, same bytes;
    a rerun over a previous output leaves no stale file and meta.json is the last file written."""
    from fake_bucket import fake_bucket

    from f2jax import storage

    monkeypatch.setenv(storage.STAGE_DIR_ENV, str(tmp_path / "stage"))
    monkeypatch.setattr(storage, "_staged", {})
    with fake_bucket() as bucket:
        fs = bucket()
        fs.put(str(raw_dir), "gs://b/raw", recursive=True)
        fs.pipe("gs://b/tok/index/stale.npy", b"old")
        written, copy = [], storage.copy_file
        monkeypatch.setattr(storage, "copy_file", lambda src, dst: (written.append(dst.name), copy(src, dst)))
        tokmod.tokenize_sources("gs://b/raw", "gs://b/tok", max_length=64, workers=1)
        assert written[-1] == "meta.json"
        remote = {os_path.removeprefix("b/tok/"): fs.cat(os_path) for os_path in fs.find("gs://b/tok")}
    local = {str(k): v for k, v in _files(tok_dir).items()}
    assert remote.keys() == local.keys() and all(remote[k] == local[k] for k in local)
