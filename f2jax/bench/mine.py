"""`f2jax bench mine`: mining throughput (queries/s, corpus passages/s) and peak host memory.

Each measurement runs in a fresh process so its VmHWM (the kernel's peak RSS) is its own. The
full pipeline (encode corpus, encode queries, blocked top-k, rules, write) runs on synthetic
pairs of real text at a random model's shape, timed after a warm-up on a subset so compilation
is excluded; the top-k stage alone runs on random unit embeddings, so memory at 100k passages
is affordable on a small CPU host. Wire as `add_mine_bench_parser(bench_subparsers)`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

from f2jax.paths import Path

MODEL_SHAPES = ("tiny", "80m")


def synthetic_pairs(n: int, seed: int = 0) -> list[dict[str, str]]:
    """`n` distinct (query, passage) pairs of real English (stdlib docstrings), varied lengths."""
    from f2jax.bench.texts import stdlib_texts

    queries = stdlib_texts(n, min_chars=20, max_chars=160, seed=seed)
    passages = stdlib_texts(n, min_chars=60, max_chars=600, seed=seed + 1)
    return [{"query": f"{q} (#{i})", "passage": f"{p} (doc {i})"} for i, (q, p) in enumerate(zip(queries, passages,
                                                                                                   strict=True))]


def make_model(shape: str, out: Path) -> Path:
    """A random Qwen3 at the tiny (hidden 128, 2 layers) or the 80m student shape (needs torch)."""
    from f2jax.testing import make_tiny_qwen3, save_random_qwen3

    if shape == "tiny":
        return make_tiny_qwen3(out, hidden=128, layers=2)
    from f2jax.model.presets import SHAPES

    return save_random_qwen3(out, {**SHAPES[shape], "max_position_embeddings": 2048})[0]


def pipeline_child(model: str, n_pairs: int, batch_size: int, max_length: int, work: str) -> dict[str, Any]:
    """In this process: warm up on a subset, then mine `n_pairs` pairs; timings and peak RSS."""
    import pandas as pd

    import f2jax
    from f2jax.bench.rss import reset_peak, status
    from f2jax.jobs.mine import MineParams, mine_source

    work_dir = Path(work)
    rows = synthetic_pairs(n_pairs)
    for name, part in (("warm", rows[: min(512, n_pairs)]), ("pairs", rows)):
        (work_dir / name).mkdir(parents=True, exist_ok=True)
        pd.DataFrame(part).to_parquet(work_dir / name / f"{name}.parquet")
    encoder = f2jax.load(model, max_length=max_length)
    params = MineParams(max_score=0.999, margin=1.0)  # random weights: keep the rules from emptying rows
    kwargs = {"batch_size": batch_size, "min_negatives": 0}
    mine_source(encoder, work_dir / "warm", work_dir / "warm_out", params, **kwargs)
    base = status()
    reset_peak()
    start = time.perf_counter()
    report = mine_source(encoder, work_dir / "pairs", work_dir / "out", params, **kwargs)
    total = time.perf_counter() - start
    return {"stage": "pipeline", "corpus": report["corpus"], "queries": report["unique_queries"],
            "total_s": total, **report["throughput"], "timing_s": report["timing_s"],
            "rss_before_mb": base.get("VmRSS", 0) / 2**20, "peak_rss_mb": status()["VmHWM"] / 2**20}


def topk_child(n_corpus: int, n_queries: int, dim: int, k: int, query_block: int, corpus_block: int) -> dict:
    """In this process: the blocked top-k + rules on random unit embeddings; time and peak RSS."""
    from f2jax.bench.rss import reset_peak, status
    from f2jax.jobs.mine import MineParams, mine_embeddings
    from f2jax.jobs.topk import block_step_memory

    rng = np.random.default_rng(0)
    q = rng.standard_normal((n_queries, dim), dtype=np.float32)
    c = rng.standard_normal((n_corpus, dim), dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    rows = np.arange(n_queries)
    params = MineParams(top_k=k)
    mine_embeddings(q[:query_block], c, rows[:query_block], rows[:query_block], params,
                    query_block=query_block, corpus_block=corpus_block)  # compile
    base = status()
    reset_peak()
    start = time.perf_counter()
    mine_embeddings(q, c, rows, rows, params, query_block=query_block, corpus_block=corpus_block)
    seconds = time.perf_counter() - start
    peak = status()["VmHWM"]
    return {"stage": "topk", "corpus": n_corpus, "queries": n_queries, "dim": dim, "seconds": seconds,
            "queries_per_s": n_queries / seconds, "rss_before_mb": base.get("VmRSS", 0) / 2**20,
            "peak_rss_mb": peak / 2**20, "peak_over_before_mb": (peak - base.get("VmRSS", 0)) / 2**20,
            "corpus_embeddings_mb": c.nbytes / 2**20,
            "full_score_matrix_mb": n_queries * n_corpus * 4 / 2**20,
            "xla_temp_mb": block_step_memory(n_corpus, dim, k, query_block=query_block,
                                             corpus_block=corpus_block)["temp_bytes"] / 2**20}


def _in_child(kind: str, **kwargs: Any) -> dict:
    code = ("import json, sys; from f2jax.bench import mine as b; "
            f"print('RESULT ' + json.dumps(b.{kind}_child(**json.loads(sys.argv[1]))))")
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(kwargs)], capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"{kind} benchmark failed:\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1][7:])


def bench_mine(shapes: tuple[str, ...] = MODEL_SHAPES, n_pairs: tuple[int, ...] = (10_000, 1_000),
               topk_corpus: tuple[int, ...] = (10_000, 100_000), topk_queries: int = 2_000, topk_dim: int = 320,
               batch_size: int = 64, max_length: int = 128, query_block: int = 256,
               corpus_block: int = 4096) -> list[dict]:
    """Pipeline rows per model shape (`n_pairs[i]` pairs for `shapes[i]`; the last count repeats),
    then top-k-stage rows per corpus size, each in a fresh process."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, shape in enumerate(shapes):
            n = n_pairs[min(i, len(n_pairs) - 1)]
            model = make_model(shape, Path(tmp) / shape)
            row = _in_child("pipeline", model=str(model), n_pairs=n, batch_size=batch_size,
                            max_length=max_length, work=str(Path(tmp) / f"work_{shape}"))
            results.append({"shape": shape, **row})
        for n in topk_corpus:
            results.append(_in_child("topk", n_corpus=n, n_queries=topk_queries, dim=topk_dim, k=100,
                                     query_block=query_block, corpus_block=corpus_block))
    return results


def format_table(results: list[dict]) -> str:
    lines = []
    for r in results:
        if r["stage"] == "pipeline":
            lines.append(f"pipeline {r['shape']:>5}: corpus {r['corpus']} passages/s "
                         f"{r['corpus_passages_per_s']:.1f}, queries {r['queries']} queries/s "
                         f"{r['queries_per_s']:.1f} (top-k {r['topk_queries_per_s']:.0f}/s), "
                         f"peak RSS {r['peak_rss_mb']:.0f} MB (before {r['rss_before_mb']:.0f} MB)")
        else:
            lines.append(f"top-k corpus {r['corpus']:>7} x {r['queries']} queries (d={r['dim']}): "
                         f"{r['queries_per_s']:.0f} queries/s, peak RSS {r['peak_rss_mb']:.0f} MB "
                         f"(+{r['peak_over_before_mb']:.0f} MB over before; corpus {r['corpus_embeddings_mb']:.0f} MB,"
                         f" XLA temp {r['xla_temp_mb']:.1f} MB, full matrix would be "
                         f"{r['full_score_matrix_mb']:.0f} MB)")
    return "\n".join(lines)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def add_mine_bench_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `mine` under `f2jax bench`."""
    p = subparsers.add_parser("mine", help="hard-negative mining throughput and peak host memory")
    p.add_argument("--shapes", default=",".join(MODEL_SHAPES), help="model shapes: tiny,80m")
    p.add_argument("--pairs", type=_ints, default=(10_000, 1_000),
                   help="pairs mined end to end, one count per shape (default 10000,1000: 80m is slow on CPU)")
    p.add_argument("--topk-corpus", type=_ints, default=(10_000, 100_000), help="corpus sizes, top-k stage")
    p.add_argument("--topk-queries", type=int, default=2_000)
    p.add_argument("--topk-dim", type=int, default=320)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--json", default=None, metavar="OUT", help="also write the results as JSON")
    p.set_defaults(func=run_from_args)
    return p


def run_from_args(args: argparse.Namespace) -> int:
    shapes = tuple(s for s in args.shapes.split(",") if s)
    results = bench_mine(shapes, args.pairs, args.topk_corpus, args.topk_queries, args.topk_dim,
                         args.batch_size, args.max_length)
    print(format_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m f2jax.bench.mine")
    add_mine_bench_parser(parser.add_subparsers(dest="command", required=True))
    cli_args = parser.parse_args(["mine", *sys.argv[1:]])
    sys.exit(cli_args.func(cli_args))
