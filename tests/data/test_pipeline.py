"""The Grain pipeline: batch contract, mixing rule, determinism, resume, host slicing."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from f2jax.data import schedule
from f2jax.data.pipeline import DataSpec, make_dataset, make_pipeline, make_validation_iterator
from f2jax.data.store import TokenizedStore
from f2jax.data.tasks import instruct
from f2jax.tokenizer import tokenize

INSTRUCTION = "Find the matching answer."  # as in conftest.py
B = 16
ONE = dict(process_index=0, process_count=1)


def _epoch(tok_dir, **kw):
    return list(make_pipeline(tok_dir, DataSpec(global_batch_size=B, seed=3, **kw), num_epochs=1, **ONE))


def _unpad(ids, mask):
    return ids[: int(mask.sum())].tolist()


def _field(b, key):
    """A `HostBatch` field: its provenance rows or one of its arrays."""
    return b.rows if key == "rows" else getattr(b.arrays, key)


def test_batch_contract_per_task(tok_dir, raw_dir, tokenizer):
    store = TokenizedStore(tok_dir)
    eos, pad = store.meta["eos_id"], store.meta["pad_id"]
    corpus = store.records("corpus", "corpus")
    batches = _epoch(tok_dir)
    want_k = {"retrieval": 7, "clustering": 9, "classification": 1}
    seen_tasks = set()
    for b in batches:
        src, rows, k = store.sources[b.source], b.rows, want_k[b.task]
        seen_tasks.add(b.task)
        assert b.inbatch == (b.task == "retrieval")
        assert b.arrays.negative_ids.shape[:2] == (B, k) and b.arrays.negative_ids.dtype == np.int32
        for key in ("query", "passage", "negative"):
            ids, mask = getattr(b.arrays, f"{key}_ids"), getattr(b.arrays, f"{key}_mask")
            last = mask.sum(-1) - 1
            assert ids.shape[-1] in (32, 64)
            assert (mask[..., 0] == 1).all() and (np.diff(mask, axis=-1) <= 0).all()  # right-padded
            np.testing.assert_array_equal(np.take_along_axis(ids, last[..., None], -1), eos)
            assert (ids[mask == 0] == pad).all()
        raw = pd.read_parquet(raw_dir / f"{b.source}.parquet")
        prompt = INSTRUCTION if b.source == "retr_instr" else None
        texts = [instruct(prompt, raw["query"][r]) for r in rows]
        expect = tokenize(tokenizer, texts, 64)
        for i, r in enumerate(rows):
            assert _unpad(b.arrays.query_ids[i], b.arrays.query_mask[i]) == expect[i]
            pdoc = corpus[int(src.passage_id[r])]["input_ids"].tolist()
            assert _unpad(b.arrays.passage_ids[i], b.arrays.passage_mask[i]) == pdoc
            negs = [_unpad(b.arrays.negative_ids[i, j], b.arrays.negative_mask[i, j]) for j in range(k)]
            assert pdoc not in negs  # avoidable, so never the positive
            assert len({tuple(n) for n in negs}) == k  # distinct
            if b.task == "classification":
                assert negs == [corpus[int(src.negative_ids[r, 0])]["input_ids"].tolist()]
            else:
                allowed = {tuple(corpus[int(d)]["input_ids"]) for d in src.negative_ids[r]}
                assert {tuple(n) for n in negs} <= allowed
    assert seen_tasks == {"retrieval", "clustering", "classification"}
    instr = next(b for b in batches if b.source == "retr_instr")
    prefix = tokenize(tokenizer, ["Instruct: Find the matching answer.\nQuery:"], 64)[0][:-1]
    assert instr.arrays.query_ids[0, : len(prefix)].tolist() == prefix


def test_every_batch_once_per_epoch(tok_dir, caplog):
    store = TokenizedStore(tok_dir)
    with caplog.at_level(logging.WARNING):
        batches = _epoch(tok_dir)
    assert any("tiny" in r.message and "no batches" in r.message for r in caplog.records)
    assert [b.step_in_epoch for b in batches] == list(range(len(batches)))
    for name, src in store.sources.items():
        train, val = schedule.split_rows(name, len(src.query_len), 0.01)
        served = np.concatenate([b.rows for b in batches if b.source == name] or [[]])
        assert len(served) == len(train) // B * B
        assert len(set(served.tolist())) == len(served)
        assert set(served.tolist()) <= set(train.tolist())
        assert not set(served.tolist()) & set(val.tolist())
    assert "tiny" not in {b.source for b in batches}


def test_mixing_weights_and_exhaustion():
    nb = [30, 12, 6, 2]
    first, total = np.zeros(4), np.zeros(4)
    for epoch in range(400):
        src, idx = schedule.epoch_schedule(nb, seed=11, epoch=epoch)
        np.testing.assert_array_equal(np.bincount(src, minlength=4), nb)
        for s in range(4):  # each batch of each source exactly once, in order
            np.testing.assert_array_equal(idx[src == s], np.arange(nb[s]))
        for s in np.unique(src[:10]):
            first[s] += np.sum(src[:10] == s)
        total[src[0]] += 1
    p = np.asarray(nb) / sum(nb)
    for counts in (first, total):  # early draws follow weight = batches per epoch
        expected = counts.sum() * p
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        assert chi2 < 16.3, (counts, expected)  # df=3, p=0.001
    src, _ = schedule.epoch_schedule([50, 1], seed=0, epoch=0)
    assert src.tolist().count(1) == 1 and len(src) == 51


def test_determinism_from_seed(tok_dir):
    a = list(make_dataset(tok_dir, DataSpec(B, seed=5), num_epochs=1, **ONE))
    b = list(make_dataset(tok_dir, DataSpec(B, seed=5), num_epochs=1, **ONE))
    c = list(make_dataset(tok_dir, DataSpec(B, seed=6), num_epochs=1, **ONE))
    for x, y in zip(a, b, strict=True):
        assert x.source == y.source
        for key in ("query_ids", "passage_ids", "negative_ids", "rows"):
            np.testing.assert_array_equal(_field(x, key), _field(y, key))
    assert [x.source for x in a] != [x.source for x in c] or any(
        (x.rows != y.rows).any() for x, y in zip(a, c, strict=True))
    e0 = list(make_dataset(tok_dir, DataSpec(B, seed=5), num_epochs=2, **ONE))
    n = len(a)
    assert [x.epoch for x in e0] == [0] * n + [1] * n
    assert any((x.rows != y.rows).any() for x, y in zip(e0[:n], e0[n:], strict=True))


@pytest.mark.parametrize("skip", [7, 26])  # mid-epoch, and across the epoch boundary (28)
def test_resume_exact(tok_dir, skip):
    it = make_pipeline(tok_dir, DataSpec(B, seed=9), **ONE)
    for _ in range(skip):
        next(it)
    state = it.get_state()
    want = [next(it) for _ in range(4)]
    fresh = make_pipeline(tok_dir, DataSpec(B, seed=9), **ONE)
    fresh.set_state(state)
    got = [next(fresh) for _ in range(4)]
    for x, y in zip(want, got, strict=True):
        assert (x.source, x.epoch, x.step_in_epoch) == (y.source, y.epoch, y.step_in_epoch)
        for key in ("query_ids", "passage_mask", "negative_ids", "negative_mask", "rows"):
            np.testing.assert_array_equal(_field(x, key), _field(y, key))


def test_two_processes_cover_global_batch(tok_dir):
    whole = make_dataset(tok_dir, DataSpec(B, seed=1), num_epochs=1, **ONE)
    parts = [make_dataset(tok_dir, DataSpec(B, seed=1), num_epochs=1, process_index=p, process_count=2)
             for p in range(2)]
    for step in range(len(whole)):
        g, p0, p1 = whole[step], parts[0][step], parts[1][step]
        assert p0.source == p1.source == g.source
        for key in ("query_ids", "passage_ids", "negative_ids", "negative_mask", "query_mask"):
            assert _field(p0, key).shape == _field(p1, key).shape  # same bucket on both hosts
            np.testing.assert_array_equal(np.concatenate([_field(p0, key), _field(p1, key)]), _field(g, key))
        assert len(p0.rows) == B // 2


def test_validation_iterator_covers_holdout(tok_dir):
    store = TokenizedStore(tok_dir)
    batches = list(make_validation_iterator(tok_dir, DataSpec(B), **ONE))
    for name, src in store.sources.items():
        _, val = schedule.split_rows(name, len(src.query_len), 0.01)
        served = np.concatenate([b.rows for b in batches if b.source == name])
        np.testing.assert_array_equal(served, val)


def test_sample_negatives_prefers_distinct_non_positive():
    negs = np.array([[5, 5, 1, 2, 3], [9, 9, 9, 9, 4], [1, 2, -1, -1, 3]])
    pos = np.array([1, 9, 7])
    out = schedule.sample_negatives(negs, pos, 3, random=True, seed=(0,))
    assert sorted(out[0]) == [2, 3, 5]
    assert 4 in out[1] and sorted(out[1])[1:] == [9, 9]  # positive only when unavoidable
    assert sorted(out[2]) == [1, 2, 3]
    np.testing.assert_array_equal(
        schedule.sample_negatives(negs, pos, 2, random=False, seed=(0,)), negs[:, :2])
    with pytest.raises(ValueError, match="fewer than 4"):
        schedule.sample_negatives(negs, pos, 4, random=True, seed=(0,))


def test_to_global_single_process(tok_dir):
    import jax

    from f2jax.data.batch import TOKEN_FIELDS
    from f2jax.data.pipeline import to_global

    mesh = jax.make_mesh((1, 1), ("data", "fsdp"))
    batch = make_dataset(tok_dir, DataSpec(B), num_epochs=1, **ONE)[0]
    out = to_global(batch.arrays, mesh)
    assert out.teacher is None
    for key in TOKEN_FIELDS:
        assert isinstance(getattr(out, key), jax.Array)
        np.testing.assert_array_equal(np.asarray(getattr(out, key)), _field(batch, key))
