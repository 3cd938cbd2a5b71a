"""Pipeline throughput and padding efficiency (`f2jax bench data`).

Sequences counted per batch = queries + passages + hard negatives of this host's slice.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from f2jax.data.pipeline import make_dataset, make_pipeline


def bench_pipeline(data_dir: str | Path, *, global_batch_size: int = 64, steps: int = 50,
                   seed: int = 0, num_threads: int = 2, prefetch: int = 4, **kwargs) -> float:
    """Sequences per second served by the pipeline (after one warm-up batch)."""
    it = make_pipeline(data_dir, global_batch_size=global_batch_size, seed=seed,
                       num_threads=num_threads, prefetch=prefetch,
                       process_index=0, process_count=1, **kwargs)
    next(it)
    seqs, start = 0, time.perf_counter()
    for _ in range(steps):
        b = next(it)
        seqs += b["query_ids"].shape[0] * (2 + b["negative_ids"].shape[1])
    return seqs / (time.perf_counter() - start)


def padding_efficiency(data_dir: str | Path, *, global_batch_size: int = 64, seed: int = 0,
                       **kwargs) -> dict[str, float]:
    """Real tokens / padded tokens over one epoch: buckets vs. each batch's own maximum."""
    ds = make_dataset(data_dir, global_batch_size=global_batch_size, seed=seed, num_epochs=1,
                      process_index=0, process_count=1, **kwargs)
    real = bucketed = own_max = 0
    for b in ds:
        for key in ("query", "passage", "negative"):
            mask = b[f"{key}_mask"].reshape(-1, b[f"{key}_mask"].shape[-1])
            lens = mask.sum(-1)
            real += int(lens.sum())
            bucketed += mask.size
            own_max += int(lens.max()) * len(lens)
    return {"buckets": real / bucketed, "per_batch_max": real / own_max}


def synthetic_source(out_dir: str | Path, rows: int = 100_000, negatives: int = 24,
                     seed: int = 0) -> Path:
    """A raw retrieval source of random word sequences (varied lengths) for benchmarking."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(5000)])
    n_docs = rows // 2
    docs = [" ".join(vocab[rng.integers(0, 5000, rng.integers(5, 120))]) for _ in range(n_docs)]
    cols = {
        "query": [" ".join(vocab[rng.integers(0, 5000, rng.integers(3, 30))]) + f" {i}"
                  for i in range(rows)],
        "passage": [docs[i % n_docs] for i in range(rows)],
    }
    for j in range(1, negatives + 1):
        cols[f"negative_{j}"] = [docs[k] for k in rng.integers(0, n_docs, rows)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), out / "synthetic.parquet")
    return out


def bench_data(*, synthetic_rows: int = 100_000, max_length: int = 512) -> dict[str, float]:
    """Tokenise + serve the bundled demo data and a synthetic source of `synthetic_rows` rows."""
    from f2jax.data.demo_build import demo_data_dir
    from f2jax.data.tokenize import tokenize_sources

    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        tokenize_sources(demo_data_dir(), tmp / "demo", max_length=max_length)
        out["demo_tokenize_s"] = time.perf_counter() - t
        out["demo_seq_per_s"] = bench_pipeline(tmp / "demo", global_batch_size=64)
        for scheme, value in padding_efficiency(tmp / "demo", global_batch_size=64).items():
            out[f"demo_padding_efficiency_{scheme}"] = value
        if synthetic_rows:
            synthetic_source(tmp / "syn_raw", rows=synthetic_rows)
            t = time.perf_counter()
            tokenize_sources(tmp / "syn_raw", tmp / "syn", max_length=max_length)
            out["synthetic_rows"] = synthetic_rows
            out["synthetic_tokenize_s"] = time.perf_counter() - t
            out["synthetic_seq_per_s"] = bench_pipeline(tmp / "syn", global_batch_size=512, steps=10)
    return out
