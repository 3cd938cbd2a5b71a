"""`f2jax bench gpu-check`: what works on one GPU, in one short run, with every figure recorded.

Independent parts, each in its own try/except (a failure is recorded as `<part>_error`
and the rest still run), on random Qwen3-0.6B-shaped models built locally (no downloads):

1. `parity_*`: f2jax bf16 with cuDNN attention vs transformers bf16 (sdpa) on a right-padded
   batch, and f2jax fp32 (xla attention, highest matmul precision) vs transformers fp32.
2. `attn_*`: f2jax bf16 with cuDNN vs xla attention: hidden states and parameter gradients of
   a scalar loss (pooled embeddings · a random vector).
3. `packed_*` (only when asked, `--parts ...,packed`): attention alone on packed rows, each
   kernel (cuDNN packed layout, Pallas-Triton, chunked, xla) vs a float32 reference
   (`f2jax.bench.packed_attention`).
4. `train_*`: the `f2jax bench train` step (f2jax_train_step vs PyTorch) at batch 16 × (2 + 7)
   × 512 with float32 master weights and bf16 compute, plus model FLOPs and MFU.

Without a GPU (or with `tiny=True`) the shapes shrink so it runs on CPU in well under a minute,
and cuDNN is replaced by `xla` (part 1) and `dot_product` (part 2, jax's own implementation of
the same `jax.nn.dot_product_attention` call); the substitution is recorded in the results.
"""

from __future__ import annotations

import os
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

from f2jax.bench.train_step import build_hf_model, make_batch
from f2jax.model.presets import QWEN3_06B
from f2jax.paths import Path

TINY_MODEL = dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16)
FULL = dict(parity_layers=4, parity_batch=8, parity_length=512, train_layers=28, batch=16,
            negatives=7, length=512, steps=10, warmup=2)
TINY = dict(parity_layers=2, parity_batch=4, parity_length=32, train_layers=2, batch=4,
            negatives=2, length=32, steps=2, warmup=0)


def _diff(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Max abs and relative (‖a−b‖/‖b‖) difference at real tokens, and min pooled cosine."""
    real = mask.astype(bool)
    d = (a[real] - b[real]).astype(np.float64)
    ref = b[real].astype(np.float64)
    rows = np.arange(a.shape[0])
    last = mask.sum(-1) - 1
    pa, pb = a[rows, last].astype(np.float64), b[rows, last].astype(np.float64)
    cos = (pa * pb).sum(-1) / (np.linalg.norm(pa, axis=-1) * np.linalg.norm(pb, axis=-1))
    return {"max_abs": float(np.abs(d).max()), "rel": float(np.linalg.norm(d) / np.linalg.norm(ref)),
            "pooled_cos_min": float(cos.min())}


def _flat(prefix: str, stats: dict[str, float]) -> dict[str, float]:
    return {f"{prefix}_{k}": v for k, v in stats.items()}


def _torch_hidden(model: Any, ids: np.ndarray, mask: np.ndarray, device: str) -> np.ndarray:
    import torch

    with torch.no_grad():
        out = model(input_ids=torch.as_tensor(ids, dtype=torch.long, device=device),
                    attention_mask=torch.as_tensor(mask, dtype=torch.long, device=device))
    return out.last_hidden_state.float().cpu().numpy()


def _f2jax_hidden(model: Any, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    import jax.numpy as jnp
    from flax import nnx

    fwd = nnx.jit(lambda m, i, k: m(i, k).astype(jnp.float32))
    return np.asarray(fwd(model, jnp.asarray(ids), jnp.asarray(mask)))


def _load(path: Path, dtype: str, attention: str) -> Any:
    from f2jax.hf.load import load_model
    from f2jax.model.qwen3 import ModelOptions

    return load_model(path, ModelOptions(param_dtype=dtype, dtype=dtype, attention=attention))  # type: ignore[arg-type]


def part_parity(path: Path, hf_model: Any, ids: np.ndarray, mask: np.ndarray, *, attention: str,
                device: str) -> dict[str, Any]:
    """f2jax vs transformers in fp32 (xla, highest precision) and bf16 (`attention`)."""
    import jax
    import torch

    out: dict[str, Any] = {"parity_attention": attention}
    hf_model = hf_model.to(device).eval()
    ref32 = _torch_hidden(hf_model, ids, mask, device)
    with jax.default_matmul_precision("highest"):
        ours32 = _f2jax_hidden(_load(path, "float32", "xla"), ids, mask)
    out.update(_flat("parity_fp32", _diff(ours32, ref32, mask)))
    hf_model = hf_model.to(torch.bfloat16)
    ref16 = _torch_hidden(hf_model, ids, mask, device)
    ours16 = _f2jax_hidden(_load(path, "bfloat16", attention), ids, mask)
    out.update(_flat("parity_bf16", _diff(ours16, ref16, mask)))
    # Scale of bf16 noise: each bf16 run against the fp32 transformers reference.
    out.update(_flat("parity_bf16_f2jax_vs_fp32", _diff(ours16, ref32, mask)))
    out.update(_flat("parity_bf16_torch_vs_fp32", _diff(ref16, ref32, mask)))
    out["parity_bf16_nonfinite_padded"] = int((~np.isfinite(ours16[mask == 0])).sum())
    return out


def _loss_and_grads(model: Any, ids: Any, mask: Any, r: Any) -> tuple[np.ndarray, float, list[np.ndarray]]:
    """Hidden states, loss = Σ pooled · r, and the parameter gradients (as float32 numpy)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from f2jax.model.qwen3 import last_token_pool

    graphdef, params = nnx.split(model)

    @jax.jit
    def run(params: Any) -> tuple[Any, Any, Any]:
        def loss(p: Any) -> tuple[Any, Any]:
            hidden = nnx.merge(graphdef, p)(ids, mask)
            return (last_token_pool(hidden, mask).astype(jnp.float32) @ r).sum(), hidden

        (value, hidden), grads = jax.value_and_grad(loss, has_aux=True)(params)
        return hidden.astype(jnp.float32), value, grads

    hidden, value, grads = run(params)
    leaves = [np.asarray(g.astype(jnp.float32)) for g in jax.tree.leaves(grads)]
    return np.asarray(hidden), float(value), leaves


def part_attention(path: Path, ids: np.ndarray, mask: np.ndarray, *, attention: str,
                   hidden: int, seed: int = 0) -> dict[str, Any]:
    """`attention` vs xla in bf16: outputs and gradients of the same model and loss."""
    import jax.numpy as jnp

    r = jnp.asarray(np.random.default_rng(seed).standard_normal(hidden), jnp.float32)
    ids_j, mask_j = jnp.asarray(ids), jnp.asarray(mask)
    h_ref, loss_ref, g_ref = _loss_and_grads(_load(path, "bfloat16", "xla"), ids_j, mask_j, r)
    h_new, loss_new, g_new = _loss_and_grads(_load(path, "bfloat16", attention), ids_j, mask_j, r)
    out: dict[str, Any] = {"attn_impl": attention, **_flat("attn_hidden", _diff(h_new, h_ref, mask))}
    diff_sq = sum(float(((a - b).astype(np.float64) ** 2).sum()) for a, b in zip(g_new, g_ref, strict=True))
    ref_sq = sum(float((b.astype(np.float64) ** 2).sum()) for b in g_ref)
    per_leaf = [np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30) for a, b in zip(g_new, g_ref, strict=True)]
    out.update({
        "attn_loss": loss_new, "attn_xla_loss": loss_ref,
        "attn_loss_rel_diff": abs(loss_new - loss_ref) / max(abs(loss_ref), 1e-30),
        "attn_grad_max_abs": max(float(np.abs(a - b).max()) for a, b in zip(g_new, g_ref, strict=True)),
        "attn_grad_rel": (diff_sq / ref_sq) ** 0.5,
        "attn_grad_rel_worst_leaf": float(max(per_leaf)),
        "attn_grad_nonfinite": int(sum((~np.isfinite(g)).sum() for g in g_new)),
    })
    return out


def _guard(name: str, results: dict[str, Any], fn: Callable[[], dict[str, Any]]) -> None:
    """Run one part; on failure record the error (and keep going)."""
    t0 = time.perf_counter()
    try:
        results.update(fn())
    except Exception as err:  # noqa: BLE001 - the point is to learn what fails and carry on
        results[f"{name}_error"] = f"{type(err).__name__}: {str(err)[:800]}"
        traceback.print_exc()
    results[f"{name}_seconds"] = time.perf_counter() - t0


def gpu_check(*, tiny: bool = False, remat: str = "full", param_dtype: str = "float32",
              steps: int | None = None, workdir: str | Path | None = None,
              parts: tuple[str, ...] = ("parity", "attn", "train")) -> dict[str, Any]:
    """Run the parts; a flat dict of every figure (errors as strings) for the table and JSON."""
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # torch shares the GPU
    import jax
    import torch

    backend = jax.default_backend()
    on_gpu = backend == "gpu" and torch.cuda.is_available()
    tiny = tiny or not on_gpu
    shape, model = (TINY, TINY_MODEL) if tiny else (FULL, QWEN3_06B)
    fwd_attn, cmp_attn = ("cudnn", "cudnn") if on_gpu else ("xla", "dot_product")
    results: dict[str, Any] = {
        "backend": backend, "device_kind": jax.devices()[0].device_kind, "jax": jax.__version__,
        "torch": torch.__version__, "tiny": tiny,
        "cudnn_substitute": None if on_gpu else "no GPU: parity uses xla, attn compares dot_product",
        "torch_device": "cuda" if on_gpu else "cpu", "torch_attn": "sdpa",
    }
    device = results["torch_device"]
    m = {k: model[k] for k in ("vocab_size", "hidden_size", "intermediate_size",
                               "num_attention_heads", "num_key_value_heads", "head_dim")}
    rng = np.random.default_rng(0)
    b = make_batch(rng, shape["parity_batch"], 1, shape["parity_length"], m["vocab_size"])
    ids, mask = b["query_ids"], b["query_mask"]
    results.update(parity_shape=f"{ids.shape[0]}x{ids.shape[1]}", parity_layers=shape["parity_layers"],
                   parity_real_tokens=int(mask.sum()))

    with tempfile.TemporaryDirectory(prefix="f2jax-gpu-check-", dir=workdir) as tmp:
        path = Path(tmp)
        hf_model = None
        if "parity" in parts or "attn" in parts:
            hf_model = build_hf_model(
                path, vocab=m["vocab_size"], hidden=m["hidden_size"],
                intermediate=m["intermediate_size"], layers=shape["parity_layers"],
                heads=m["num_attention_heads"], kv_heads=m["num_key_value_heads"],
                head_dim=m["head_dim"], max_positions=shape["parity_length"], attn="sdpa", seed=0)
        if "parity" in parts:
            _guard("parity", results, lambda: part_parity(path, hf_model, ids, mask,
                                                          attention=fwd_attn, device=device))
        hf_model = None  # free the torch copy before the next parts
        if on_gpu:
            torch.cuda.empty_cache()
        if "attn" in parts:
            _guard("attn", results, lambda: part_attention(path, ids, mask, attention=cmp_attn,
                                                           hidden=m["hidden_size"]))
    jax.clear_caches()
    if "packed" in parts:
        from f2jax.bench.packed_attention import bench_packed_attention

        _guard("packed", results, lambda: bench_packed_attention(tiny=tiny))
        jax.clear_caches()
    if "train" in parts:
        _guard("train", results, lambda: _part_train(shape, m, fwd_attn, remat, param_dtype, steps, workdir))
    return results


def _part_train(shape: dict[str, int], m: dict[str, int], attention: str, remat: str, param_dtype: str,
                steps: int | None, workdir: str | Path | None) -> dict[str, Any]:
    from f2jax.bench.train_step import bench_train_step

    r = bench_train_step(
        hidden=m["hidden_size"], layers=shape["train_layers"], heads=m["num_attention_heads"],
        kv_heads=m["num_key_value_heads"], head_dim=m["head_dim"], intermediate=m["intermediate_size"],
        vocab=m["vocab_size"], batch=shape["batch"], negatives=shape["negatives"], length=shape["length"],
        steps=steps or shape["steps"], warmup=shape["warmup"], lr=1e-5, attn="sdpa", workdir=workdir,
        param_dtype=param_dtype, dtype="bfloat16", attention=attention, remat=remat)
    skip = ("hidden", "vocab", "device_kind", "torch_attn", "xla_threads")
    return {f"train_{k}": v for k, v in r.items() if k not in skip}
