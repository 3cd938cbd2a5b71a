"""The PyTorch side of `f2jax bench train`: the reference trainer's step, written from the recipe.

A random Hugging Face `Qwen3Model` (transformers) runs the F2LLM objective (last-token pooling,
in-batch + hard-negative InfoNCE at temperature 0.05, Matryoshka weights 1/(n·sqrt(d/dim)),
summed) and AdamW(0.9, 0.98, wd 0.01) after clipping to norm 1. The losses are written here,
not imported from f2jax, so matching f2jax's first-step loss and gradient norm cross-checks the
f2jax model, pooling, losses and gradients.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from f2jax.paths import Path

TORCH_ATTN_CHOICES = ("auto", "sdpa", "flash_attention_2", "eager")


def pick_torch_attn(requested: str, *, on_gpu: bool, bf16: bool) -> str:
    """transformers `attn_implementation`: `auto` is flash-attention-2 where the `flash_attn`
    package is installed and the step runs bf16 on a GPU (as the reference trainer), else sdpa."""
    if requested not in TORCH_ATTN_CHOICES:
        raise ValueError(f"torch attention must be one of {TORCH_ATTN_CHOICES}, got {requested!r}")
    if requested != "auto":
        return requested
    if on_gpu and bf16 and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


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
        self.device, self.autocast, self.checkpointing = device, autocast, checkpointing
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        b, k, length = batch["negative_ids"].shape
        self.inputs, self.arrays = [], {}  # arrays: each group's mask as fed (for FLOP counts)
        for f in ("query", "passage", "negative"):
            mask = batch[f"{f}_mask"].reshape(-1, length)
            longest = int(mask.sum(-1).max())
            self.arrays[f"{f}_mask"] = mask[:, :longest]
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
