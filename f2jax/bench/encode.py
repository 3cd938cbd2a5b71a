"""Encode-throughput benchmark: `Encoder.encode` vs sentence-transformers on the same weights.

Both load the same f2jax export (so the comparison also checks the export), encode the same
real texts, and are timed after a warm-up pass (JAX compilation is reported separately as
`f2jax_warmup_s`). Padding efficiency of both batching schemes is reported because on CPU
throughput is roughly proportional to padded tokens.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from f2jax.bench.texts import stdlib_texts
from f2jax.paths import Path
from f2jax.testing import make_tiny_qwen3


def _best_time(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def padded_tokens_f2jax(lengths: Sequence[int], batch_size: int, buckets: Sequence[int]) -> int:
    """Tokens the Encoder computes: length-sorted batches padded to bucket x batch-bucket."""
    from f2jax.encode import batch_bucket, bucket_for

    ordered = sorted(lengths, reverse=True)
    total = 0
    for start in range(0, len(ordered), batch_size):
        rows = ordered[start : start + batch_size]
        total += bucket_for(rows[0], buckets) * batch_bucket(len(rows), batch_size)
    return total


def padded_tokens_st(texts: Sequence[str], lengths: Sequence[int], batch_size: int) -> int:
    """Tokens sentence-transformers computes: sorted by character length, padded to batch max."""
    order = np.argsort([-len(t) for t in texts], kind="stable")
    total = 0
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        total += max(lengths[i] for i in rows) * len(rows)
    return total


def bench_encode(
    n_texts: int = 512,
    batch_size: int = 32,
    *,
    hidden: int = 128,
    layers: int = 2,
    heads: int = 4,
    kv_heads: int = 2,
    max_length: int = 512,
    repeats: int = 3,
    workdir: str | Path | None = None,
) -> dict[str, Any]:
    """Texts/s of f2jax and sentence-transformers (float32, CPU), their ratio, cosine agreement."""
    import torch
    from sentence_transformers import SentenceTransformer

    import f2jax
    from f2jax.encode import Encoder
    from f2jax.hf.load import load_model
    from f2jax.tokenizer import load_tokenizer, tokenize

    texts = stdlib_texts(n_texts)
    with tempfile.TemporaryDirectory(prefix="f2jax-bench-enc-", dir=workdir) as tmp:
        hf_dir = make_tiny_qwen3(
            Path(tmp) / "hf",
            hidden=hidden,
            layers=layers,
            heads=heads,
            kv_heads=kv_heads,
            with_tokenizer=False,
        )
        source = Encoder(load_model(hf_dir), load_tokenizer(), max_length=max_length)
        export = source.save_pretrained(Path(tmp) / "export")
        del source
        encoder = f2jax.load(export, max_length=max_length)
        model = SentenceTransformer(str(export), device="cpu")
        run_f2 = lambda: encoder.encode(texts, batch_size=batch_size)
        run_st = lambda: model.encode(
            texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True
        )
        warm_f2, _ = _best_time(run_f2, 1)
        warm_st, _ = _best_time(run_st, 1)
        f2_s = st_s = float("inf")
        for _ in range(repeats):  # interleaved, so background load hits both alike
            seconds, f2_vecs = _best_time(run_f2, 1)
            f2_s = min(f2_s, seconds)
            seconds, st_vecs = _best_time(run_st, 1)
            st_s = min(st_s, seconds)
        tok_s, ids = _best_time(lambda: tokenize(encoder.tokenizer, texts, max_length), repeats)

    lengths = [len(t) for t in ids]
    cosine = np.sum(f2_vecs * np.asarray(st_vecs, np.float32), axis=-1)
    return {
        "texts": len(texts),
        "batch_size": batch_size,
        "hidden": hidden,
        "layers": layers,
        "mean_tokens": float(np.mean(lengths)),
        "max_tokens": int(max(lengths)),
        "torch_threads": torch.get_num_threads(),
        "f2jax_warmup_s": warm_f2,
        "f2jax_s": f2_s,
        "f2jax_texts_per_s": len(texts) / f2_s,
        "f2jax_tokenize_s": tok_s,
        "f2jax_padded_tokens": padded_tokens_f2jax(lengths, batch_size, encoder.buckets),
        "st_warmup_s": warm_st,
        "st_s": st_s,
        "st_texts_per_s": len(texts) / st_s,
        "st_padded_tokens": padded_tokens_st(texts, lengths, batch_size),
        "real_tokens": int(sum(lengths)),
        "speedup_f2jax_over_st": st_s / f2_s,
        "cosine_min": float(cosine.min()),
        "cosine_mean": float(cosine.mean()),
    }
