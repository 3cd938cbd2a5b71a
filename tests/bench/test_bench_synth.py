"""The synthetic checkpoint writer produces a checkpoint the real loader accepts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from bench_shapes import TINY as BENCH_TINY
from safetensors.numpy import load_file

from f2jax.bench.synth import checkpoint_tensors, qwen3_config, write_checkpoint
from f2jax.hf.checkpoint import SafetensorsCheckpoint
from f2jax.hf.load import validate_checkpoint
from f2jax.model.config import Qwen3Config

TINY = BENCH_TINY


@pytest.mark.parametrize("shard_bytes", [None, 4096])
def test_checkpoint_matches_config_and_sizes(tmp_path, shard_bytes):
    cfg = qwen3_config(**TINY)
    ckpt = write_checkpoint(tmp_path, cfg, max_shard_bytes=shard_bytes)
    assert (len(ckpt.files) > 1) == (shard_bytes is not None)
    assert ckpt.disk_bytes == sum(f.stat().st_size for f in tmp_path.glob("*.safetensors"))
    raw = json.loads((tmp_path / "config.json").read_text())
    assert raw["architectures"] == ["Qwen3ForCausalLM"] and raw["tie_word_embeddings"] is True
    assert Qwen3Config.from_pretrained(tmp_path) == cfg
    assert validate_checkpoint(SafetensorsCheckpoint(tmp_path), cfg) == "model."

    tensors = {}
    for file in ckpt.files:
        tensors.update(load_file(str(file)))
    assert {k: v.shape for k, v in tensors.items()} == dict(checkpoint_tensors(cfg))
    values = np.concatenate([v.astype(np.float32).ravel() for v in tensors.values()])
    assert np.isfinite(values).all()
    assert np.abs(values).min() > 0.007 and np.abs(values).max() < 0.032
    assert len(np.unique(values)) > 100  # random, not constant
    if shard_bytes:
        index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
        assert index["metadata"]["total_size"] == sum(v.nbytes for v in tensors.values())
        assert set(index["weight_map"]) == set(tensors)


def test_float32_checkpoint(tmp_path):
    ckpt = write_checkpoint(tmp_path, qwen3_config(**TINY), dtype="float32")
    tensors = load_file(str(ckpt.files[0]))
    assert {v.dtype for v in tensors.values()} == {np.dtype(np.float32)}
