"""Token lengths and random batches for the train-step benchmark (`f2jax bench train --lengths`).

Modes (every length is clipped to [2, length]; the last real token is EOS):
  `fixed`          every text is `length` tokens (no padding anywhere);
  `uniform`        uniform in [length/4, length], the first text of each field full (the
                   benchmark's historical default, so each field's padded width is `length`);
  `demo`           the bundled demo data's lengths (`f2jax.data.demo_data_dir()`, tokenised once
                   with the Qwen3 tokenizer, queries with their instruction, + EOS): sampled from
                   the 21 stored quantiles below by inverse-CDF interpolation;
  `lognormal:MEAN` log-normal (sigma 0.6) with mean MEAN tokens for passages and negatives, and
                   mean MEAN/4 for queries (queries short, passages long).
"""

from __future__ import annotations

import math

import numpy as np

from f2jax.model.presets import QWEN3_EOS_ID, QWEN3_FIRST_SPECIAL_ID

LENGTH_MODES = ("fixed", "uniform", "demo", "lognormal:MEAN")
LOGNORMAL_SIGMA = 0.6
QUERY_MEAN_FRACTION = 0.25  # lognormal: query mean = MEAN / 4

# Percentiles 0, 5, ..., 100 of token counts in the bundled demo data (3 sources: 5,263 instructed
# queries; 81,895 passages + hard negatives, each as often as a row names it), Qwen3 tokenizer, EOS
# included. Means: queries 22.8, documents 44.1 tokens. Recomputed 2026-11-27 from
# f2jax/data/demo/*.parquet; the demo is small-text heavy (CLDR labels and translations).
DEMO_QUERY_QUANTILES = (14, 15, 16, 16, 17, 17, 18, 18, 18, 19, 20, 21, 22, 23, 25, 26, 28, 30, 32, 37, 152)
DEMO_DOC_QUANTILES = (2, 3, 3, 4, 4, 4, 5, 5, 6, 7, 9, 13, 30, 46, 61, 77, 101, 125, 138, 151, 269)


def check_lengths_mode(mode: str) -> str:
    """`mode` if it names a length mix (`lognormal:MEAN` with MEAN > 1), else ValueError."""
    if mode in ("fixed", "uniform", "demo"):
        return mode
    if mode.startswith("lognormal:"):
        try:
            mean = float(mode.split(":", 1)[1])
        except ValueError:
            mean = 0.0
        if mean > 1:
            return mode
    raise ValueError(f"lengths must be one of {LENGTH_MODES} (MEAN > 1 tokens), got {mode!r}")


def sample_lengths(rng: np.random.Generator, mode: str, kind: str, shape: tuple[int, ...],
                   length: int) -> np.ndarray:
    """Token counts of `shape` texts of `kind` ('query' or 'doc') under `mode`, in [2, length]."""
    check_lengths_mode(mode)
    if mode == "fixed":
        return np.full(shape, length, np.int64)
    if mode == "uniform":
        lengths = rng.integers(max(2, length // 4), length + 1, size=shape)
        lengths.reshape(-1)[0] = length
        return lengths
    if mode == "demo":
        table = DEMO_QUERY_QUANTILES if kind == "query" else DEMO_DOC_QUANTILES
        u = rng.random(size=shape)
        raw = np.interp(u, np.linspace(0, 1, len(table)), np.asarray(table, np.float64))
    else:
        mean = float(mode.split(":", 1)[1]) * (QUERY_MEAN_FRACTION if kind == "query" else 1.0)
        mu = math.log(mean) - LOGNORMAL_SIGMA**2 / 2  # E[lognormal(mu, s)] = exp(mu + s²/2)
        raw = rng.lognormal(mu, LOGNORMAL_SIGMA, size=shape)
    return np.clip(np.rint(raw), 2, length).astype(np.int64)


def make_batch(rng: np.random.Generator, batch: int, negatives: int, length: int, vocab: int,
               lengths: str = "uniform") -> dict[str, np.ndarray]:
    """Right-padded real-token ids [.., length] (EOS last, pad id 0) with `lengths`-mode token counts."""
    eos = QWEN3_EOS_ID if vocab > QWEN3_EOS_ID else vocab - 1
    top = min(vocab - 1, QWEN3_FIRST_SPECIAL_ID)

    def field(shape: tuple[int, ...], kind: str) -> tuple[np.ndarray, np.ndarray]:
        n = sample_lengths(rng, lengths, kind, shape, length)
        ids = rng.integers(0, top, size=(*shape, length)).astype(np.int32)
        pos = np.arange(length)
        ids = np.where(pos == n[..., None] - 1, eos, ids)
        mask = (pos < n[..., None]).astype(np.int32)
        return ids * mask, mask

    out: dict[str, np.ndarray] = {}
    for name, shape, kind in (("query", (batch,), "query"), ("passage", (batch,), "doc"),
                              ("negative", (batch, negatives), "doc")):
        out[f"{name}_ids"], out[f"{name}_mask"] = field(shape, kind)
    return out


def bucketed(batch_np: dict[str, np.ndarray], length: int, smallest: int = 32) -> dict[str, np.ndarray]:
    """Each field cut to the trainer's length bucket of its longest text (`f2jax.data.batch`):
    powers of two from `smallest`, then `length`; what the f2jax pipeline feeds the step."""
    from f2jax.data.batch import bucket_for, length_buckets

    buckets = length_buckets(length, smallest)
    out = {}
    for f in ("query", "passage", "negative"):
        width = bucket_for(int(batch_np[f"{f}_mask"].sum(-1).max()), buckets)
        for part in ("ids", "mask"):
            out[f"{f}_{part}"] = np.ascontiguousarray(batch_np[f"{f}_{part}"][..., :width])
    return out
