"""Pure functions of the seed: held-out rows, per-epoch source schedule, negative sampling.
Being functions of (seed, epoch, step) makes the pipeline random-access, so an iterator state
is just a step number and every host computes the same global batch. (Length buckets live in
`f2jax.data.batch`, shared with the Encoder.)"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import numpy as np

_SALT_SCHEDULE, _SALT_SHUFFLE, _SALT_NEG = 0x5C4E, 0x5AFF, 0x4E6


def split_rows(
    source: str, n: int, holdout: float, holdout_seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) row indices of a source: ceil(holdout * n) rows held out, chosen by
    the source name and `holdout_seed` only, so validation is the same for every training seed."""
    n_val = min(n, math.ceil(holdout * n)) if holdout > 0 else 0
    rng = np.random.default_rng([holdout_seed, zlib.crc32(source.encode())])
    perm = rng.permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def subsample(rows: np.ndarray, source: str, max_rows: int | None, seed: int = 0) -> np.ndarray:
    """At most `max_rows` rows per source (the reference samples 80,000), fixed by name+seed."""
    if max_rows is None or len(rows) <= max_rows:
        return rows
    rng = np.random.default_rng([seed, zlib.crc32(source.encode()), 1])
    return np.sort(rng.choice(rows, size=max_rows, replace=False))


def epoch_schedule(batches: Sequence[int], seed: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """(source index, batch index within that source) for every step of an epoch.

    The reference's rule: the next batch's source is drawn with weight = its number of batches
    per epoch, among the sources not yet exhausted; the epoch ends when all are exhausted.
    """
    nb = np.asarray(batches, dtype=np.int64)
    total = int(nb.sum())
    rng = np.random.default_rng([seed, epoch, _SALT_SCHEDULE])
    u = rng.random(total)
    left = nb.copy()
    active = np.flatnonzero(left > 0)
    cum = np.cumsum(nb[active])
    src = np.empty(total, np.int64)
    idx = np.empty(total, np.int64)
    for step in range(total):
        j = int(np.searchsorted(cum, u[step] * cum[-1], side="right"))
        s = int(active[j])
        src[step], idx[step] = s, nb[s] - left[s]
        left[s] -= 1
        if left[s] == 0:  # exhausted: drop out, renormalise over the rest
            active = np.delete(active, j)
            cum = np.cumsum(nb[active]) if len(active) else cum
    return src, idx


def shuffled_rows(rows: np.ndarray, seed: int, epoch: int, source_index: int) -> np.ndarray:
    """A source's training rows in this epoch's order."""
    rng = np.random.default_rng([seed, epoch, source_index, _SALT_SHUFFLE])
    return rows[rng.permutation(len(rows))]


def sample_negatives(
    negative_ids: np.ndarray, passage_ids: np.ndarray, k: int, *, random: bool, seed: Sequence[int]
) -> np.ndarray:
    """Doc ids [B, k] of hard negatives for a whole global batch.

    `random=False` (classification) takes the first k columns. Otherwise k are drawn without
    replacement, preferring distinct negatives that differ from the positive; a negative equal
    to the positive (or a repeat) is used only when a row has too few others; missing (-1) never.
    """
    b, n = negative_ids.shape
    if k > n:
        raise ValueError(f"{k} negatives requested, but the source has only {n} columns")
    if not random:
        chosen = negative_ids[:, :k]
    else:
        order = np.argsort(negative_ids, axis=1, kind="stable")
        srt = np.take_along_axis(negative_ids, order, axis=1)
        dup_sorted = np.zeros_like(srt, dtype=bool)
        dup_sorted[:, 1:] = srt[:, 1:] == srt[:, :-1]
        dup = np.zeros_like(dup_sorted)
        np.put_along_axis(dup, order, dup_sorted, axis=1)
        keys = np.random.default_rng([*seed, _SALT_NEG]).random((b, n))
        keys = keys + 1.0 * ((negative_ids == passage_ids[:, None]) | dup)
        keys = keys + 4.0 * (negative_ids < 0)
        pick = np.argsort(keys, axis=1, kind="stable")[:, :k]
        chosen = np.take_along_axis(negative_ids, pick, axis=1)
    if (chosen < 0).any():
        row = int(np.flatnonzero((chosen < 0).any(axis=1))[0])
        raise ValueError(f"batch row {row} has fewer than {k} negatives")
    return chosen

