"""The device mesh (`data`, `fsdp`, `tensor`) and the rules that place parameters on it.

Rules are data: a table from logical axis name to mesh axis. Parameters declare their logical
axes where the model creates them (Variable metadata); a dimension whose size the mesh axis
does not divide stays replicated rather than failing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jax
from flax import nnx, traverse_util
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from f2jax.errors import F2JaxError

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

DEFAULT_RULES: dict[str, str | None] = {
    "vocab": "tensor",
    "embed": "fsdp",
    "heads": "tensor",
    "kv_heads": "tensor",
    "mlp": "tensor",
    "head_dim": None,
    "layers": None,
    "norm": None,
}


class MeshError(F2JaxError, ValueError):
    """The requested mesh cannot be built from the available devices."""

    kind = "mesh error"


def resolve_mesh_shape(data: int, fsdp: int, tensor: int, n_devices: int) -> tuple[int, int, int]:
    """Fill the one axis given as -1 so the product equals the device count."""
    sizes = {"mesh.data": data, "mesh.fsdp": fsdp, "mesh.tensor": tensor}
    fill = [k for k, v in sizes.items() if v == -1]
    if len(fill) > 1:
        raise MeshError(f"at most one mesh axis may be -1, got {fill}")
    bad = [k for k, v in sizes.items() if v == 0 or v < -1]
    if bad:
        raise MeshError(f"mesh sizes must be positive or -1: {bad}")
    fixed = math.prod(v for v in sizes.values() if v != -1)
    if fill:
        if n_devices % fixed:
            raise MeshError(f"{n_devices} devices cannot be split with fixed mesh axes of product {fixed}")
        sizes[fill[0]] = n_devices // fixed
    if math.prod(sizes.values()) != n_devices:
        raise MeshError(
            f"mesh data×fsdp×tensor = {sizes['mesh.data']}×{sizes['mesh.fsdp']}×{sizes['mesh.tensor']} "
            f"= {math.prod(sizes.values())}, but {n_devices} devices are available"
        )
    return sizes["mesh.data"], sizes["mesh.fsdp"], sizes["mesh.tensor"]


def make_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1, devices: Sequence[Any] | None = None) -> Mesh:
    devices = list(devices) if devices is not None else jax.devices()
    shape = resolve_mesh_shape(data, fsdp, tensor, len(devices))
    auto = (jax.sharding.AxisType.Auto,) * 3
    return jax.make_mesh(shape, MESH_AXES, axis_types=auto, devices=devices)


def spec_for(
    shape: Sequence[int], axes: Sequence[str | None], mesh: Mesh, rules: Mapping[str, str | None]
) -> PartitionSpec:
    """PartitionSpec for one array; undivisible or repeated mesh axes fall back to replication."""
    used: set[str] = set()
    parts: list[str | None] = []
    for size, name in zip(shape, axes, strict=True):
        mesh_axis = rules.get(name) if name is not None else None
        if mesh_axis is None or mesh_axis in used or size % mesh.shape[mesh_axis]:
            parts.append(None)
        else:
            parts.append(mesh_axis)
            used.add(mesh_axis)
    return PartitionSpec(*parts)


def _declared_axes(var: nnx.Variable, path: tuple[Any, ...]) -> tuple[str | None, ...]:
    names = var.get_metadata().get("out_sharding")
    if names is None:
        raise KeyError(f"no logical axes declared for parameter {'.'.join(map(str, path))}")
    return tuple(names)


def param_shardings(
    params: Any, mesh: Mesh, rules: Mapping[str, str | None] | None = None
) -> dict[str, Any]:
    """NamedSharding per parameter, from the logical axes its `nnx.Variable` declares.

    `params` is an `nnx.Module` or `nnx.State` (e.g. the abstract state of
    `f2jax.model.abstract_model`); the result is a nested dict shaped like `nnx.to_pure_dict`.
    """
    rules = DEFAULT_RULES if rules is None else rules
    if isinstance(params, nnx.Module):
        params = nnx.state(params)
    if not isinstance(params, nnx.State):
        raise TypeError("param_shardings needs the nnx.State (or Module) whose Params declare their axes, "
                        f"got {type(params).__name__}; see f2jax.model.abstract_model")
    out = {
        tuple(path): NamedSharding(mesh, spec_for(var.shape, _declared_axes(var, path), mesh, rules))
        for path, var in nnx.to_flat_state(params)
    }
    return traverse_util.unflatten_dict(out)


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
    """Leading (batch) dimension over (`data`, `fsdp`), the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES, *([None] * (ndim - 1))))

