"""The train state (params, optimiser state, step) and its shardings on the mesh."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TrainState:
    """A pytree: the same type holds arrays, their shardings or abstract shapes.

    `opt_state` and `step` are None in a parameters-only state (an export's restore target).
    """

    params: Any
    opt_state: Any = None
    step: Any = None

    def replace(self, **changes: Any) -> TrainState:
        return dataclasses.replace(self, **changes)


def _dict_path(path: tuple[Any, ...]) -> tuple[str, ...]:
    return tuple(str(k.key) for k in path if isinstance(k, jax.tree_util.DictKey))


def state_shardings(params: Any, param_shardings: Any, tx: optax.GradientTransformation,
                    mesh: Mesh) -> TrainState:
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
    return TrainState(params=param_shardings, opt_state=jax.tree_util.tree_map_with_path(pick, abstract_opt),
                      step=replicated)


def _fresh(params: Any, tx: optax.GradientTransformation) -> TrainState:
    return TrainState(params=params, opt_state=tx.init(params), step=jnp.zeros((), jnp.int32))


def init_state(params: Any, tx: optax.GradientTransformation, shardings: TrainState) -> TrainState:
    """Step 0 with fresh optimiser moments, placed on `shardings` (consumes `params`)."""
    return jax.jit(lambda p: _fresh(p, tx), out_shardings=shardings, donate_argnums=0)(params)


def abstract_like(tree: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs carrying the target shardings (restore and lowering targets)."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def abstract_state(params: Any, tx: optax.GradientTransformation, shardings: TrainState) -> TrainState:
    """ShapeDtypeStructs of the step-0 state on `shardings`; nothing is allocated."""
    return abstract_like(jax.eval_shape(lambda p: _fresh(p, tx), params), shardings)
