"""The one mapping between f2jax parameter paths and Hugging Face `Qwen3Model` tensor names.

Stacked block parameters ([layers, ...]) map to one tensor per layer; linear kernels are stored
[in, out] here and [out, in] by transformers.
"""

from __future__ import annotations

import dataclasses

from flax import nnx

from f2jax.model.config import Qwen3Config
from f2jax.model.qwen3 import abstract_model


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


def param_shapes(cfg: Qwen3Config) -> dict[tuple[str, ...], tuple[int, ...]]:
    """f2jax parameter shapes by path, read off the abstract model (so they cannot drift from it)."""
    _, state = abstract_model(cfg)
    return {tuple(path): tuple(var.shape) for path, var in nnx.to_flat_state(state)}


def hf_shapes(cfg: Qwen3Config, prefix: str = "") -> dict[str, tuple[int, ...]]:
    """Hugging Face tensor name -> shape for every backbone tensor (validates checkpoints before reading)."""
    shapes = param_shapes(cfg)
    return {
        prefix + name: tmap.hf_shape(shapes[tmap.path])
        for tmap in tensor_maps(cfg)
        for name in tmap.names(cfg.num_hidden_layers)
    }
