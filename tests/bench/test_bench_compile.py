"""Compile benchmark: every size gets positive timings and the ratio is theirs."""

from __future__ import annotations

import pytest
from bench_shapes import TINY as BENCH_TINY

from f2jax.bench.compile import bench_compile, compile_times
from f2jax.bench.synth import qwen3_config
from f2jax.model.qwen3 import ModelOptions

TINY = {**BENCH_TINY, "num_hidden_layers": 1}


def test_compile_times_forward_and_backward():
    times = compile_times(qwen3_config(**TINY), ModelOptions(), batch=1, seq_len=8)
    assert set(times) == {
        f"{p}_{k}_s" for p in ("fwd", "fwd_bwd") for k in ("lower", "compile", "total")
    }
    assert all(v > 0 for v in times.values())
    assert times["fwd_total_s"] == pytest.approx(times["fwd_lower_s"] + times["fwd_compile_s"])


def test_bench_ratio_is_deep_over_shallow():
    result = bench_compile(
        qwen3_config(**TINY), [1, 3], batch=1, seq_len=8, backward=False, warm_up=False
    )
    assert result["L1_fwd_total_s"] > 0 and result["L3_fwd_total_s"] > 0
    assert result["fwd_ratio_L3_over_L1"] == result["L3_fwd_total_s"] / result["L1_fwd_total_s"]
    assert "fwd_bwd_ratio_L3_over_L1" not in result
