"""Pipeline throughput and padding efficiency (`f2jax bench data`).

Sequences counted per batch = queries + passages + hard negatives of this host's slice.
Padding efficiency = real tokens / computed tokens under three layouts of the same batches:
length buckets (the f2jax pipeline), each batch's own maximum (the reference trainer) and
packing into rows of `max_length` (`data.packing`, bucketed row counts). It depends on token
counts only, so the synthetic log-normal mix needs no tokenizer.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Iterable, Iterator

import numpy as np

from f2jax.data.batch import bucket_for, length_buckets
from f2jax.data.packing import packing_efficiency
from f2jax.data.pipeline import TRAIN_SMALLEST_BUCKET, DataSpec, make_dataset, make_pipeline
from f2jax.paths import Path

Lengths = tuple[np.ndarray, np.ndarray, np.ndarray]  # query [b], passage [b], negative [b, K] token counts


def bench_pipeline(data_dir: str | Path, *, global_batch_size: int = 64, steps: int = 50,
                   seed: int = 0, num_threads: int = 2, prefetch: int = 4, **kwargs) -> float:
    """Sequences per second served by the pipeline (after one warm-up batch)."""
    it = make_pipeline(data_dir, DataSpec(global_batch_size=global_batch_size, seed=seed, **kwargs),
                       num_threads=num_threads, prefetch=prefetch, process_index=0, process_count=1)
    next(it)
    seqs, start = 0, time.perf_counter()
    for _ in range(steps):
        b = next(it).arrays
        seqs += b.query_ids.shape[0] * (2 + b.negative_ids.shape[1])
    return seqs / (time.perf_counter() - start)


def efficiency(batches: Iterable[Lengths], max_length: int, *, row_multiple: int = 1,
               smallest: int = TRAIN_SMALLEST_BUCKET) -> dict[str, float]:
    """Real / computed tokens over `batches` for buckets, per-batch max and packing."""
    buckets = length_buckets(max_length, smallest)
    real = bucketed = own_max = packed = 0
    for fields in batches:
        lens = [np.minimum(np.asarray(x).reshape(-1), max_length) for x in fields]
        for x in lens:
            real += int(x.sum())
            bucketed += bucket_for(int(x.max()), buckets) * len(x)
            own_max += int(x.max()) * len(x)
        packed += packing_efficiency(np.concatenate(lens), max_length, row_multiple)[1]
    return {"buckets": real / bucketed, "per_batch_max": real / own_max, "packing": real / packed}


def padding_efficiency(data_dir: str | Path, *, global_batch_size: int = 64, seed: int = 0,
                       max_length: int | None = None, **kwargs) -> dict[str, float]:
    """`efficiency` of one epoch of the pipeline's batches (single process)."""
    spec = DataSpec(global_batch_size=global_batch_size, seed=seed, max_length=max_length, **kwargs)
    ds = make_dataset(data_dir, spec, num_epochs=1, process_index=0, process_count=1)
    width = max_length or _store_max_length(data_dir)

    def lengths() -> Iterator[Lengths]:
        for batch in ds:
            a = batch.arrays
            yield a.query_mask.sum(-1), a.passage_mask.sum(-1), a.negative_mask.sum(-1)

    return efficiency(lengths(), width)


def _store_max_length(data_dir: str | Path) -> int:
    from f2jax.data.store import TokenizedStore

    return int(TokenizedStore(data_dir).meta["max_length"])


def lognormal_lengths(steps: int = 200, *, batch: int = 64, negatives: int = 7, mean: float = 120.0,
                      max_length: int = 1024, sigma: float = 0.6, seed: int = 0) -> list[Lengths]:
    """Synthetic token counts, log-normal: queries short (a quarter of a passage's mean), passages
    and negatives long, `mean` tokens over all texts (before clipping to [1, max_length])."""
    rng = np.random.default_rng(seed)
    doc = mean * (2 + negatives) / (0.25 + 1 + negatives)  # mean over 1 query + (1 + K) documents

    def draw(m: float, shape: tuple[int, ...]) -> np.ndarray:
        raw = rng.lognormal(math.log(m) - sigma**2 / 2, sigma, size=shape)
        return np.clip(np.rint(raw), 1, max_length).astype(np.int64)

    return [(draw(doc / 4, (batch,)), draw(doc, (batch,)), draw(doc, (batch, negatives)))
            for _ in range(steps)]


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
        for scheme, value in padding_efficiency(tmp / "demo", global_batch_size=64,
                                                max_length=max_length).items():
            out[f"demo_padding_efficiency_{scheme}"] = value
        mix = lognormal_lengths(max_length=1024)
        out["lognormal_mean_tokens"] = float(np.concatenate([x.ravel() for b in mix for x in b]).mean())
        for scheme, value in efficiency(mix, 1024).items():
            out[f"lognormal_padding_efficiency_{scheme}"] = value
        if synthetic_rows:
            synthetic_source(tmp / "syn_raw", rows=synthetic_rows)
            t = time.perf_counter()
            tokenize_sources(tmp / "syn_raw", tmp / "syn", max_length=max_length)
            out["synthetic_rows"] = synthetic_rows
            out["synthetic_tokenize_s"] = time.perf_counter() - t
            out["synthetic_seq_per_s"] = bench_pipeline(tmp / "syn", global_batch_size=512, steps=10)
    return out
