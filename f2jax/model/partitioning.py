"""Logical axis names of every backbone parameter, declared beside the model.

The mesh rules (`f2jax.sharding`) map these names to mesh axes; nothing else needs to know
how a parameter is laid out.
"""

from __future__ import annotations

from collections.abc import Sequence

# Keyed by the last two path components of a parameter (module name, variable name).
_AXES: dict[tuple[str, str], tuple[str | None, ...]] = {
    ("embed_tokens", "embedding"): ("vocab", "embed"),
    ("q_proj", "kernel"): ("embed", "heads"),
    ("k_proj", "kernel"): ("embed", "kv_heads"),
    ("v_proj", "kernel"): ("embed", "kv_heads"),
    ("o_proj", "kernel"): ("heads", "embed"),
    ("q_proj", "bias"): ("heads",),
    ("k_proj", "bias"): ("kv_heads",),
    ("v_proj", "bias"): ("kv_heads",),
    ("o_proj", "bias"): ("norm",),
    ("gate_proj", "kernel"): ("embed", "mlp"),
    ("up_proj", "kernel"): ("embed", "mlp"),
    ("down_proj", "kernel"): ("mlp", "embed"),
    ("q_norm", "weight"): ("head_dim",),
    ("k_norm", "weight"): ("head_dim",),
    ("input_layernorm", "weight"): ("norm",),
    ("post_attention_layernorm", "weight"): ("norm",),
    ("norm", "weight"): ("norm",),
}


def logical_axes(path: Sequence[str]) -> tuple[str | None, ...]:
    """Logical axes of the parameter at `path` (stacked block parameters get a `layers` axis)."""
    key = (str(path[-2]), str(path[-1]))
    if key not in _AXES:
        raise KeyError(f"no logical axes declared for parameter {'.'.join(map(str, path))}")
    axes = _AXES[key]
    return ("layers", *axes) if str(path[0]) == "layers" else axes
