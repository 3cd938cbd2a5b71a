"""Sequence packing: a step's texts laid into rows of a fixed length T (`data.packing`).

The global batch is chosen exactly as without packing (one source, B queries, their positives
and hard negatives); only its layout changes. Texts are placed with first-fit decreasing
(stable: ties keep text order, so the layout is a pure function of the lengths), each row
numbers its texts 1.. in `segment_ids` (0 = padding) and restarts `positions` at 0 per text,
and every text's last token is recorded as (row, column) for pooling.

The row count R comes from `row_bucket` (multiples of the data-parallel share, ~8 sizes per
octave), so jit compiles a bounded set of shapes while rows stay >= ~90 % full.

Each row's texts are also listed as start columns `offsets` [R, M+1] and lengths `seqlens`
[R, M] (−1 filled), the layout jax's cuDNN packed attention takes (`f2jax.model.cudnn_packed`);
M, the most texts in a row, is rounded up to a power of two (at least 2: cuDNN reads one text
per row as unpacked), so it adds few shapes; kernels other than cuDNN never see them (the
Trainer drops them, `PackedBatch.without_offsets`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from f2jax.data.batch import Batch, PackedBatch, micro_batch_rows


def ffd_layout(lengths: Sequence[int] | np.ndarray, capacity: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(row [n], start column [n], rows used) of first-fit decreasing into rows of `capacity`.

    Deterministic: texts are taken longest first, ties in index order; each goes to the first
    row with room. Every length must be in [1, capacity].
    """
    lengths = np.asarray(lengths, np.int64).reshape(-1)
    if len(lengths) and (lengths.min() < 1 or lengths.max() > capacity):
        raise ValueError(f"text lengths must be in [1, {capacity}], got [{lengths.min()}, {lengths.max()}]")
    n = len(lengths)
    row, col = np.zeros(n, np.int64), np.zeros(n, np.int64)
    free = np.empty(max(n, 1), np.int64)  # room left per opened row
    used = 0
    for i in np.argsort(-lengths, kind="stable"):
        fits = np.flatnonzero(free[:used] >= lengths[i])
        r = int(fits[0]) if len(fits) else used
        if r == used:
            free[used] = capacity
            used += 1
        row[i], col[i] = r, capacity - free[r]
        free[r] -= lengths[i]
    return row, col, used


def row_bucket(rows: int, multiple: int = 1) -> int:
    """Smallest row count >= `rows` of the form multiple × m, m in 1..16, then 8 sizes per octave
    (18, 20, ..., 32, 36, ..., 64, ...): at most 12.5 % empty rows from bucketing."""
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    m = max(1, -(-rows // multiple))
    step = 1
    while m > 16 * step:
        step *= 2
    return multiple * (-(-m // step) * step)


def clip(seq: Sequence[int] | np.ndarray, length: int, eos_id: int | None) -> np.ndarray:
    """`seq` cut to `length` tokens ending in EOS, as `pad_sequences` cuts (int32)."""
    seq = np.asarray(seq, np.int32)
    if len(seq) <= length:
        return seq
    if eos_id is None:
        raise ValueError(f"sequence of {len(seq)} tokens exceeds length {length}")
    return np.concatenate([seq[: length - 1], np.asarray([eos_id], np.int32)])


def texts_bucket(texts: int) -> int:
    """M, the texts-per-row width of `offsets`/`seqlens`: the power of two >= the most texts in a
    row, at least 2 (cuDNN treats a width of 1 as unpacked rows). Powers of two, not row buckets:
    every M is another compiled step, and −1 columns cost next to nothing."""
    return max(2, 1 << (max(texts, 1) - 1).bit_length())


def most_texts(row: np.ndarray) -> int:
    """The most texts any row of a layout holds (0 for no texts)."""
    return int(np.bincount(np.asarray(row, np.int64)).max()) if len(row) else 0


def pack_rows(seqs: Sequence[np.ndarray], row: np.ndarray, col: np.ndarray, rows: int, length: int,
              pad_id: int, texts: int = 2) -> tuple[np.ndarray, ...]:
    """(ids, segment_ids, positions) int32 [rows, length] for texts placed at (row, col), and
    (offsets [rows, texts + 1], seqlens [rows, texts]): each row's text starts and lengths in
    column order, −1 after its last text."""
    ids = np.full((rows, length), pad_id, np.int32)
    seg = np.zeros((rows, length), np.int32)
    pos = np.zeros((rows, length), np.int32)
    offsets = np.full((rows, texts + 1), -1, np.int32)
    seqlens = np.full((rows, texts), -1, np.int32)
    order = np.lexsort((col, row))  # segment numbers follow the column order within a row
    counts = np.zeros(rows, np.int32)
    for i in order:
        r, c, s = int(row[i]), int(col[i]), seqs[i]
        offsets[r, counts[r]], seqlens[r, counts[r]] = c, len(s)
        counts[r] += 1
        ids[r, c : c + len(s)] = s
        seg[r, c : c + len(s)] = counts[r]
        pos[r, c : c + len(s)] = np.arange(len(s), dtype=np.int32)
    return ids, seg, pos, offsets, seqlens


def rows_needed(lengths_per_slice: Sequence[np.ndarray], capacity: int, multiple: int = 1) -> int:
    """Rows per slice so that every slice's texts fit: the bucket of the largest FFD row count.
    Computed from lengths alone, so every host derives the same R from the global batch."""
    most = max(ffd_layout(lengths, capacity)[2] for lengths in lengths_per_slice)
    return row_bucket(most, multiple)


def micro_texts(b: int, k: int, micro: int, j: int) -> np.ndarray:
    """Indices into a slice's [queries, positives, negatives] (b, b, b·k texts) of micro-batch j:
    the queries i ≡ j (mod micro), their positives and their k negatives (GradCache's strided
    split, `f2jax.data.batch.micro_batch_rows`)."""
    i = micro_batch_rows(b, micro, j)
    negs = (b + b + i[:, None] * k + np.arange(k)).reshape(-1)
    return np.concatenate([i, b + i, negs])


def packing_shape(lengths_per_slice: Sequence[np.ndarray], b: int, k: int, capacity: int,
                  multiple: int = 1, micro: int = 1) -> tuple[int, int]:
    """(rows R, texts-per-row M) per slice when each of `micro` micro-batches is packed into rows
    of its own: R = micro × the bucket of the largest FFD row count, M = `texts_bucket` of the
    most texts in any row, over every (slice, micro-batch). `lengths_per_slice` hold each
    slice's [queries, positives, negatives] lengths (b, b, b·k); from lengths alone, so every
    host derives the same shapes from the global batch."""
    parts = [np.asarray(lengths)[micro_texts(b, k, micro, j)] for lengths in lengths_per_slice
             for j in range(micro)]
    layouts = [ffd_layout(lengths, capacity) for lengths in parts]
    rows = micro * row_bucket(max(used for _, _, used in layouts), multiple)
    return rows, texts_bucket(max(most_texts(row) for row, _, _ in layouts))


def micro_rows_needed(lengths_per_slice: Sequence[np.ndarray], b: int, k: int, capacity: int,
                      multiple: int = 1, micro: int = 1) -> int:
    """Rows per slice of `packing_shape`."""
    return packing_shape(lengths_per_slice, b, k, capacity, multiple, micro)[0]


def pack_texts(queries: Sequence[np.ndarray], passages: Sequence[np.ndarray],
               negatives: Sequence[np.ndarray], k: int, *, length: int, rows: int, pad_id: int,
               row_offset: int = 0, teacher: dict[str, np.ndarray] | None = None, micro: int = 1,
               texts: int | None = None) -> PackedBatch:
    """One slice's b queries, b positives and b·k negatives (row-major) packed into `rows` rows,
    `texts` wide `offsets`/`seqlens` (default: `texts_bucket` of this slice's fullest row; pass
    `packing_shape`'s M so that every host agrees).

    Index arrays hold the global row (`row_offset` + local row) and the column of each text's
    last token: queries [b, 2], passages [b, 2], negatives [b, k, 2].

    `micro` > 1 (GradCache with `train.grad_accum`): micro-batch j (queries i ≡ j mod micro,
    with their positives and negatives) is packed into rows of its own, local rows r ≡ j
    (mod micro), so the step's strided split of rows and of queries gives each micro-batch
    exactly its texts; its index rows then count within the micro-batch (global row // micro)."""
    seqs = [*queries, *passages, *negatives]
    lengths = np.asarray([len(s) for s in seqs], np.int64)
    b = len(queries)
    if rows % micro or b % micro:
        raise ValueError(f"rows ({rows}) and queries ({b}) must be divisible by micro-batches ({micro})")
    row, col = np.zeros(len(seqs), np.int64), np.zeros(len(seqs), np.int64)
    for j in range(micro):
        part = micro_texts(b, k, micro, j)
        r, c, used = ffd_layout(lengths[part], length)
        if used > rows // micro:
            raise ValueError(f"{len(part)} texts need {used} rows of {length}, only {rows // micro} given")
        row[part], col[part] = r * micro + j, c
    width = texts_bucket(most_texts(row)) if texts is None else texts
    if most_texts(row) > width:
        raise ValueError(f"a row holds {most_texts(row)} texts, more than texts={width}")
    ids, seg, pos, offsets, seqlens = pack_rows(seqs, row, col, rows, length, pad_id, width)
    index = np.stack([(row + row_offset) // micro, col + lengths - 1], axis=-1).astype(np.int32)
    return PackedBatch(ids=ids, segment_ids=seg, positions=pos, query_index=index[:b],
                       passage_index=index[b : 2 * b], negative_index=index[2 * b :].reshape(b, k, 2),
                       offsets=offsets, seqlens=seqlens, **(teacher or {}))


def pack_batch(batch: Batch, length: int | None = None, row_multiple: int = 1, micro: int = 1) -> PackedBatch:
    """A padded numpy `Batch` (one process) as a `PackedBatch` of the same texts, e.g. for
    benchmarks and tests; `length` defaults to the widest padded text; `micro` as in `pack_texts`."""
    def unpad(ids: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
        ids, mask = np.asarray(ids), np.asarray(mask)
        ids, mask = ids.reshape(-1, ids.shape[-1]), mask.reshape(-1, mask.shape[-1])
        return [row[: int(m.sum())] for row, m in zip(ids, mask, strict=True)]

    b, k, _ = np.shape(batch.negative_ids)
    q, p = unpad(batch.query_ids, batch.query_mask), unpad(batch.passage_ids, batch.passage_mask)
    n = unpad(batch.negative_ids, batch.negative_mask)
    length = length or max(np.shape(batch.query_ids)[-1], np.shape(batch.passage_ids)[-1],
                           np.shape(batch.negative_ids)[-1])
    lengths = np.asarray([len(s) for s in (*q, *p, *n)])
    rows, texts = packing_shape([lengths], b, k, length, row_multiple, micro)
    teacher = None
    if batch.teacher is not None:
        teacher = dict(zip(("teacher_query", "teacher_passage", "teacher_negative"), batch.teacher, strict=True))
    return pack_texts(q, p, n, k, length=length, rows=rows, pad_id=0, teacher=teacher, micro=micro, texts=texts)


def packing_efficiency(lengths: np.ndarray, length: int, multiple: int = 1) -> tuple[int, int]:
    """(real tokens, computed tokens) of one slice's texts packed into bucketed rows of `length`."""
    lengths = np.minimum(np.asarray(lengths, np.int64).reshape(-1), length)
    return int(lengths.sum()), rows_needed([lengths], length, multiple) * length


# ---------------------------------------------------------------- inference (the Encoder)


def row_text_cap(length: int) -> int:
    """Most texts one inference row of `length` tokens holds: the width of its pooling slots
    (and cuDNN's offsets), fixed per row length so each (length, rows) is one compiled shape."""
    return max(2, min(length // 16, 32))


Level = tuple[int, np.ndarray, np.ndarray, np.ndarray]  # (row length, text indices, row, column)


def level_layout(lengths: Sequence[int] | np.ndarray, buckets: Sequence[int]) -> list[Level]:
    """Texts of `lengths` laid into rows of the length `buckets`, for inference.

    Longest level first: the texts whose bucket is T open rows of T (first-fit decreasing), then
    shorter texts fill the room left in those rows (never opening one), at most `row_text_cap(T)`
    per row; what does not fit goes down a level. So rows are nearly full and each text's row is
    at most its own bucket or one that had room anyway. Returns [(T, text indices, row, column)]
    per level that has rows; a pure function of the lengths (ties keep index order)."""
    lengths = np.asarray(lengths, np.int64).reshape(-1)
    buckets = sorted(int(b) for b in buckets)
    if len(lengths) and (lengths.min() < 1 or lengths.max() > buckets[-1]):
        raise ValueError(f"text lengths must be in [1, {buckets[-1]}], got [{lengths.min()}, {lengths.max()}]")
    level = np.searchsorted(np.asarray(buckets), lengths)  # index of each text's bucket
    waiting = np.argsort(-lengths, kind="stable")
    out = []
    for lv in range(len(buckets) - 1, -1, -1):
        if not len(waiting):
            break
        size, cap = buckets[lv], row_text_cap(buckets[lv])
        opens = level[waiting] == lv
        if not opens.any():
            continue
        free, count, used = np.empty(int(opens.sum()), np.int64), np.empty(int(opens.sum()), np.int64), 0
        row, col = np.full(len(waiting), -1, np.int64), np.zeros(len(waiting), np.int64)
        for j, i in enumerate(waiting):
            fits = np.flatnonzero((free[:used] >= lengths[i]) & (count[:used] < cap))
            if len(fits):
                r = int(fits[0])
            elif opens[j]:
                r, free[used], count[used] = used, size, 0
                used += 1
            else:
                continue
            row[j], col[j] = r, size - free[r]
            free[r] -= lengths[i]
            count[r] += 1
        placed = row >= 0
        out.append((size, waiting[placed], row[placed], col[placed]))
        waiting = waiting[~placed]
    return out


def inference_rows(seqs: Sequence[np.ndarray], row: np.ndarray, col: np.ndarray, rows: int, length: int,
                   pad_id: int, with_offsets: bool) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The arrays of one inference call, and each text's slot in its row.

    Arrays: ids, segment_ids, positions [rows, length]; `last` [rows, cap], the column of each
    slot's last token (−1: empty), slots in column order; offsets/seqlens when `with_offsets`
    (cuDNN). Text i's embedding is then the model's output at (row[i], slot[i])."""
    cap = row_text_cap(length)
    ids, seg, pos, offsets, seqlens = pack_rows(seqs, row, col, rows, length, pad_id, cap)
    last = np.where(seqlens > 0, offsets[:, :cap] + seqlens - 1, -1).astype(np.int32)
    arrays = {"ids": ids, "segment_ids": seg, "positions": pos, "last": last}
    if with_offsets:
        arrays.update(offsets=offsets, seqlens=seqlens)
    order = np.lexsort((col, row))
    starts = np.searchsorted(row[order], row[order])  # first position of each text's row in `order`
    slot = np.empty(len(row), np.int64)
    slot[order] = np.arange(len(row)) - starts
    return arrays, slot
