"""The one mapping between f2jax parameter paths and Hugging Face `Qwen3Model` tensor names.

Stacked block parameters ([layers, ...]) map to one tensor per layer; linear kernels are stored
[in, out] here and [out, in] by transformers.
"""

from __future__ import annotations

import dataclasses

from f2jax.model.config import Qwen3Config


@dataclasses.dataclass(frozen=True)
class TensorMap:
    path: tuple[str, ...]  # f2jax parameter path
    hf_name: str  # Hugging Face name; contains "{i}" for per-layer tensors
    transpose: bool

    @property
    def per_layer(self) -> bool:
        return "{i}" in self.hf_name

    def names(self, num_layers: int) -> list[str]:
        if not self.per_layer:
            return [self.hf_name]
        return [self.hf_name.format(i=i) for i in range(num_layers)]

    def hf_shape(self, param_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of one Hugging Face tensor given the f2jax parameter's shape."""
        shape = param_shape[1:] if self.per_layer else param_shape
        return tuple(reversed(shape)) if self.transpose else tuple(shape)


_LINEARS = {
    "self_attn": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "mlp": ("gate_proj", "up_proj", "down_proj"),
}
_NORMS = (
    ("input_layernorm",), ("post_attention_layernorm",), ("self_attn", "q_norm"), ("self_attn", "k_norm"),
)


def tensor_maps(cfg: Qwen3Config) -> list[TensorMap]:
    maps = [
        TensorMap(("embed_tokens", "embedding"), "embed_tokens.weight", False),
        TensorMap(("norm", "weight"), "norm.weight", False),
    ]
    for block, linears in _LINEARS.items():
        for name in linears:
            prefix = f"layers.{{i}}.{block}.{name}"
            maps.append(TensorMap(("layers", block, name, "kernel"), f"{prefix}.weight", True))
            if cfg.attention_bias and block == "self_attn":
                maps.append(TensorMap(("layers", block, name, "bias"), f"{prefix}.bias", False))
    for norm in _NORMS:
        maps.append(TensorMap(("layers", *norm, "weight"), "layers.{i}." + ".".join(norm) + ".weight", False))
    return maps


def param_shape(cfg: Qwen3Config, path: tuple[str, ...]) -> tuple[int, ...]:
    """The f2jax parameter shape for `path` (used to validate checkpoints before reading)."""
    h, m, L = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    kernels = {
        "q_proj": (h, cfg.q_dim), "k_proj": (h, cfg.kv_dim), "v_proj": (h, cfg.kv_dim),
        "o_proj": (cfg.q_dim, h), "gate_proj": (h, m), "up_proj": (h, m), "down_proj": (m, h),
    }
    name, leaf = path[-2], path[-1]
    if path == ("embed_tokens", "embedding"):
        return (cfg.vocab_size, h)
    if path == ("norm", "weight"):
        return (h,)
    if leaf == "kernel":
        shape = kernels[name]
    elif leaf == "bias":
        shape = (kernels[name][1],)
    else:
        shape = (cfg.head_dim,) if name in ("q_norm", "k_norm") else (h,)
    return (L, *shape)
