"""Train-step benchmark (`f2jax bench train`): the f2jax jitted step vs the reference PyTorch step.

Both sides start from one random Hugging Face `Qwen3Model` (built with transformers, saved,
loaded into f2jax with `f2jax.hf.load_model`), see one batch (random real-token ids with a
`--lengths` mix, `f2jax.bench.lengths`; right padding, EOS last), and run the F2LLM objective
and AdamW after clipping (`f2jax.bench.torch_reference`). Each side pads as its trainer does:
f2jax each field to its length bucket (powers of two from 32, then `length`), PyTorch each text
group to its own longest text. Steps are timed interleaved (f2jax, torch, f2jax, ...) so
background load hits both alike; compile is reported separately. Figures: median step time,
real and padded tokens/s, model FLOPs per step (`f2jax.bench.flops`, forward + backward,
attention included), MFU on real tokens and HFU (remat recompute counted) against the chip's
dense bf16 peak (achieved GFLOP/s on CPU, where no peak is known), compiled memory per device,
and `ratio_*` = f2jax / PyTorch for each.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from typing import Any

import numpy as np

from f2jax.bench.lengths import bucketed, check_lengths_mode, make_batch
from f2jax.bench.torch_reference import (  # noqa: F401 - re-exported (gpu_check, tests)
    TorchStep,
    build_hf_model,
    pick_torch_attn,
    torch_mrl_weights,
    torch_objective,
)
from f2jax.compiled_memory import FIELDS, compiled_memory
from f2jax.model.presets import QWEN3_VOCAB_SIZE, SHAPES
from f2jax.paths import Path

# `--shape tiny`: the benchmark's historical default; the rest are `f2jax.model.presets.SHAPES`.
TINY_SHAPE = dict(hidden=128, layers=2, heads=4, kv_heads=2, head_dim=32, intermediate=256, vocab=QWEN3_VOCAB_SIZE)
TRAIN_SHAPES = ("tiny", *SHAPES)
_FIELDS = ("query", "passage", "negative")


def available_cores() -> int:
    """Cores this process may run on: what XLA:CPU sizes its intra-op thread pool from."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def shape_dims(shape: str | None = None, **overrides: int | None) -> dict[str, int]:
    """hidden/layers/heads/kv_heads/head_dim/intermediate/vocab of a named shape, non-None overrides on top."""
    if shape is None or shape == "tiny":
        base = dict(TINY_SHAPE)
    elif shape in SHAPES:
        s = SHAPES[shape]
        base = dict(hidden=s["hidden_size"], layers=s["num_hidden_layers"], heads=s["num_attention_heads"],
                    kv_heads=s["num_key_value_heads"], head_dim=s["head_dim"],
                    intermediate=s["intermediate_size"], vocab=s["vocab_size"])
    else:
        raise ValueError(f"shape must be one of {TRAIN_SHAPES}, got {shape!r}")
    unknown = set(overrides) - set(base)
    if unknown:
        raise TypeError(f"unknown shape keys {sorted(unknown)}")
    return {**base, **{k: int(v) for k, v in overrides.items() if v is not None}}


def _memory_analysis(compiled: Any) -> dict[str, int | None]:
    """XLA's compiled-step buffer sizes per device, as f2jax_mem_* (None where the backend reports none)."""
    mem = compiled_memory(compiled) or dict.fromkeys([f"{f}_bytes" for f in FIELDS] + ["total_bytes"])
    return {f"f2jax_mem_{key}": value for key, value in mem.items()}


def _lengths(arrays: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, int]]:
    """Per field: (real token counts, padded width)."""
    return {f: (arrays[f"{f}_mask"].reshape(-1, arrays[f"{f}_mask"].shape[-1]).sum(-1),
                arrays[f"{f}_mask"].shape[-1]) for f in _FIELDS}


def flops_report(cfg: Any, f2jax_fields: dict[str, tuple[np.ndarray, int]],
                 torch_fields: dict[str, tuple[np.ndarray, int]] | None, *, remat: str, kernel: str,
                 seconds: dict[str, float], device_kind: str, packed_rows: int | None = None) -> dict[str, Any]:
    """Model FLOPs per step (real and padded), hardware FLOPs with remat recompute, and per side
    TFLOP/s, MFU (model FLOPs on real tokens) and HFU (hardware FLOPs on real tokens) vs the peak.
    `packed_rows`: f2jax computed that many rows of each field's width instead of padded fields."""
    from f2jax.bench.flops import FLOPS_NOTE, hardware_train_flops, peak_bf16_flops, train_flops
    from f2jax.model.attention import CHUNK_QUERIES

    real_lengths = np.concatenate([n for n, _ in f2jax_fields.values()])
    real = train_flops(cfg, real_lengths)
    out: dict[str, Any] = {
        "model_flops_per_step_real": real,
        "model_flops_per_step_padded": (
            train_flops(cfg, np.full(packed_rows, max(w for _, w in f2jax_fields.values()))) if packed_rows
            else sum(train_flops(cfg, np.full(n.shape, w)) for n, w in f2jax_fields.values())),
        "flops_note": FLOPS_NOTE, "device_kind": device_kind, "peak_bf16_flops": peak_bf16_flops(device_kind)}
    out["f2jax_hardware_flops_per_step"] = sum(
        hardware_train_flops(cfg, n, remat=remat, attention_recomputed=kernel == "chunked" and w > CHUNK_QUERIES)
        for n, w in f2jax_fields.values())
    if torch_fields is not None:
        out["torch_model_flops_per_step_padded"] = sum(
            train_flops(cfg, np.full(n.shape, w)) for n, w in torch_fields.values())
        out["torch_hardware_flops_per_step"] = hardware_train_flops(
            cfg, real_lengths, remat="full" if remat != "none" else "none")
    peak = out["peak_bf16_flops"]
    for side, s in seconds.items():
        hw = out[f"{side}_hardware_flops_per_step"]
        out[f"{side}_real_tflop_per_s"] = real / s / 1e12
        out[f"{side}_real_gflop_per_s"] = real / s / 1e9
        out[f"{side}_hardware_tflop_per_s"] = hw / s / 1e12
        out[f"{side}_mfu_real"] = real / s / peak if peak else None
        out[f"{side}_hfu"] = hw / s / peak if peak else None
    return out


def _build_model(dims: dict[str, int], opts: Any, *, length: int, attn: str | None, seed: int,
                 workdir: str | Path | None) -> tuple[Any, Any]:
    """(f2jax model, HF torch model or None): from one random HF checkpoint, or f2jax's own
    random init when `attn` is None (no PyTorch side)."""
    if attn is None:
        from flax import nnx

        from f2jax.bench.synth import qwen3_config
        from f2jax.model.qwen3 import Qwen3Model

        cfg = qwen3_config(num_hidden_layers=dims["layers"], hidden_size=dims["hidden"],
                           intermediate_size=dims["intermediate"], num_attention_heads=dims["heads"],
                           num_key_value_heads=dims["kv_heads"], head_dim=dims["head_dim"],
                           vocab_size=dims["vocab"])
        return Qwen3Model(cfg, opts, rngs=nnx.Rngs(seed)), None
    from f2jax.hf.load import load_model

    with tempfile.TemporaryDirectory(prefix="f2jax-bench-train-", dir=workdir) as tmp:
        hf_model = build_hf_model(Path(tmp), **dims, max_positions=length, attn=attn, seed=seed)
        return load_model(tmp, opts), hf_model


def _ratios(r: dict[str, Any]) -> dict[str, float | None]:
    """f2jax / PyTorch for every per-side figure (None where either side has none)."""
    pairs = {"step_s": ("f2jax_step_s", "torch_step_s"),
             "tokens_per_s": ("f2jax_tokens_per_s", "torch_tokens_per_s"),
             "padded_tokens_per_s": ("f2jax_padded_tokens_per_s", "torch_padded_tokens_per_s"),
             "real_tflop_per_s": ("f2jax_real_tflop_per_s", "torch_real_tflop_per_s"),
             "hardware_tflop_per_s": ("f2jax_hardware_tflop_per_s", "torch_hardware_tflop_per_s"),
             "mfu_real": ("f2jax_mfu_real", "torch_mfu_real"), "hfu": ("f2jax_hfu", "torch_hfu"),
             "memory_bytes": ("f2jax_mem_total_bytes", "torch_max_memory_allocated_bytes")}
    out: dict[str, float | None] = {}
    for name, (a, b) in pairs.items():
        x, y = r.get(a), r.get(b)
        out[f"ratio_{name}"] = x / y if x is not None and y else None
    return out


def bench_train_step(*, shape: str | None = None, hidden: int | None = None, layers: int | None = None,
                     heads: int | None = None, kv_heads: int | None = None, head_dim: int | None = None,
                     intermediate: int | None = None, vocab: int | None = None, batch: int = 16,
                     negatives: int = 7, length: int = 128, lengths: str = "uniform", steps: int = 10,
                     lr: float = 1e-4, threads: int | None = None, attn: str = "sdpa", seed: int = 0,
                     workdir: str | Path | None = None, param_dtype: str = "float32", dtype: str = "float32",
                     attention: str = "xla", remat: str = "none", warmup: int = 0, torch: bool = True,
                     packing: bool = False, seq_chunk: int = 0) -> dict[str, Any]:
    """Steady-state step seconds, tokens/s, FLOP utilisation and memory of f2jax vs PyTorch, plus
    first-step loss agreement.

    `shape` names a preset (`TRAIN_SHAPES`; default tiny), explicit dimensions override it.
    On a GPU (jax's default backend) torch runs on CUDA too; `dtype="bfloat16"` means bf16 compute
    in f2jax and bf16 autocast in torch (`"auto"`: bf16 on a GPU, else float32); `remat != "none"`
    also turns on torch's per-layer gradient checkpointing; `attn` is the transformers kernel
    (`"auto"`: flash-attention-2 where installed, else sdpa). `warmup` untimed steps follow the
    first (reported) step. `torch=False` skips the PyTorch side (f2jax's own random init).
    `packing=True`: f2jax packs the same texts into rows of `length` (`f2jax.data.packing`, as
    `data.packing` does) instead of padding each field to its bucket; PyTorch still pads each
    group to its own longest text, as the reference does."""
    import functools

    import jax
    import jax.numpy as jnp
    from flax import nnx

    from f2jax.data.batch import Batch
    from f2jax.data.packing import pack_batch
    from f2jax.losses import mrl_dims
    from f2jax.model.attention import resolve_attention, resolve_packed
    from f2jax.model.qwen3 import ModelOptions
    from f2jax.train.optim import make_optimizer, make_schedule
    from f2jax.train.state import TrainState
    from f2jax.train.step import LossSpec, train_step

    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    check_lengths_mode(lengths)
    dims = shape_dims(shape, hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads, head_dim=head_dim,
                      intermediate=intermediate, vocab=vocab)
    backend = jax.default_backend()
    if torch:
        import torch as torch_mod

        on_gpu = backend == "gpu" and torch_mod.cuda.is_available()
    else:
        on_gpu = backend == "gpu"
    dtype = ("bfloat16" if backend == "gpu" else "float32") if dtype == "auto" else dtype
    resolve = resolve_packed if packing else resolve_attention  # packed rows may take another kernel
    kernel = resolve(attention, backend, dtype, dims["head_dim"])
    opts = ModelOptions(param_dtype=param_dtype, dtype=dtype, attention=attention, remat=remat,  # type: ignore[arg-type]
                        seq_chunk=seq_chunk)
    device = "cuda" if on_gpu else "cpu"
    threads = threads or available_cores()
    torch_attn = pick_torch_attn(attn, on_gpu=on_gpu, bf16=dtype == "bfloat16") if torch else None
    if torch:
        torch_mod.set_num_threads(threads)
    batch_np = make_batch(np.random.default_rng(seed), batch, negatives, length, dims["vocab"], lengths)
    f2jax_np = bucketed(batch_np, length)
    host_batch = pack_batch(Batch(**f2jax_np), length) if packing else Batch(**f2jax_np)
    real_tokens, padded_tokens = host_batch.token_counts()
    mdims = mrl_dims(dims["hidden"])

    model, hf_model = _build_model(dims, opts, length=length, attn=torch_attn, seed=seed, workdir=workdir)
    cfg = model.config
    graphdef, model_state = nnx.split(model)
    params = nnx.to_pure_dict(model_state)
    del model, model_state

    tx = make_optimizer(make_schedule("constant", peak_lr=lr, warmup_steps=0, total_steps=steps + warmup + 1))
    state = TrainState(params=params, opt_state=tx.init(params), step=jnp.zeros((), jnp.int32))
    arrays = jax.tree.map(jnp.asarray, host_batch)
    fn = functools.partial(train_step, graphdef=graphdef, tx=tx, spec=LossSpec(mrl_dims=mdims), inbatch=True)
    t0 = time.perf_counter()
    compiled = jax.jit(fn, donate_argnums=0).lower(state, arrays, None).compile()
    compile_s = time.perf_counter() - t0

    def jax_step() -> tuple[float, float]:
        nonlocal state
        state, metrics = compiled(state, arrays, None)
        jax.block_until_ready(state)
        return float(metrics["loss"]), float(metrics["grad_norm"])

    torch_step = None
    if torch:
        torch_step = TorchStep(hf_model, batch_np, mdims, lr=lr, temperature=0.05, device=device,
                               autocast=dtype == "bfloat16", checkpointing=remat != "none")
        if on_gpu:
            torch_mod.cuda.reset_peak_memory_stats()
    sides = {"f2jax": jax_step, **({"torch": torch_step} if torch_step is not None else {})}
    times: dict[str, list[float]] = {s: [] for s in sides}
    first: dict[str, tuple[float, tuple[float, float]]] = {}
    last: dict[str, float] = {}

    def timed(step: Any) -> tuple[float, tuple[float, float]]:
        start = time.perf_counter()
        out = step()
        return time.perf_counter() - start, out

    for side, step in sides.items():
        first[side] = timed(step)
    for _ in range(warmup):
        for step in sides.values():
            step()
    for _ in range(steps):  # interleaved, so load from elsewhere hits both alike
        for side, step in sides.items():
            seconds, (loss, _) = timed(step)
            times[side].append(seconds)
            last[side] = loss
    med = {s: statistics.median(t) for s, t in times.items()}
    device_kind = jax.devices()[0].device_kind
    jax_peak = (jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use") if on_gpu else None

    r: dict[str, Any] = {
        "shape": shape or "tiny", **dims, "batch": batch, "negatives": negatives, "length": length,
        "lengths": lengths, "sequences": batch * (2 + negatives), "real_tokens": real_tokens,
        "padded_tokens": padded_tokens,
        "packing": packing, "packed_rows": int(np.shape(host_batch.ids)[0]) if packing else None,
        "padded_widths": ",".join(str(f2jax_np[f"{f}_mask"].shape[-1]) for f in _FIELDS),
        "mrl_dims": ",".join(map(str, mdims)), "param_dtype": param_dtype, "dtype": dtype,
        "attention": attention, "attention_kernel": kernel, "remat": remat, "seq_chunk": seq_chunk,
        "steps_timed": steps,
        "warmup_steps": warmup, "xla_threads": available_cores(), "f2jax_compile_s": compile_s,
        "f2jax_first_step_s": first["f2jax"][0], "f2jax_step_s": med["f2jax"], "f2jax_step_min_s": min(times["f2jax"]),
        "f2jax_tokens_per_s": real_tokens / med["f2jax"], "f2jax_padded_tokens_per_s": padded_tokens / med["f2jax"],
        **_memory_analysis(compiled), "f2jax_device_peak_bytes": jax_peak,
        "f2jax_first_loss": first["f2jax"][1][0], "f2jax_first_grad_norm": first["f2jax"][1][1],
        "f2jax_last_loss": last["f2jax"],
    }
    if torch_step is not None:
        r.update(_torch_figures(torch_step, first["torch"], times["torch"], last["torch"], r, on_gpu=on_gpu,
                                threads=torch_mod.get_num_threads(), attn=torch_attn))
    torch_fields = _lengths(torch_step.arrays) if torch_step is not None else None
    f2jax_fields = _lengths(f2jax_np)
    if packing:  # the texts' real lengths, computed as R rows of `length`
        f2jax_fields = {f: (n, length) for f, (n, _) in f2jax_fields.items()}
    r.update(flops_report(cfg, f2jax_fields, torch_fields, remat=remat, kernel=kernel, seconds=med,
                          device_kind=device_kind, packed_rows=r["packed_rows"]))
    r.update(_ratios(r))
    return r


def _torch_figures(step: TorchStep, first: tuple[float, tuple[float, float]], times: list[float],
                   last_loss: float, r: dict[str, Any], *, on_gpu: bool, threads: int, attn: str | None
                   ) -> dict[str, Any]:
    import torch

    s = statistics.median(times)
    loss0, norm0 = first[1]
    return {
        "torch_device": step.device, "torch_attn": attn, "torch_threads": threads,
        "torch_autocast_bf16": step.autocast, "torch_grad_checkpointing": step.checkpointing,
        "torch_fused_adamw": on_gpu, "torch_padded_tokens": step.padded_tokens,
        "torch_first_step_s": first[0], "torch_step_s": s, "torch_step_min_s": min(times),
        "torch_tokens_per_s": r["real_tokens"] / s, "torch_padded_tokens_per_s": step.padded_tokens / s,
        "speedup_torch_over_f2jax": s / r["f2jax_step_s"],  # = f2jax tokens/s ÷ torch tokens/s
        "torch_max_memory_allocated_bytes": torch.cuda.max_memory_allocated() if on_gpu else None,
        "torch_first_loss": loss0, "torch_first_grad_norm": norm0, "torch_last_loss": last_loss,
        "first_loss_rel_diff": abs(r["f2jax_first_loss"] - loss0) / abs(loss0),
        "first_grad_norm_rel_diff": abs(r["f2jax_first_grad_norm"] - norm0) / abs(norm0),
        "last_loss_rel_diff": abs(r["f2jax_last_loss"] - last_loss) / abs(last_loss),
    }
