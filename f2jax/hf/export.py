"""Write an f2jax model as a Hugging Face + sentence-transformers directory, streaming.

Parameters are gathered to the host one stacked parameter at a time and written shard by
shard, so host memory holds at most one parameter plus one output shard.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import numpy as np
from flax import nnx, traverse_util
from jax.experimental import multihost_utils
from safetensors.numpy import save_file

from f2jax.hf.checkpoint import INDEX_FILE, SINGLE_FILE
from f2jax.hf.names import TensorMap, tensor_maps
from f2jax.model.config import Qwen3Config
from f2jax.model.qwen3 import as_dtype
from f2jax.paths import Path, PathLike, as_path
from f2jax.storage import publish_dir

DEFAULT_MAX_SHARD_BYTES = 2 * 1024**3


@dataclasses.dataclass(frozen=True)
class _Entry:
    name: str
    tmap: TensorMap
    layer: int | None
    nbytes: int


def to_host(x: jax.Array) -> np.ndarray:
    """Gather a (possibly sharded, possibly multi-host) array to a NumPy array."""
    if getattr(x, "is_fully_addressable", True):
        return np.asarray(jax.device_get(x))
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def plan_shards(cfg: Qwen3Config, shapes: Mapping[tuple[str, ...], tuple[int, ...]], itemsize: int,
                max_shard_bytes: int) -> list[list[_Entry]]:
    """Tensors in parameter-major order, packed greedily into shards of at most max_shard_bytes."""
    shards: list[list[_Entry]] = [[]]
    size = 0
    for tmap in tensor_maps(cfg):
        shape = shapes[tmap.path]
        per_tensor = int(np.prod(shape[1:] if tmap.per_layer else shape)) * itemsize
        layers: Iterable[int | None] = range(shape[0]) if tmap.per_layer else [None]
        for layer in layers:
            name = tmap.hf_name.format(i=layer) if layer is not None else tmap.hf_name
            if shards[-1] and size + per_tensor > max_shard_bytes:
                shards.append([])
                size = 0
            shards[-1].append(_Entry(name, tmap, layer, per_tensor))
            size += per_tensor
    return shards


def write_weights(model: nnx.Module, cfg: Qwen3Config, out_dir: Path | None, *, dtype: Any,
                  max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> list[str]:
    """Write model.safetensors (or shards + index) into the local `out_dir` (None: take part in
    the gathers only); returns the file names."""
    params = traverse_util.flatten_dict(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    np_dtype = np.dtype(as_dtype(dtype))
    shards = plan_shards(cfg, {k: tuple(v.shape) for k, v in params.items()}, np_dtype.itemsize,
                         max_shard_bytes)
    names = [SINGLE_FILE] if len(shards) == 1 else [
        f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    cached: tuple[tuple[str, ...], np.ndarray] | None = None
    weight_map: dict[str, str] = {}
    for file_name, shard in zip(names, shards, strict=True):
        tensors: dict[str, np.ndarray] = {}
        for entry in shard:
            if cached is None or cached[0] != entry.tmap.path:
                cached = (entry.tmap.path, to_host(params[entry.tmap.path]).astype(np_dtype))
            value = cached[1] if entry.layer is None else cached[1][entry.layer]
            tensors[entry.name] = np.ascontiguousarray(value.T if entry.tmap.transpose else value)
            weight_map[entry.name] = file_name
        if out_dir is not None:
            save_file(tensors, str(out_dir / file_name), metadata={"format": "pt"})
        del tensors
    if out_dir is not None and len(shards) > 1:
        total = sum(e.nbytes for shard in shards for e in shard)
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (out_dir / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
    return names


def sentence_transformers_files(hidden_size: int, max_length: int,
                                prompts: Mapping[str, str]) -> dict[str, Any]:
    """The files that make sentence-transformers run Transformer -> last-token Pooling -> Normalize."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    pooling = {
        "word_embedding_dimension": hidden_size,
        "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": False,
        "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False,
        "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": True,
        "include_prompt": True,
    }
    return {
        "modules.json": modules,
        "sentence_bert_config.json": {"max_seq_length": max_length, "do_lower_case": False},
        "1_Pooling/config.json": pooling,
        "config_sentence_transformers.json": {
            "prompts": dict(prompts), "default_prompt_name": None, "similarity_fn_name": "cosine",
        },
    }


def publish_model_dir(out_dir: PathLike) -> contextlib.AbstractContextManager[Path]:
    """A local directory whose files become the model directory `out_dir` (local or a URL):
    config.json, which every loader reads first, goes last; weights of an older model there
    are removed, so a killed writer leaves nothing a loader accepts (`f2jax.storage`)."""
    return publish_dir(out_dir, last=("config.json",), replace=("config.json", "*.safetensors", INDEX_FILE))


def save_pretrained(model: nnx.Module, cfg: Qwen3Config, tokenizer: Any, out_dir: PathLike, *,
                    max_length: int, prompts: Mapping[str, str], dtype: Any,
                    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> Path:
    """config.json + safetensors + tokenizer + sentence-transformers modules in `out_dir`.
    Every process takes part in gathering the weights; process 0 writes."""
    out = as_path(out_dir)
    if jax.process_index() != 0:
        write_weights(model, cfg, None, dtype=dtype, max_shard_bytes=max_shard_bytes)
        return out
    with publish_model_dir(out) as local:
        write_weights(model, cfg, local, dtype=dtype, max_shard_bytes=max_shard_bytes)
        config = {**cfg.to_hf_dict(), "dtype": str(np.dtype(as_dtype(dtype)))}
        (local / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        write_encoder_files(local, tokenizer, cfg.hidden_size, max_length, prompts)
    return out


def write_encoder_files(out: Path, tokenizer: Any, hidden_size: int, max_length: int,
                        prompts: Any) -> None:
    """The tokenizer and the sentence-transformers files beside a checkpoint's weights.

    An embedding model has no chat: without a chat template sentence-transformers feeds plain
    text through the tokenizer, whose post-processor appends EOS exactly as f2jax does."""
    tokenizer.chat_template = None
    tokenizer.model_max_length = max_length
    tokenizer.save_pretrained(str(out))
    (out / "chat_template.jinja").unlink(missing_ok=True)
    (out / "2_Normalize").mkdir(exist_ok=True)
    for name, content in sentence_transformers_files(hidden_size, max_length, prompts).items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(json.dumps(content, indent=2) + "\n")
