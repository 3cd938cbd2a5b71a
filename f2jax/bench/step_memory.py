"""Step-memory benchmark: compiled bytes per device of the full train step on a big mesh.

Sizing a run (does Qwen3-0.6B at 512 x 9 x 1024 tokens fit a chip?) should not need the chips:
the step is lowered with abstract, sharded arguments (`jax.ShapeDtypeStruct(..., sharding=)`,
nothing allocated) and compiled, and XLA's buffer assignment reports argument / output / temp /
alias bytes per device. It runs in a child process with
`--xla_force_host_platform_device_count=N` so CPU devices stand in for the mesh; CPU buffer
assignment approximates TPU/GPU (different fusion and layout choices), so a paper estimate is
reported beside it.

`cpu_faithful` (default on) disables XLA:CPU's `while-loop-invariant-code-motion` pass in the
child: on CPU it hoists an f32 copy of the bf16 per-layer saved inputs out of the backward's
layer loop (an artefact of the CPU backend, not of the step), which inflates temp bytes (0.6B at
512 x 9 x 1024, chunked attention, mesh 8x8x1: 17,724.6 MiB per device with the pass, 13,468.0
MiB without; 2026-11-27).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

from f2jax.bench.synth import QWEN3_06B
from f2jax.compiled_memory import compiled_memory

MODELS: dict[str, dict[str, int]] = {"0.6b": QWEN3_06B}
DEFAULT_MESHES: tuple[tuple[int, int, int], ...] = ((8, 8, 1), (4, 16, 1))
_SEQS_PER_ROW = 2  # query + positive, plus `negatives` hard negatives
CPU_FAITHFUL_FLAG = "--xla_disable_hlo_passes=while-loop-invariant-code-motion"


def _model_config(model: str, overrides: dict[str, int] | None) -> Any:
    from f2jax.bench.synth import qwen3_config

    if model not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {model!r}")
    return qwen3_config(**{**MODELS[model], **(overrides or {})})


def _state_bytes(params: Any, shardings: Any) -> tuple[int, int]:
    """(total bytes, bytes on one device) of a pytree of abstract arrays under its shardings."""
    import jax
    import numpy as np

    total = per_device = 0
    for leaf, sh in zip(jax.tree.leaves(params), jax.tree.leaves(shardings), strict=True):
        itemsize = np.dtype(leaf.dtype).itemsize
        total += math.prod(leaf.shape) * itemsize
        per_device += math.prod(sh.shard_shape(leaf.shape)) * itemsize
    return total, per_device


def logit_rows(attention: str, length: int) -> int:
    """Query rows of [.., rows, T] attention logits a layer's backward holds at once: T for
    `dot_product` (`auto` resolves to `xla` on these CPU stand-ins), (T + block) / 2 for the
    block-causal `xla` (its blocks cover the lower triangle: T (T + block) / 2 logits), one
    256-query block for `chunked`, none for the flash kernels (`cudnn`, `splash`)."""
    from f2jax.model.attention import CHUNK_QUERIES, xla_block

    if attention in ("cudnn", "splash"):
        return 0
    if attention == "chunked":
        return min(CHUNK_QUERIES, length)
    if attention in ("xla", "auto"):
        return min(length, (length + xla_block(length)) // 2)
    return length


def paper_estimate(cfg: Any, *, batch: int, negatives: int, length: int, dp: int, param_per_device: int,
                   compute_bytes: int = 2, attention: str = "xla", seq_chunk: int = 0) -> dict[str, int]:
    """What the step should need per device, from shapes alone (float32 params, remat 'full').

    state: params + grads + Adam mu, nu, all float32 and sharded like the params (4 copies).
    carries: with full remat only each layer's input hidden state is kept for the backward pass,
    for every sequence of the batch (queries, positives and negatives are all live for the loss).
    recompute: one layer's backward working set for the most sequences a device runs through a
    layer at once (the negatives, or `seq_chunk` of them): float32 attention logits + bf16
    probabilities + float32 logit gradients over [seqs, heads, rows, T] (`logit_rows`: T for
    `dot_product`, (T + block) / 2 for `xla`, 256 for `chunked`, ~0 for `cudnn`/`splash`), plus the
    MLP's gate/up/act and their gradients.
    """
    from f2jax.model.qwen3 import seq_chunks

    seqs = batch * (_SEQS_PER_ROW + negatives) // dp
    tokens = seqs * length
    carries = tokens * cfg.hidden_size * compute_bytes * cfg.num_hidden_layers
    neg_seqs = batch * negatives // dp
    neg_seqs //= seq_chunks(neg_seqs, seq_chunk)
    attn = neg_seqs * cfg.num_attention_heads * logit_rows(attention, length) * length * (4 + compute_bytes + 4)
    mlp = neg_seqs * length * cfg.intermediate_size * compute_bytes * 6
    state = 4 * param_per_device
    return {"paper_state_bytes": state, "paper_carries_bytes": carries, "paper_recompute_bytes": attn + mlp,
            "paper_total_bytes": state + carries + attn + mlp}


def measure(cfg: Any, mesh_shape: Sequence[int], *, batch: int, negatives: int, length: int,
            param_dtype: str = "float32", dtype: str = "bfloat16", remat: str = "full",
            attention: str = "xla", seq_chunk: int = 0) -> dict[str, Any]:
    """Lower + compile the Trainer's sharded train step (`compile_step`) with abstract args
    here; needs prod(mesh) devices."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from f2jax.data.batch import Batch
    from f2jax.losses import mrl_dims
    from f2jax.model.qwen3 import ModelOptions, abstract_model
    from f2jax.sharding import make_mesh, param_shardings
    from f2jax.train.optim import make_optimizer, make_schedule
    from f2jax.train.state import abstract_state, state_shardings
    from f2jax.train.step import LossSpec, StepProgram, compile_step

    data, fsdp, tensor = mesh_shape
    n = data * fsdp * tensor
    if len(jax.devices()) < n:
        raise RuntimeError(f"mesh {tuple(mesh_shape)} needs {n} devices, have {len(jax.devices())}")
    mesh = make_mesh(data, fsdp, tensor, devices=jax.devices()[:n])
    opts = ModelOptions(param_dtype=param_dtype, dtype=dtype, attention=attention, remat=remat, seq_chunk=seq_chunk)
    graphdef, abstract = abstract_model(cfg, opts)
    params = nnx.to_pure_dict(abstract)
    schedule = make_schedule("constant", peak_lr=1e-4, warmup_steps=0, total_steps=1)
    tx = make_optimizer(schedule)
    shardings = state_shardings(params, param_shardings(abstract, mesh), tx, mesh)
    program = StepProgram(mesh=mesh, graphdef=graphdef, tx=tx, schedule=schedule,
                          loss=LossSpec(mrl_dims=mrl_dims(cfg.hidden_size)),
                          state=abstract_state(params, tx, shardings))
    rows = jax.ShapeDtypeStruct((batch, length), jnp.int32)
    negs = jax.ShapeDtypeStruct((batch, negatives, length), jnp.int32)
    step = compile_step(program, "train", Batch(rows, rows, rows, rows, negs, negs), inbatch=True)
    mem = compiled_memory(step.fn)
    param_total, param_dev = _state_bytes(params, shardings.params)
    out: dict[str, Any] = {"lower_s": step.lower_s, "compile_s": step.compile_s, "param_bytes": param_total,
                           "param_per_device_bytes": param_dev}
    if mem is None:
        return {**out, "memory_analysis": "unavailable on this backend"}
    out.update(mem)
    out.update(paper_estimate(cfg, batch=batch, negatives=negatives, length=length, dp=data * fsdp,
                              param_per_device=param_dev, attention=attention, seq_chunk=seq_chunk))
    return out


def _child_env(devices: int, cpu_faithful: bool = True) -> dict[str, str]:
    """This environment with `devices` CPU devices (and, `cpu_faithful`, the CPU-only hoisting
    pass disabled, merged into any `--xla_disable_hlo_passes` already set)."""
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
    if cpu_faithful:
        key, value = CPU_FAITHFUL_FLAG.split("=")
        passes = [p for f in flags if f.startswith(key + "=") for p in f.split("=", 1)[1].split(",") if p]
        flags = [f for f in flags if not f.startswith(key + "=")]
        flags.append(f"{key}={','.join(dict.fromkeys([*passes, value]))}")
    env["XLA_FLAGS"] = " ".join([*flags, f"--xla_force_host_platform_device_count={devices}"])
    env["JAX_PLATFORMS"] = "cpu"
    return env


def bench_step_memory(*, devices: int = 64, meshes: Sequence[Sequence[int]] = DEFAULT_MESHES, batch: int = 512,
                      negatives: int = 7, length: int = 1024, model: str = "0.6b",
                      overrides: dict[str, int] | None = None, param_dtype: str = "float32",
                      dtype: str = "bfloat16", remat: str = "full", attention: str = "xla", seq_chunk: int = 0,
                      timeout: float | None = None, cpu_faithful: bool = True) -> dict[str, Any]:
    """Per-device compiled memory for each mesh, measured in a child process with `devices` CPU
    devices (`cpu_faithful`: without XLA:CPU's while-loop-invariant code motion, see above)."""
    from f2jax.sharding import resolve_mesh_shape

    resolved = [resolve_mesh_shape(*m, devices) for m in meshes]
    for m in resolved:
        if batch % (m[0] * m[1]):
            raise ValueError(f"batch {batch} is not divisible by data x fsdp of mesh {m}")
    cfg = _model_config(model, overrides)  # fail here, not in the child, on a bad model name
    job = {"model": model, "overrides": overrides or {}, "meshes": resolved, "batch": batch,
           "negatives": negatives, "length": length, "param_dtype": param_dtype, "dtype": dtype,
           "remat": remat, "attention": attention, "seq_chunk": seq_chunk}
    with tempfile.TemporaryDirectory(prefix="f2jax-step-mem-") as tmp:
        out_file = os.path.join(tmp, "result.json")
        cmd = [sys.executable, "-m", "f2jax.bench.step_memory", json.dumps(job), out_file]
        env = _child_env(devices, cpu_faithful)
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"step-memory child failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        with open(out_file) as f:
            per_mesh = json.load(f)
    result: dict[str, Any] = {
        "backend": "cpu (stand-in devices; TPU/GPU buffer assignment differs)", "devices": devices,
        "model": model, "params": cfg.num_params(), "global_batch": batch,
        "sequences_per_row": _SEQS_PER_ROW + negatives, "length": length,
        "param_dtype": param_dtype, "dtype": dtype, "remat": remat, "attention": attention,
        "seq_chunk": seq_chunk, "cpu_faithful": cpu_faithful, "xla_flags": env["XLA_FLAGS"],
    }
    for m, values in zip(resolved, per_mesh, strict=True):
        prefix = "mesh_{}x{}x{}_".format(*m)
        result.update({prefix + k: v for k, v in values.items()})
    return result


def _child(job_json: str, out_file: str) -> None:
    job = json.loads(job_json)
    cfg = _model_config(job["model"], job["overrides"])
    results = [measure(cfg, m, batch=job["batch"], negatives=job["negatives"], length=job["length"],
                       param_dtype=job["param_dtype"], dtype=job["dtype"], remat=job["remat"],
                       attention=job["attention"], seq_chunk=job["seq_chunk"]) for m in job["meshes"]]
    with open(out_file, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2])
