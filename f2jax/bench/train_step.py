"""Train-step benchmark: the f2jax jitted step vs the same step in PyTorch, same weights and batch.

Both sides start from one random Hugging Face `Qwen3Model` (built with transformers, saved,
loaded into f2jax with `f2jax.hf.load_model`), see one batch (random real-token ids, mixed
lengths, right padding, EOS last), and run the F2LLM objective (last-token pooling, in-batch +
hard-negative InfoNCE at temperature 0.05 with Matryoshka weights 1/(n·sqrt(d/dim)), summed)
and AdamW(0.9, 0.98, wd 0.01) after clipping to norm 1, in float32 by default (on a GPU,
optionally bf16 compute: see `bench_train_step`). The torch losses are
written here from the recipe, not from f2jax, so matching first-step losses and gradient norms
also cross-checks the f2jax model, pooling, losses and gradients. Steps are timed interleaved
(f2jax, torch, f2jax, ...) so background load hits both alike; compile is reported separately.
"""

from __future__ import annotations

import math
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from f2jax.model.presets import QWEN3_EOS_ID, QWEN3_FIRST_SPECIAL_ID, QWEN3_VOCAB_SIZE


def available_cores() -> int:
    """Cores this process may run on: what XLA:CPU sizes its intra-op thread pool from."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def make_batch(rng: np.random.Generator, batch: int, negatives: int, length: int,
               vocab: int) -> dict[str, np.ndarray]:
    """Right-padded real-token ids (EOS last) with lengths in [length/4, length]; row 0 full."""
    eos = QWEN3_EOS_ID if vocab > QWEN3_EOS_ID else vocab - 1
    top = min(vocab - 1, QWEN3_FIRST_SPECIAL_ID)

    def field(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        lengths = rng.integers(max(2, length // 4), length + 1, size=shape)
        lengths.reshape(-1)[0] = length
        ids = rng.integers(0, top, size=(*shape, length)).astype(np.int32)
        pos = np.arange(length)
        ids = np.where(pos == lengths[..., None] - 1, eos, ids)
        mask = (pos < lengths[..., None]).astype(np.int32)
        return ids * mask, mask

    out: dict[str, np.ndarray] = {}
    for name, shape in (("query", (batch,)), ("passage", (batch,)), ("negative", (batch, negatives))):
        out[f"{name}_ids"], out[f"{name}_mask"] = field(shape)
    return out


def build_hf_model(out: Path, *, vocab: int, hidden: int, intermediate: int, layers: int, heads: int,
                   kv_heads: int, head_dim: int, max_positions: int, attn: str, seed: int) -> Any:
    """A random transformers `Qwen3Model` (norm scales randomised too), saved to `out`."""
    from f2jax.testing import save_random_qwen3

    hf_config = dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                     num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=head_dim,
                     max_position_embeddings=max(2048, max_positions), rms_norm_eps=1e-6)
    _, model = save_random_qwen3(out, hf_config, seed=seed, with_tokenizer=False, attn_implementation=attn)
    return model.train()  # dropout is 0 in Qwen3; train() so nothing eval-only kicks in


def torch_mrl_weights(dims: Sequence[int]) -> list[float]:
    """1 / (n·sqrt(d/dim)), n = 1, 2, ... from the largest dim down (written apart from f2jax's)."""
    d = max(dims)
    ranked = sorted(dims, reverse=True)
    return [1.0 / ((ranked.index(dim) + 1) * math.sqrt(d / dim)) for dim in dims]


def torch_objective(q: Any, p: Any, n: Any, dims: Sequence[int], temperature: float) -> Any:
    """Σ_dim w · (in-batch CE over the batch's passages + hard CE over [pos, own negatives])."""
    import torch
    import torch.nn.functional as F

    b = q.shape[0]
    cands = torch.cat([p[:, None], n], dim=1)
    target_ib = torch.arange(b, device=q.device)
    target_hard = torch.zeros(b, dtype=torch.long, device=q.device)
    total = q.new_zeros(())
    for dim, w in zip(dims, torch_mrl_weights(dims), strict=True):
        qn = F.normalize(q[:, :dim], dim=-1)
        pn = F.normalize(p[:, :dim], dim=-1)
        cn = F.normalize(cands[..., :dim], dim=-1)
        inbatch = F.cross_entropy(qn @ pn.T / temperature, target_ib)
        hard = F.cross_entropy(torch.einsum("bd,bkd->bk", qn, cn) / temperature, target_hard)
        total = total + w * (inbatch + hard)
    return total


class TorchStep:
    """zero_grad → three forwards (queries, positives, negatives) → loss → backward → clip → AdamW.

    As the reference trainer runs it: each text group is cut to its own longest text, the model
    forward runs under bf16 autocast when `autocast` (float32 master weights; the loss stays in
    float32, as f2jax's), HF gradient checkpointing per layer when `checkpointing`, and AdamW is
    the fused CUDA kernel on a GPU."""

    def __init__(self, model: Any, batch: dict[str, np.ndarray], dims: Sequence[int], *, lr: float,
                 temperature: float, device: str = "cpu", autocast: bool = False,
                 checkpointing: bool = False) -> None:
        import torch

        self.model, self.dims, self.temperature = model.to(device), tuple(dims), temperature
        self.device, self.autocast = device, autocast
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        b, k, length = batch["negative_ids"].shape
        self.inputs = []
        for f in ("query", "passage", "negative"):
            mask = batch[f"{f}_mask"].reshape(-1, length)
            longest = int(mask.sum(-1).max())
            self.inputs.append(tuple(torch.as_tensor(x[:, :longest], dtype=torch.long, device=device)
                                     for x in (batch[f"{f}_ids"].reshape(-1, length), mask)))
        self.padded_tokens = sum(int(mask.numel()) for _, mask in self.inputs)
        self.shape = (b, k)
        fused = {"fused": True} if device.startswith("cuda") else {}
        self.opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), eps=1e-8,
                                     weight_decay=0.01, **fused)

    def _pool(self, ids: Any, mask: Any) -> Any:
        import torch

        with torch.autocast(self.device.split(":")[0], dtype=torch.bfloat16, enabled=self.autocast):
            hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        last = mask.sum(-1) - 1
        return hidden[torch.arange(ids.shape[0], device=ids.device), last].float()

    def __call__(self) -> tuple[float, float]:
        import torch

        self.opt.zero_grad(set_to_none=True)
        q, p, n = (self._pool(ids, mask) for ids, mask in self.inputs)
        loss = torch_objective(q, p, n.reshape(*self.shape, -1), self.dims, self.temperature)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()  # the update is async: time it in this step, not the next
        return float(loss.detach()), float(norm)


def _memory_analysis(compiled: Any) -> dict[str, int | None]:
    """XLA's compiled-step buffer sizes (None where the backend reports none)."""
    try:
        mem = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend implements it
        mem = None
    keys = ("argument", "output", "temp", "alias")
    out = {f"f2jax_mem_{k}_bytes": getattr(mem, f"{k}_size_in_bytes", None) for k in keys}
    if None not in out.values():
        out["f2jax_mem_total_bytes"] = sum(v for k, v in out.items() if "alias" not in k) - out[
            "f2jax_mem_alias_bytes"]  # type: ignore[operator]
    return out


def _flops_report(cfg: Any, real_lengths: np.ndarray, padded_lengths: np.ndarray, jax_s: float,
                  torch_s: float, device_kind: str) -> dict[str, Any]:
    """Model FLOPs per step (f2jax.bench.flops) and achieved TFLOP/s and MFU on real tokens."""
    from f2jax.bench.flops import peak_bf16_flops, train_flops

    real, padded = train_flops(cfg, real_lengths), train_flops(cfg, padded_lengths)
    peak = peak_bf16_flops(device_kind)
    out: dict[str, Any] = {"model_flops_per_step_real": real, "model_flops_per_step_padded": padded,
                           "flops_note": "3x forward matmuls, causal attention L(L+1)/2, no lm_head",
                           "device_kind": device_kind, "peak_bf16_flops": peak}
    for side, seconds in (("f2jax", jax_s), ("torch", torch_s)):
        out[f"{side}_real_tflop_per_s"] = real / seconds / 1e12
        out[f"{side}_mfu_real"] = real / seconds / peak if peak else None
    return out


def bench_train_step(*, hidden: int = 128, layers: int = 2, heads: int = 4, kv_heads: int = 2, head_dim: int = 32,
                     intermediate: int = 256, vocab: int = QWEN3_VOCAB_SIZE, batch: int = 16, negatives: int = 7,
                     length: int = 128, steps: int = 10, lr: float = 1e-4, threads: int | None = None,
                     attn: str = "sdpa", seed: int = 0, workdir: str | Path | None = None,
                     param_dtype: str = "float32", dtype: str = "float32", attention: str = "xla",
                     remat: str = "none", warmup: int = 0) -> dict[str, Any]:
    """Steady-state step seconds and real tokens/s of f2jax vs PyTorch, plus first-step loss agreement.

    On a GPU (jax's default backend) torch runs on CUDA too; `dtype="bfloat16"` means bf16
    compute in f2jax and bf16 autocast in torch, `remat != "none"` also turns on torch's
    per-layer gradient checkpointing. `warmup` untimed steps follow the first (reported) step."""
    import functools

    import jax
    import jax.numpy as jnp
    import torch
    from flax import nnx

    from f2jax.hf.load import load_model
    from f2jax.model.qwen3 import ModelOptions
    from f2jax.train.losses import mrl_dims
    from f2jax.train.optim import make_optimizer, make_schedule
    from f2jax.train.step import LossSpec, train_step

    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    opts = ModelOptions(param_dtype=param_dtype, dtype=dtype, attention=attention, remat=remat)  # type: ignore[arg-type]
    on_gpu = jax.default_backend() == "gpu" and torch.cuda.is_available()
    device = "cuda" if on_gpu else "cpu"
    threads = threads or available_cores()
    torch.set_num_threads(threads)
    batch_np = make_batch(np.random.default_rng(seed), batch, negatives, length, vocab)
    masks = [batch_np[f"{f}_mask"] for f in ("query", "passage", "negative")]
    real_tokens, padded_tokens = int(sum(m.sum() for m in masks)), int(sum(m.size for m in masks))
    real_lengths = np.concatenate([m.reshape(-1, length).sum(-1) for m in masks])
    dims = mrl_dims(hidden)

    with tempfile.TemporaryDirectory(prefix="f2jax-bench-train-", dir=workdir) as tmp:
        hf_model = build_hf_model(Path(tmp), vocab=vocab, hidden=hidden, intermediate=intermediate,
                                  layers=layers, heads=heads, kv_heads=kv_heads, head_dim=head_dim,
                                  max_positions=length, attn=attn, seed=seed)
        model = load_model(tmp, opts)
    cfg = model.config
    graphdef, model_state = nnx.split(model)
    params = nnx.to_pure_dict(model_state)
    del model, model_state

    total_steps = steps + warmup + 1
    tx = make_optimizer(make_schedule("constant", peak_lr=lr, warmup_steps=0, total_steps=total_steps))
    state = {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32)}
    arrays = {k: jnp.asarray(v) for k, v in batch_np.items()}
    fn = functools.partial(train_step, graphdef=graphdef, tx=tx, spec=LossSpec(mrl_dims=dims), inbatch=True)
    t0 = time.perf_counter()
    compiled = jax.jit(fn, donate_argnums=0).lower(state, arrays, None).compile()
    compile_s = time.perf_counter() - t0

    def jax_step() -> tuple[float, float]:
        nonlocal state
        state, metrics = compiled(state, arrays, None)
        jax.block_until_ready(state)
        return float(metrics["loss"]), float(metrics["grad_norm"])

    torch_step = TorchStep(hf_model, batch_np, dims, lr=lr, temperature=0.05, device=device,
                           autocast=dtype == "bfloat16", checkpointing=remat != "none")
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()

    def timed(step: Any) -> tuple[float, tuple[float, float]]:
        start = time.perf_counter()
        out = step()
        return time.perf_counter() - start, out

    jax_first_s, (jax_loss0, jax_norm0) = timed(jax_step)
    torch_first_s, (torch_loss0, torch_norm0) = timed(torch_step)
    for _ in range(warmup):
        jax_step(), torch_step()
    jax_times, torch_times = [], []
    for _ in range(steps):  # interleaved, so load from elsewhere hits both alike
        seconds, (jax_loss, _) = timed(jax_step)
        jax_times.append(seconds)
        seconds, (torch_loss, _) = timed(torch_step)
        torch_times.append(seconds)
    jax_s, torch_s = statistics.median(jax_times), statistics.median(torch_times)
    device_kind = jax.devices()[0].device_kind
    jax_peak = (jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use") if on_gpu else None

    return {
        "hidden": hidden, "layers": layers, "vocab": vocab, "batch": batch, "negatives": negatives,
        "length": length, "sequences": batch * (2 + negatives), "real_tokens": real_tokens,
        "padded_tokens": padded_tokens, "torch_padded_tokens": torch_step.padded_tokens,
        "mrl_dims": ",".join(map(str, dims)), "param_dtype": param_dtype, "dtype": dtype,
        "attention": attention, "remat": remat, "torch_device": device,
        "torch_autocast_bf16": torch_step.autocast, "torch_grad_checkpointing": remat != "none",
        "torch_fused_adamw": on_gpu,
        "steps_timed": steps, "warmup_steps": warmup, "xla_threads": available_cores(),
        "torch_threads": torch.get_num_threads(), "torch_attn": attn,
        "f2jax_compile_s": compile_s, "f2jax_first_step_s": jax_first_s,
        "f2jax_step_s": jax_s, "f2jax_step_min_s": min(jax_times),
        "f2jax_tokens_per_s": real_tokens / jax_s, "f2jax_padded_tokens_per_s": padded_tokens / jax_s,
        "torch_first_step_s": torch_first_s, "torch_step_s": torch_s, "torch_step_min_s": min(torch_times),
        "torch_tokens_per_s": real_tokens / torch_s,
        "torch_padded_tokens_per_s": torch_step.padded_tokens / torch_s,
        "speedup_torch_over_f2jax": torch_s / jax_s,  # = f2jax tokens/s ÷ torch tokens/s
        **_flops_report(cfg, real_lengths, np.full(real_lengths.shape, length), jax_s, torch_s, device_kind),
        **_memory_analysis(compiled), "f2jax_device_peak_bytes": jax_peak,
        "torch_max_memory_allocated_bytes": torch.cuda.max_memory_allocated() if on_gpu else None,
        "f2jax_first_loss": jax_loss0, "torch_first_loss": torch_loss0,
        "first_loss_rel_diff": abs(jax_loss0 - torch_loss0) / abs(torch_loss0),
        "f2jax_first_grad_norm": jax_norm0, "torch_first_grad_norm": torch_norm0,
        "first_grad_norm_rel_diff": abs(jax_norm0 - torch_norm0) / abs(torch_norm0),
        "f2jax_last_loss": jax_loss, "torch_last_loss": torch_loss,
        "last_loss_rel_diff": abs(jax_loss - torch_loss) / abs(torch_loss),
    }
