"""Load a Hugging Face Qwen3 checkpoint into an f2jax model, streaming.

Each tensor is validated from the file headers first, then read and placed straight onto its
target sharding with `jax.make_array_from_callback` (only the slices each device needs), so
peak host memory stays near the model plus one stacked parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from flax import nnx, traverse_util
from jax.sharding import Mesh, SingleDeviceSharding

from f2jax.hf.checkpoint import CheckpointError, SafetensorsCheckpoint
from f2jax.hf.names import TensorMap, hf_shapes, tensor_maps
from f2jax.model.config import Qwen3Config
from f2jax.model.qwen3 import ModelOptions, Qwen3Model, abstract_model, as_dtype
from f2jax.paths import Path
from f2jax.sharding import param_shardings

IGNORED_TENSORS = ("lm_head.weight",)  # the LM head of *ForCausalLM checkpoints; not part of the backbone


def _prefix(names: list[str]) -> str:
    return "model." if any(n.startswith("model.") for n in names) else ""


def validate_checkpoint(ckpt: SafetensorsCheckpoint, cfg: Qwen3Config) -> str:
    """Fail (naming tensor and file) on missing, unexpected or misshapen tensors; return the name prefix."""
    prefix = _prefix(list(ckpt.entries))
    expected = hf_shapes(cfg, prefix)
    present = set(ckpt.entries) - set(IGNORED_TENSORS)
    missing = sorted(set(expected) - present)
    if missing:
        raise CheckpointError(
            f"{ckpt.directory}: {len(missing)} tensor(s) missing for the config's architecture: "
            f"{missing[:8]}{' ...' if len(missing) > 8 else ''}"
        )
    unexpected = sorted(present - set(expected))
    if unexpected:
        where = {str(ckpt.entries[n][0].name) for n in unexpected}
        raise CheckpointError(
            f"{ckpt.directory}: {len(unexpected)} unexpected tensor(s) in {sorted(where)}: "
            f"{unexpected[:8]}{' ...' if len(unexpected) > 8 else ''} (does config.json match the weights?)"
        )
    for name, shape in expected.items():
        if ckpt.shape(name) != shape:
            raise CheckpointError(
                f"{ckpt.entries[name][0]}: tensor {name!r} has shape {ckpt.shape(name)}, but config.json "
                f"implies {shape}"
            )
    return prefix


_ALIGN = 64  # XLA:CPU adopts host buffers aligned like this instead of copying them


def _aligned_empty(shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An uninitialised array whose data is 64-byte aligned (NumPy only guarantees 16)."""
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + _ALIGN, np.uint8)
    start = (-raw.ctypes.data) % _ALIGN
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def _concrete(index: tuple[slice, ...], shape: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(*s.indices(n)) for s, n in zip(index, shape, strict=True))


def _reader(ckpt: SafetensorsCheckpoint, tmap: TensorMap, names: list[str], shape: tuple[int, ...],
            dtype: Any):
    """Callback for make_array_from_callback: builds one device's slice from the files."""

    def read_one(name: str, index: tuple[slice, ...]) -> np.ndarray:
        if tmap.transpose:
            return ckpt.read(name, tuple(reversed(index))).T
        return ckpt.read(name, index)

    def callback(index: tuple[slice, ...]) -> np.ndarray:
        index = _concrete(tuple(index), shape)
        out = _aligned_empty(tuple(s.stop - s.start for s in index), dtype)
        if not tmap.per_layer:
            np.copyto(out, read_one(names[0], index), casting="unsafe")
            return out
        for j, layer in enumerate(range(shape[0])[index[0]]):
            out[j] = read_one(names[layer], index[1:])
        return out

    return callback


def load_model(
    path: str | Path,
    opts: ModelOptions | None = None,
    *,
    mesh: Mesh | None = None,
    rules: Mapping[str, str | None] | None = None,
    config: Qwen3Config | None = None,
) -> Qwen3Model:
    """A `Qwen3Model` with the checkpoint's weights, placed on `mesh` (or the first device)."""
    opts = opts or ModelOptions()
    cfg = config or Qwen3Config.from_pretrained(path)
    ckpt = SafetensorsCheckpoint(path)
    prefix = validate_checkpoint(ckpt, cfg)
    graphdef, state = abstract_model(cfg, opts)
    flat_shapes = traverse_util.flatten_dict(nnx.to_pure_dict(state))
    if mesh is not None:
        flat_shardings = traverse_util.flatten_dict(param_shardings(state, mesh, rules))
    else:
        single = SingleDeviceSharding(jax.devices()[0])
        flat_shardings = dict.fromkeys(flat_shapes, single)
    dtype = as_dtype(opts.param_dtype)
    values: dict[tuple[str, ...], jax.Array] = {}
    for tmap in tensor_maps(cfg):
        shape = tuple(flat_shapes[tmap.path].shape)
        names = [prefix + n for n in tmap.names(cfg.num_hidden_layers)]
        values[tmap.path] = jax.make_array_from_callback(
            shape, flat_shardings[tmap.path], _reader(ckpt, tmap, names, shape, dtype)
        )
    nnx.replace_by_pure_dict(state, traverse_util.unflatten_dict(values))
    return nnx.merge(graphdef, state)
