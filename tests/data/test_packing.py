"""Sequence packing: the FFD packer, row buckets, and the pipeline's packed batches (same texts
as unpacked, deterministic, resumable, host-sliced)."""

from __future__ import annotations

import numpy as np
import pytest

from f2jax.data.batch import Batch, PackedBatch
from f2jax.data.packing import (
    ffd_layout,
    inference_rows,
    level_layout,
    pack_batch,
    pack_texts,
    packing_shape,
    row_bucket,
    row_text_cap,
    rows_needed,
    texts_bucket,
)
from f2jax.data.pipeline import DataSpec, make_dataset, make_pipeline

B = 16
ONE = dict(process_index=0, process_count=1)


def unpack(batch: PackedBatch) -> dict[str, list[list[int]]]:
    """Each text's tokens, read back through its segment and last-token index."""
    ids, seg = np.asarray(batch.ids), np.asarray(batch.segment_ids)

    def text(rc: np.ndarray) -> list[int]:
        r, c = int(rc[0]), int(rc[1])
        start = c
        while start > 0 and seg[r, start - 1] == seg[r, c]:
            start -= 1
        assert seg[r, c] > 0 and (c + 1 == seg.shape[1] or seg[r, c + 1] != seg[r, c])
        np.testing.assert_array_equal(batch.positions[r, start : c + 1], np.arange(c + 1 - start))
        return ids[r, start : c + 1].tolist()

    return {"q": [text(x) for x in batch.query_index], "p": [text(x) for x in batch.passage_index],
            "n": [text(x) for x in np.asarray(batch.negative_index).reshape(-1, 2)]}


def unpadded(batch) -> dict[str, list[list[int]]]:
    def rows(ids, mask):
        ids, mask = ids.reshape(-1, ids.shape[-1]), mask.reshape(-1, mask.shape[-1])
        return [i[: int(m.sum())].tolist() for i, m in zip(ids, mask, strict=True)]

    return {"q": rows(batch.query_ids, batch.query_mask), "p": rows(batch.passage_ids, batch.passage_mask),
            "n": rows(batch.negative_ids, batch.negative_mask)}


def test_ffd_layout_fits_without_overlap_and_is_deterministic():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 65, size=300)
    lengths[:3] = [64, 1, 64]  # a text of exactly T and a 1-token text
    row, col, used = ffd_layout(lengths, 64)
    occupied = np.zeros((used, 64), int)
    for r, c, n in zip(row, col, lengths, strict=True):
        occupied[r, c : c + n] += 1
    assert occupied.max() == 1 and occupied.sum() == lengths.sum()
    assert used <= np.ceil(lengths.sum() / 64) * 1.1 + 1  # FFD: near the lower bound
    again = ffd_layout(lengths, 64)
    np.testing.assert_array_equal(row, again[0])
    np.testing.assert_array_equal(col, again[1])
    with pytest.raises(ValueError, match="lengths"):
        ffd_layout([65], 64)


def test_row_buckets_are_few_and_tight():
    assert [row_bucket(n) for n in (1, 7, 16, 17, 33, 100)] == [1, 7, 16, 18, 36, 104]
    assert row_bucket(5, multiple=4) == 8 and row_bucket(70, multiple=4) % 4 == 0
    sizes = {row_bucket(n) for n in range(1, 1025)}
    assert len(sizes) <= 16 + 8 * 6
    assert all(row_bucket(n) <= 1.125 * n for n in range(17, 1025))


def test_pack_texts_edge_lengths_and_global_rows():
    q = [np.array([7]), np.arange(1, 9)]  # a 1-token text and a text of exactly T = 8
    p = [np.array([3, 4]), np.array([5, 6, 7])]
    n = [np.array([9] * 8), np.array([1]), np.array([2, 2]), np.array([4])]
    batch = pack_texts(q, p, n, 2, length=8, rows=rows_needed([np.array([1, 8, 2, 3, 8, 1, 2, 1])], 8),
                       pad_id=0, row_offset=10)
    rows = batch.ids.shape[0]
    batch = PackedBatch(**{**batch.__dict__, "query_index": batch.query_index - [10, 0],
                           "passage_index": batch.passage_index - [10, 0],
                           "negative_index": batch.negative_index - [10, 0]})
    got = unpack(batch)
    assert got == {"q": [[7], list(range(1, 9))], "p": [[3, 4], [5, 6, 7]], "n": [[9] * 8, [1], [2, 2], [4]]}
    assert rows == 4 and batch.token_counts() == (26, 32)


def spans(segment_ids: np.ndarray) -> list[list[tuple[int, int]]]:
    """Each row's (start, length) per segment 1, 2, ..., read from the segment ids alone."""
    out = []
    for row in np.asarray(segment_ids):
        out.append([(int(np.flatnonzero(row == s)[0]), int((row == s).sum())) for s in range(1, row.max() + 1)])
    return out


def check_offsets(batch: PackedBatch) -> None:
    """offsets [R, M+1] / seqlens [R, M] list exactly the texts the segment ids hold, −1 after."""
    offsets, seqlens = np.asarray(batch.offsets), np.asarray(batch.seqlens)
    assert offsets.dtype == seqlens.dtype == np.int32
    assert offsets.shape == (batch.ids.shape[0], seqlens.shape[1] + 1) and seqlens.shape[1] >= 2
    for r, row in enumerate(spans(batch.segment_ids)):
        n = len(row)
        assert [(int(o), int(s)) for o, s in zip(offsets[r, :n], seqlens[r, :n], strict=True)] == row
        assert (offsets[r, n:] == -1).all() and (seqlens[r, n:] == -1).all()


@pytest.mark.parametrize("seed", range(6))
def test_offsets_and_seqlens_agree_with_segment_ids(seed):
    """Random layouts, with empty rows (a larger R), a text filling a whole row, rows of 1-token
    texts (the most texts per row), and GradCache micro-batches."""
    rng = np.random.default_rng(seed)
    b, k, length, micro = 4, 3, 16, (1, 2)[seed % 2]
    lengths = rng.integers(1, length + 1, size=b * (2 + k))
    lengths[0] = length  # a text of exactly one row
    if seed >= 2:
        lengths[b : 2 * b] = 1  # many 1-token texts share rows
    seqs = [rng.integers(1, 100, size=n).astype(np.int32) for n in lengths]
    rows, texts = packing_shape([lengths], b, k, length, micro=micro)
    rows += 2 * micro  # room to spare: empty rows
    batch = pack_texts(seqs[:b], seqs[b : 2 * b], seqs[2 * b :], k, length=length, rows=rows, pad_id=0,
                       micro=micro, texts=texts)
    check_offsets(batch)
    assert (np.asarray(batch.seqlens) == -1).all(axis=1).any()  # an empty row is all −1
    most = max(len(r) for r in spans(batch.segment_ids))
    assert texts == texts_bucket(most) >= most


def test_texts_per_row_is_bucketed_and_checked():
    assert [texts_bucket(m) for m in (0, 1, 2, 3, 16, 17, 33)] == [2, 2, 2, 4, 16, 32, 64]
    q = [np.array([1])] * 4
    with pytest.raises(ValueError, match="texts"):  # 8 one-token texts in one row, only 4 columns
        pack_texts(q, q, [], 0, length=8, rows=1, pad_id=0, texts=4)


def test_pack_batch_keeps_every_text():
    rng = np.random.default_rng(1)

    def seqs(shape, width):
        lengths = rng.integers(1, width + 1, size=shape)
        mask = (np.arange(width) < lengths[..., None]).astype(np.int32)
        return rng.integers(1, 500, size=(*shape, width)).astype(np.int32) * mask, mask

    (q, qm), (p, pm), (n, nm) = seqs((8,), 8), seqs((8,), 16), seqs((8, 3), 16)
    batch = Batch(query_ids=q, query_mask=qm, passage_ids=p, passage_mask=pm, negative_ids=n, negative_mask=nm)
    packed = pack_batch(batch, 16, row_multiple=4)
    assert unpack(packed) == unpadded(batch)
    assert packed.token_counts()[0] == batch.token_counts()[0]
    assert packed.ids.shape[0] % 4 == 0 and packed.negative_index.shape == (8, 3, 2)
    check_offsets(packed)


def test_pipeline_packs_the_same_texts(tok_dir):
    plain = make_dataset(tok_dir, DataSpec(B, seed=3), num_epochs=1, **ONE)
    packed = make_dataset(tok_dir, DataSpec(B, seed=3, pack_length=64), num_epochs=1, **ONE)
    assert len(plain) == len(packed)
    for step in range(len(plain)):
        a, b = plain[step], packed[step]
        assert isinstance(b.arrays, PackedBatch) and b.arrays.ids.shape[1] == 64
        assert (a.source, a.epoch) == (b.source, b.epoch)
        np.testing.assert_array_equal(a.rows, b.rows)
        assert unpack(b.arrays) == unpadded(a.arrays)
        check_offsets(b.arrays)
        real, computed = b.arrays.token_counts()
        assert real == a.arrays.token_counts()[0] and computed == b.arrays.ids.size


@pytest.mark.parametrize("skip", [7, 26])
def test_packed_resume_exact(tok_dir, skip):
    it = make_pipeline(tok_dir, DataSpec(B, seed=9, pack_length=64), **ONE)
    for _ in range(skip):
        next(it)
    state = it.get_state()
    want = [next(it) for _ in range(4)]
    fresh = make_pipeline(tok_dir, DataSpec(B, seed=9, pack_length=64), **ONE)
    fresh.set_state(state)
    for x, y in zip(want, [next(fresh) for _ in range(4)], strict=True):
        assert (x.source, x.epoch, x.step_in_epoch) == (y.source, y.epoch, y.step_in_epoch)
        for key in ("ids", "segment_ids", "positions", "query_index", "passage_index", "negative_index"):
            np.testing.assert_array_equal(getattr(x.arrays, key), getattr(y.arrays, key))


def test_packed_two_processes_agree_on_rows(tok_dir):
    whole = make_dataset(tok_dir, DataSpec(B, seed=1, pack_length=64), num_epochs=1, **ONE)
    parts = [make_dataset(tok_dir, DataSpec(B, seed=1, pack_length=64, row_multiple=2), num_epochs=1,
                          process_index=p, process_count=2) for p in range(2)]
    for step in range(len(whole)):
        p0, p1 = parts[0][step].arrays, parts[1][step].arrays
        assert p0.ids.shape == p1.ids.shape and p0.ids.shape[0] % 2 == 0  # same R on both hosts
        rows = p0.ids.shape[0]
        glob = PackedBatch(**{k: np.concatenate([getattr(p0, k), getattr(p1, k)])
                              for k in ("ids", "segment_ids", "positions", "query_index", "passage_index",
                                        "negative_index")})
        assert (p0.query_index[:, 0] < rows).all() and (p1.query_index[:, 0] >= rows).all()
        assert p0.offsets.shape == p1.offsets.shape  # same texts-per-row width on both hosts
        check_offsets(p0)
        check_offsets(p1)
        assert unpack(glob) == unpack(whole[step].arrays)


@pytest.mark.parametrize("seed", range(4))
def test_level_layout_places_every_text_once_in_a_row_that_fits(seed):
    rng = np.random.default_rng(seed)
    buckets = [16, 32, 64, 100]
    lengths = np.clip(rng.lognormal(3.0, 1.0, size=int(rng.integers(1, 400))), 1, 100).astype(int)
    if seed == 0:
        lengths[:3] = [100, 1, 16]  # a text filling a row, the shortest, one exactly at a bucket
    levels = level_layout(lengths, buckets)
    placed = np.concatenate([texts for _, texts, _, _ in levels])
    assert sorted(placed) == list(range(len(lengths)))
    for size, texts, row, col in levels:
        own = np.searchsorted(buckets, lengths[texts])
        assert (np.asarray(buckets)[own] <= size).all()  # never a row shorter than the text's bucket
        assert row.max() + 1 == len(np.unique(row))  # rows numbered 0.. without gaps
        assert np.bincount(row).max() <= row_text_cap(size)
        cover = np.zeros((row.max() + 1, size), np.int64)
        for r, c, n in zip(row, col, lengths[texts], strict=True):
            assert c + n <= size
            cover[r, c : c + n] += 1
        assert cover.max() == 1  # no overlap
    again = level_layout(lengths, buckets)  # a pure function of the lengths
    assert [a[0] for a in again] == [a[0] for a in levels]
    for a, b in zip(levels, again, strict=True):
        for x, y in zip(a[1:], b[1:], strict=True):
            np.testing.assert_array_equal(x, y)


def test_level_layout_fills_rows_and_refuses_overlong_texts():
    rng = np.random.default_rng(1)
    lengths = np.clip(rng.lognormal(4.0, 0.9, size=2000), 1, 512).astype(int)
    levels = level_layout(lengths, [16, 32, 64, 128, 256, 512])
    computed = sum((row.max() + 1) * size for size, _, row, _ in levels)
    assert lengths.sum() / computed > 0.97
    with pytest.raises(ValueError, match="lengths"):
        level_layout([513], [512])


def test_inference_rows_point_at_each_texts_last_token():
    seqs = [np.arange(1, n + 1, dtype=np.int32) * 10 + i for i, n in enumerate([5, 3, 7, 1, 2])]
    [(size, texts, row, col)] = level_layout([len(s) for s in seqs], [8])
    arrays, slot = inference_rows([seqs[i] for i in texts], row, col, int(row.max()) + 2, size, 0, True)
    assert arrays["last"].shape == (int(row.max()) + 2, row_text_cap(8))
    for k, i in enumerate(texts):
        assert arrays["ids"][row[k], arrays["last"][row[k], slot[k]]] == seqs[i][-1]
    assert (arrays["last"][-1] == -1).all() and (arrays["segment_ids"][-1] == 0).all()  # a bucket's empty row
