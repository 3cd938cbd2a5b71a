"""Load-memory benchmark: byte accounting and the naive loader's equivalence."""

from __future__ import annotations

import jax
import numpy as np
from bench_shapes import TINY as BENCH_TINY
from flax import nnx

from f2jax.bench.load_memory import bench_load_memory
from f2jax.bench.load_probe import _load_naive
from f2jax.bench.synth import qwen3_config, write_checkpoint
from f2jax.hf.load import load_model
from f2jax.model.qwen3 import ModelOptions

TINY = BENCH_TINY


def test_bench_reports_consistent_bytes(tmp_path):
    cfg = qwen3_config(**TINY)
    result = bench_load_memory(cfg, max_shard_bytes=8192, workdir=tmp_path, keep=True)
    files = list(tmp_path.glob("*/ckpt/*.safetensors"))
    assert result["num_files"] == len(files) > 1
    assert result["disk_bytes"] == sum(f.stat().st_size for f in files)
    # bf16 on disk and in memory: the parameters are the data, the files add only headers
    assert result["param_bytes"] == 2 * cfg.num_params()
    assert 0 < result["disk_bytes"] - result["param_bytes"] < 4096 * len(files)
    assert result["peak_rss"] >= result["baseline_rss"] > 0
    assert result["peak_rss"] >= result["final_rss"]
    assert result["peak_over_disk"] == result["peak_rss"] / result["disk_bytes"]
    expected = (result["peak_rss"] - result["baseline_rss"]) / result["disk_bytes"]
    assert result["peak_minus_baseline_over_disk"] == expected
    assert result["within_target"] == (expected <= result["target_ratio"])


def test_naive_loader_builds_the_same_model(tmp_path):
    cfg = qwen3_config(**TINY)
    write_checkpoint(tmp_path, cfg, max_shard_bytes=8192)
    opts = ModelOptions(param_dtype="bfloat16", dtype="bfloat16")
    streamed = jax.tree.leaves(nnx.state(load_model(tmp_path, opts)))
    naive = jax.tree.leaves(nnx.state(_load_naive(tmp_path, opts)))
    assert len(streamed) == len(naive)
    for a, b in zip(streamed, naive, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
