"""`f2jax bench mine` helpers at toy sizes (the real numbers come from the command itself)."""

from __future__ import annotations

import argparse

from f2jax.bench.mine import add_mine_bench_parser, format_table, synthetic_pairs, topk_child


def test_synthetic_pairs_distinct() -> None:
    pairs = synthetic_pairs(300)
    assert len({p["passage"] for p in pairs}) == len({p["query"] for p in pairs}) == 300


def test_topk_child_reports_memory_and_rate() -> None:
    row = topk_child(n_corpus=2_000, n_queries=64, dim=16, k=20, query_block=32, corpus_block=256)
    assert row["queries"] == 64 and row["queries_per_s"] > 0 and row["peak_rss_mb"] > 0
    assert row["xla_temp_mb"] < row["full_score_matrix_mb"] + 1
    assert "top-k corpus" in format_table([row])


def test_parser_defaults() -> None:
    parser = argparse.ArgumentParser()
    add_mine_bench_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["mine", "--pairs", "100", "--topk-corpus", "1000,10000"])
    assert args.pairs == (100,) and args.topk_corpus == (1000, 10000) and args.shapes == "tiny,80m"
