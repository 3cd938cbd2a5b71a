"""Train-step and step-memory benchmarks at tiny sizes: they run, and f2jax matches PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

from f2jax.bench.cli import add_bench_parser
from f2jax.bench.lengths import bucketed, check_lengths_mode, make_batch, sample_lengths
from f2jax.bench.step_memory import CPU_FAITHFUL_FLAG, _child_env, bench_step_memory, paper_estimate
from f2jax.bench.train_step import bench_train_step, shape_dims, torch_mrl_weights
from f2jax.losses import mrl_weights

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


def test_length_modes():
    rng = np.random.default_rng(0)
    assert np.all(sample_lengths(rng, "fixed", "doc", (5,), 64) == 64)
    for mode in ("demo", "lognormal:200"):
        q = sample_lengths(rng, mode, "query", (4000,), 1024)
        d = sample_lengths(rng, mode, "doc", (4000,), 1024)
        assert q.min() >= 2 and d.max() <= 1024 and q.mean() < d.mean()  # queries short, passages long
    d = sample_lengths(rng, "lognormal:200", "doc", (20000,), 4096)
    assert abs(d.mean() - 200) < 8 and abs(sample_lengths(rng, "lognormal:200", "query", (20000,), 4096).mean()
                                            - 50) < 3
    assert sample_lengths(rng, "demo", "doc", (1000,), 16).max() == 16  # clipped to the padded length
    for bad in ("lognormal:x", "lognormal:1", "zipf"):
        with pytest.raises(ValueError, match="lengths"):
            check_lengths_mode(bad)


def test_bucketed_fields_cut_to_the_trainers_buckets():
    batch = make_batch(np.random.default_rng(0), 8, 3, 512, vocab=512, lengths="demo")
    cut = bucketed(batch, 512)
    for f in ("query", "passage", "negative"):
        width, longest = cut[f"{f}_mask"].shape[-1], int(batch[f"{f}_mask"].sum(-1).max())
        assert longest <= width and (width in (32, 64, 128, 256, 512))
        assert width == 32 or longest > width // 2
        np.testing.assert_array_equal(cut[f"{f}_ids"], batch[f"{f}_ids"][..., :width])


def test_shape_presets_and_overrides():
    assert shape_dims()["hidden"] == 128 and shape_dims("tiny", layers=4)["layers"] == 4
    d = shape_dims("0.6b", layers=2)
    assert (d["hidden"], d["layers"], d["heads"], d["kv_heads"], d["head_dim"]) == (1024, 2, 16, 8, 128)
    with pytest.raises(ValueError, match="shape"):
        shape_dims("2b")


def test_packed_train_step_matches_torch_on_fewer_computed_tokens():
    """f2jax packed (rows of `length`) vs PyTorch padded per group: same texts, same loss."""
    common = dict(**TINY, batch=4, negatives=3, length=64, lengths="demo", steps=1)
    packed = bench_train_step(**common, packing=True)
    padded = bench_train_step(**common, torch=False)
    assert packed["first_loss_rel_diff"] <= 1e-4, (packed["f2jax_first_loss"], packed["torch_first_loss"])
    assert packed["first_grad_norm_rel_diff"] <= 1e-4
    assert packed["real_tokens"] == padded["real_tokens"]
    assert packed["padded_tokens"] == packed["packed_rows"] * 64 < padded["padded_tokens"]
    assert packed["model_flops_per_step_real"] == padded["model_flops_per_step_real"]
    assert packed["model_flops_per_step_padded"] < padded["model_flops_per_step_padded"]


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
    assert r["torch_threads"] == r["xla_threads"] and r["torch_attn"] == "sdpa"
    assert r["ratio_step_s"] == pytest.approx(r["f2jax_step_s"] / r["torch_step_s"])
    assert r["ratio_tokens_per_s"] == pytest.approx(1 / r["ratio_step_s"])
    assert r["f2jax_mfu_real"] is None and r["ratio_mfu_real"] is None  # no peak on CPU
    assert r["f2jax_real_gflop_per_s"] > 0 and r["model_flops_per_step_real"] < r["model_flops_per_step_padded"]
    # no remat, `xla` attention: hardware = model FLOPs on real tokens, on both sides
    assert r["f2jax_hardware_flops_per_step"] == r["torch_hardware_flops_per_step"] == r["model_flops_per_step_real"]


def test_train_step_demo_lengths_remat_without_torch():
    r = bench_train_step(**TINY, batch=4, negatives=2, length=64, lengths="demo", steps=1, remat="full",
                         torch=False)
    assert "torch_step_s" not in r and r["ratio_step_s"] is None
    assert r["padded_widths"].startswith("32,") and r["padded_tokens"] < 4 * (2 + 2) * 64
    assert 3 * r["f2jax_hardware_flops_per_step"] == 4 * r["model_flops_per_step_real"]  # 4x forward, not 3x
    assert np.isfinite(r["f2jax_first_loss"]) and r["f2jax_mem_temp_bytes"] > 0


def test_step_memory_in_child_process():
    r = bench_step_memory(devices=4, meshes=[(2, 2, 1)], batch=8, negatives=1, length=8,
                          overrides=TINY_HF, timeout=300, seq_chunk=1)
    assert r["devices"] == 4 and r["cpu_faithful"] and CPU_FAITHFUL_FLAG in r["xla_flags"] and r["seq_chunk"] == 1
    keys = ("argument", "output", "temp", "alias")
    sizes = {k: r[f"mesh_2x2x1_{k}_bytes"] for k in keys}
    assert all(v >= 0 for v in sizes.values()) and sizes["argument"] > 0
    assert r["mesh_2x2x1_total_bytes"] == sizes["argument"] + sizes["output"] + sizes["temp"] - sizes["alias"]
    assert 0 < r["mesh_2x2x1_param_per_device_bytes"] < r["mesh_2x2x1_param_bytes"]
    assert r["mesh_2x2x1_paper_total_bytes"] > 0


def test_paper_estimate_follows_the_attention_path():
    from f2jax.bench.synth import qwen3_config

    cfg = qwen3_config(**{**TINY_HF, "num_attention_heads": 2, "num_key_value_heads": 1})
    est = {a: paper_estimate(cfg, batch=8, negatives=1, length=1024, dp=1, param_per_device=0, attention=a)
           ["paper_recompute_bytes"] for a in ("xla", "dot_product", "chunked", "cudnn", "splash")}
    mlp = 8 * 1024 * 64 * 2 * 6
    assert est["cudnn"] == est["splash"] == mlp
    assert est["dot_product"] == mlp + 8 * 2 * 1024 * 1024 * 10
    # block-causal xla at T = 1024: 16 blocks of 64 queries cover T (T + 64) / 2 logits
    assert est["xla"] == mlp + 8 * 2 * (1024 + 64) // 2 * 1024 * 10
    assert est["chunked"] == mlp + 8 * 2 * 256 * 1024 * 10
    # seq_chunk: 8 negatives a device, at most 3 through a layer at once -> 4 chunks of 2
    chunked = paper_estimate(cfg, batch=8, negatives=1, length=1024, dp=1, param_per_device=0,
                             attention="chunked", seq_chunk=3)
    assert chunked["paper_recompute_bytes"] * 4 == est["chunked"]


def test_child_env_merges_disabled_passes(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_disable_hlo_passes=foo --xla_force_host_platform_device_count=2")
    flags = _child_env(8)["XLA_FLAGS"].split()
    assert "--xla_disable_hlo_passes=foo,while-loop-invariant-code-motion" in flags
    assert flags[-1] == "--xla_force_host_platform_device_count=8" and len(flags) == 2
    assert _child_env(8, cpu_faithful=False)["XLA_FLAGS"].split()[0] == "--xla_disable_hlo_passes=foo"


def test_step_memory_rejects_indivisible_batch():
    with pytest.raises(ValueError, match="divisible"):
        bench_step_memory(devices=4, meshes=[(4, 1, 1)], batch=6)


def test_cli_parses_train_and_step_memory():
    import argparse

    from f2jax.bench.cli_step import train_defaults

    parser = argparse.ArgumentParser()
    add_bench_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "train", "--steps", "3", "--threads", "2"])
    train_defaults(args)  # unset shape/batch/length flags: the plain defaults (or --realistic's)
    assert (args.shape, args.hidden, args.batch, args.negatives, args.length, args.steps) == (
        "tiny", None, 16, 7, 128, 3)
    assert args.torch and not args.packing and args.lengths == "uniform" and args.dtype == "auto"
    args = parser.parse_args(["bench", "train", "--shape", "0.6b", "--lengths", "lognormal:300", "--no-torch",
                              "--attention", "chunked", "--remat", "full", "--dtype", "bfloat16"])
    assert (args.shape, args.lengths, args.torch, args.attention, args.remat) == (
        "0.6b", "lognormal:300", False, "chunked", "full")
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "train", "--lengths", "zipf"])
    args = parser.parse_args(["bench", "step-memory", "--mesh", "4,16,1", "--mesh", "8,-1,1"])
    assert args.mesh == [(4, 16, 1), (8, -1, 1)] and args.devices == 64 and args.batch == 512
    assert args.cpu_faithful and args.seq_chunk == 4
    assert parser.parse_args(["bench", "train", "--seq-chunk", "2"]).seq_chunk == 2
    assert not parser.parse_args(["bench", "step-memory", "--no-cpu-faithful"]).cpu_faithful
