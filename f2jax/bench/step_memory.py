"""Step-memory benchmark: compiled bytes per device of the full train step on a big mesh.

Sizing a run (does Qwen3-0.6B at 512 x 9 x 1024 tokens fit a chip?) should not need the chips:
the step is lowered with abstract, sharded arguments (`jax.ShapeDtypeStruct(..., sharding=)`,
nothing allocated) and compiled, and XLA's buffer assignment reports argument / output / temp /
alias bytes per device. It runs in a child process with
`--xla_force_host_platform_device_count=N` so CPU devices stand in for the mesh; CPU buffer
assignment approximates TPU/GPU (different fusion and layout choices), so a paper estimate is
reported beside it.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from f2jax.bench.synth import QWEN3_06B
from f2jax.sharding import activation_sharding

MODELS: dict[str, dict[str, int]] = {"0.6b": QWEN3_06B}
DEFAULT_MESHES: tuple[tuple[int, int, int], ...] = ((8, 8, 1), (4, 16, 1))
_SEQS_PER_ROW = 2  # query + positive, plus `negatives` hard negatives


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


def paper_estimate(cfg: Any, *, batch: int, negatives: int, length: int, dp: int, param_per_device: int,
                   compute_bytes: int = 2) -> dict[str, int]:
    """What the step should need per device, from shapes alone (float32 params, remat 'full').

    state: params + grads + Adam mu, nu, all float32 and sharded like the params (4 copies).
    carries: with full remat only each layer's input hidden state is kept for the backward pass,
    for every sequence of the batch (queries, positives and negatives are all live for the loss).
    recompute: one layer's backward working set for the largest encode call (the negatives):
    float32 attention logits + bf16 probabilities + float32 logit gradients (`xla` attention
    materialises [seqs, heads, T, T]), plus the MLP's gate/up/act and their gradients.
    """
    seqs = batch * (_SEQS_PER_ROW + negatives) // dp
    tokens = seqs * length
    carries = tokens * cfg.hidden_size * compute_bytes * cfg.num_hidden_layers
    neg_seqs = batch * negatives // dp
    attn = neg_seqs * cfg.num_attention_heads * length * length * (4 + compute_bytes + 4)
    mlp = neg_seqs * length * cfg.intermediate_size * compute_bytes * 6
    state = 4 * param_per_device
    return {"paper_state_bytes": state, "paper_carries_bytes": carries, "paper_recompute_bytes": attn + mlp,
            "paper_total_bytes": state + carries + attn + mlp}


def measure(cfg: Any, mesh_shape: Sequence[int], *, batch: int, negatives: int, length: int,
            param_dtype: str = "float32", dtype: str = "bfloat16", remat: str = "full",
            attention: str = "xla") -> dict[str, Any]:
    """Lower + compile the sharded train step with abstract args here; needs prod(mesh) devices."""
    import functools

    import jax
    import jax.numpy as jnp
    from flax import nnx

    from f2jax.model.qwen3 import ModelOptions, Qwen3Model
    from f2jax.sharding import batch_sharding, make_mesh, param_shardings
    from f2jax.train.losses import mrl_dims
    from f2jax.train.optim import make_optimizer, make_schedule
    from f2jax.train.state import state_shardings
    from f2jax.train.step import LossSpec, train_step

    data, fsdp, tensor = mesh_shape
    n = data * fsdp * tensor
    if len(jax.devices()) < n:
        raise RuntimeError(f"mesh {tuple(mesh_shape)} needs {n} devices, have {len(jax.devices())}")
    mesh = make_mesh(data, fsdp, tensor, devices=jax.devices()[:n])
    opts = ModelOptions(param_dtype=param_dtype, dtype=dtype, attention=attention, remat=remat)
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: Qwen3Model(cfg, opts, rngs=nnx.Rngs(0))))
    params = nnx.to_pure_dict(abstract)
    tx = make_optimizer(make_schedule("constant", peak_lr=1e-4, warmup_steps=0, total_steps=1))
    shardings = state_shardings(params, param_shardings(params, mesh), tx, mesh)
    state_shapes = {"params": params, "opt_state": jax.eval_shape(tx.init, params),
                    "step": jax.ShapeDtypeStruct((), jnp.int32)}
    state = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state_shapes, shardings)
    shapes = {"query": (batch, length), "passage": (batch, length), "negative": (batch, negatives, length)}
    arrays = {f"{name}_{part}": jax.ShapeDtypeStruct(shape, jnp.int32, sharding=batch_sharding(mesh, len(shape)))
              for name, shape in shapes.items() for part in ("ids", "mask")}
    spec = LossSpec(mrl_dims=mrl_dims(cfg.hidden_size))
    fn = functools.partial(train_step, graphdef=graphdef, tx=tx, spec=spec, inbatch=True)
    jitted = jax.jit(fn, in_shardings=(shardings, {k: v.sharding for k, v in arrays.items()}, None),
                     out_shardings=(shardings, None), donate_argnums=0)
    t0 = time.perf_counter()
    with activation_sharding(mesh):  # as the Trainer lowers its step
        lowered = jitted.lower(state, arrays, None)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    mem = compiled.memory_analysis()
    param_total, param_dev = _state_bytes(params, shardings["params"])
    out: dict[str, Any] = {"lower_s": t1 - t0, "compile_s": t2 - t1, "param_bytes": param_total,
                           "param_per_device_bytes": param_dev}
    if mem is None:
        return {**out, "memory_analysis": "unavailable on this backend"}
    out.update(argument_bytes=int(mem.argument_size_in_bytes), output_bytes=int(mem.output_size_in_bytes),
               temp_bytes=int(mem.temp_size_in_bytes), alias_bytes=int(mem.alias_size_in_bytes),
               generated_code_bytes=int(mem.generated_code_size_in_bytes))
    out["total_bytes"] = out["argument_bytes"] + out["output_bytes"] + out["temp_bytes"] - out["alias_bytes"]
    out.update(paper_estimate(cfg, batch=batch, negatives=negatives, length=length, dp=data * fsdp,
                              param_per_device=param_dev))
    return out


def _child_env(devices: int) -> dict[str, str]:
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
    env["XLA_FLAGS"] = " ".join([*flags, f"--xla_force_host_platform_device_count={devices}"])
    env["JAX_PLATFORMS"] = "cpu"
    return env


def bench_step_memory(*, devices: int = 64, meshes: Sequence[Sequence[int]] = DEFAULT_MESHES, batch: int = 512,
                      negatives: int = 7, length: int = 1024, model: str = "0.6b",
                      overrides: dict[str, int] | None = None, param_dtype: str = "float32",
                      dtype: str = "bfloat16", remat: str = "full", attention: str = "xla",
                      timeout: float | None = None) -> dict[str, Any]:
    """Per-device compiled memory for each mesh, measured in a child process with `devices` CPU devices."""
    from f2jax.sharding import resolve_mesh_shape

    resolved = [resolve_mesh_shape(*m, devices) for m in meshes]
    for m in resolved:
        if batch % (m[0] * m[1]):
            raise ValueError(f"batch {batch} is not divisible by data x fsdp of mesh {m}")
    cfg = _model_config(model, overrides)  # fail here, not in the child, on a bad model name
    job = {"model": model, "overrides": overrides or {}, "meshes": resolved, "batch": batch,
           "negatives": negatives, "length": length, "param_dtype": param_dtype, "dtype": dtype,
           "remat": remat, "attention": attention}
    with tempfile.TemporaryDirectory(prefix="f2jax-step-mem-") as tmp:
        out_file = os.path.join(tmp, "result.json")
        cmd = [sys.executable, "-m", "f2jax.bench.step_memory", json.dumps(job), out_file]
        proc = subprocess.run(cmd, env=_child_env(devices), capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"step-memory child failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        with open(out_file) as f:
            per_mesh = json.load(f)
    result: dict[str, Any] = {
        "backend": "cpu (stand-in devices; TPU/GPU buffer assignment differs)", "devices": devices,
        "model": model, "params": cfg.num_params(), "global_batch": batch,
        "sequences_per_row": _SEQS_PER_ROW + negatives, "length": length,
        "param_dtype": param_dtype, "dtype": dtype, "remat": remat, "attention": attention,
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
                       attention=job["attention"]) for m in job["meshes"]]
    with open(out_file, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    _child(sys.argv[1], sys.argv[2])
