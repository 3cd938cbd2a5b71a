"""Train-step and step-memory benchmarks at tiny sizes: they run, and f2jax matches PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

from f2jax.bench.cli import add_bench_parser
from f2jax.bench.step_memory import bench_step_memory
from f2jax.bench.train_step import bench_train_step, make_batch, torch_mrl_weights
from f2jax.train.losses import mrl_weights

TINY = dict(hidden=32, layers=1, heads=4, kv_heads=2, head_dim=8, intermediate=64, vocab=512)
TINY_HF = dict(num_hidden_layers=1, hidden_size=32, intermediate_size=64, num_attention_heads=4,
               num_key_value_heads=2, head_dim=8, vocab_size=512)


def test_batch_is_right_padded_with_eos_last():
    batch = make_batch(np.random.default_rng(0), 4, 3, 16, vocab=512)
    ids, mask = batch["negative_ids"], batch["negative_mask"]
    assert ids.shape == mask.shape == (4, 3, 16)
    lengths = mask.sum(-1)
    assert np.all(np.diff(mask, axis=-1) <= 0)  # ones then zeros
    assert np.all(np.take_along_axis(ids, lengths[..., None] - 1, -1) == 511)  # EOS = last id
    assert np.all(ids[mask == 0] == 0) and len(np.unique(lengths)) > 1


def test_torch_mrl_weights_match_f2jax():
    dims = (8, 16, 32, 64, 128)
    np.testing.assert_allclose(torch_mrl_weights(dims), mrl_weights(dims), rtol=1e-12)


def test_train_step_f2jax_matches_torch():
    r = bench_train_step(**TINY, batch=4, negatives=2, length=16, steps=2)
    assert r["first_loss_rel_diff"] <= 1e-4, (r["f2jax_first_loss"], r["torch_first_loss"])
    assert r["first_grad_norm_rel_diff"] <= 1e-4
    assert r["last_loss_rel_diff"] <= 1e-3  # after 2 AdamW updates on both sides
    assert r["f2jax_step_s"] > 0 and r["torch_step_s"] > 0 and r["f2jax_compile_s"] > 0
    assert r["real_tokens"] < r["padded_tokens"] == 4 * (2 + 2) * 16
    assert r["torch_threads"] == r["xla_threads"]


def test_step_memory_in_child_process():
    r = bench_step_memory(devices=4, meshes=[(2, 2, 1)], batch=4, negatives=1, length=8,
                          overrides=TINY_HF, timeout=300)
    assert r["devices"] == 4
    keys = ("argument", "output", "temp", "alias")
    sizes = {k: r[f"mesh_2x2x1_{k}_bytes"] for k in keys}
    assert all(v >= 0 for v in sizes.values()) and sizes["argument"] > 0
    assert r["mesh_2x2x1_total_bytes"] == sizes["argument"] + sizes["output"] + sizes["temp"] - sizes["alias"]
    assert 0 < r["mesh_2x2x1_param_per_device_bytes"] < r["mesh_2x2x1_param_bytes"]
    assert r["mesh_2x2x1_paper_total_bytes"] > 0


def test_step_memory_rejects_indivisible_batch():
    with pytest.raises(ValueError, match="divisible"):
        bench_step_memory(devices=4, meshes=[(4, 1, 1)], batch=6)


def test_cli_parses_train_and_step_memory():
    import argparse

    parser = argparse.ArgumentParser()
    add_bench_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "train", "--steps", "3", "--threads", "2"])
    assert (args.hidden, args.batch, args.negatives, args.length, args.steps) == (128, 16, 7, 128, 3)
    args = parser.parse_args(["bench", "step-memory", "--mesh", "4,16,1", "--mesh", "8,-1,1"])
    assert args.mesh == [(4, 16, 1), (8, -1, 1)] and args.devices == 64 and args.batch == 512
