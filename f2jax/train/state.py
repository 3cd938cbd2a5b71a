"""The train state pytree {params, opt_state, step} and its shardings on the mesh."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def _dict_path(path: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple(str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey))


def state_shardings(params: Any, param_shardings: Any, tx: optax.GradientTransformation,
                    mesh: Mesh) -> dict[str, Any]:
    """Optimiser moments follow their parameter's sharding; scalars are replicated."""
    by_path = {
        _dict_path(path): sharding
        for path, sharding in jax.tree_util.tree_flatten_with_path(param_shardings)[0]
    }
    shapes = {_dict_path(path): leaf.shape for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]}
    replicated = NamedSharding(mesh, PartitionSpec())

    def pick(path: tuple[Any, ...], leaf: Any) -> NamedSharding:
        key = _dict_path(path)
        for start in range(len(key)):
            tail = key[start:]
            if tail in by_path and shapes[tail] == leaf.shape:
                return by_path[tail]
        return replicated

    abstract_opt = jax.eval_shape(tx.init, params)
    return {
        "params": param_shardings,
        "opt_state": jax.tree_util.tree_map_with_path(pick, abstract_opt),
        "step": replicated,
    }


def init_state(params: Any, tx: optax.GradientTransformation, shardings: dict[str, Any]) -> dict[str, Any]:
    def init(p: Any) -> dict[str, Any]:
        return {"params": p, "opt_state": tx.init(p), "step": jnp.zeros((), jnp.int32)}

    return jax.jit(init, out_shardings=shardings, donate_argnums=0)(params)
