"""A random, Qwen3-shaped Hugging Face checkpoint written tensor by tensor.

The load-memory benchmark needs a realistically sized checkpoint (Qwen3-0.6B is ~1.2 GB in
bf16) without downloading one, and without the writer itself holding the model in memory:
the safetensors format is a JSON header of offsets followed by raw bytes, so the header is
computed from shapes alone and each tensor is generated and written in row chunks.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
from collections.abc import Iterator

import ml_dtypes
import numpy as np

from f2jax.hf.checkpoint import INDEX_FILE, SINGLE_FILE
from f2jax.hf.names import hf_shapes
from f2jax.model.config import Qwen3Config
from f2jax.model.presets import QWEN3_06B, QWEN3_BOS_ID, QWEN3_EOS_ID
from f2jax.paths import Path

_ST_DTYPES = {
    "bfloat16": ("BF16", np.dtype(ml_dtypes.bfloat16)),
    "float32": ("F32", np.dtype(np.float32)),
}
_CHUNK_BYTES = 64 * 1024**2  # generate/write at most this much at a time


def qwen3_config(**overrides: int) -> Qwen3Config:
    """A Qwen3-0.6B-shaped config (tied embeddings), with any dimension overridden."""
    return Qwen3Config(
        **{**QWEN3_06B, **overrides},
        tie_word_embeddings=True,
        eos_token_id=QWEN3_EOS_ID,
        bos_token_id=QWEN3_BOS_ID,
        max_position_embeddings=40960,
    )


def hf_config_dict(cfg: Qwen3Config, dtype: str) -> dict:
    """config.json as Qwen3-0.6B ships it: a *ForCausalLM with tied embeddings."""
    raw = cfg.to_hf_dict()
    raw.update(
        architectures=["Qwen3ForCausalLM"], torch_dtype=dtype, dtype=dtype, tie_word_embeddings=True
    )
    return raw


def checkpoint_tensors(
    cfg: Qwen3Config, prefix: str = "model."
) -> list[tuple[str, tuple[int, ...]]]:
    """(HF name, HF shape) for every backbone tensor, in the sorted order transformers writes."""
    return sorted(hf_shapes(cfg, prefix).items())


def _random_chunks(
    shape: tuple[int, ...], dtype: str, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """The tensor's bytes as row chunks of random values (bounded memory for any tensor size)."""
    st_dtype = _ST_DTYPES[dtype][1]
    row = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else int(shape[0])
    rows = shape[0] if len(shape) > 1 else 1
    per_chunk = max(1, _CHUNK_BYTES // max(1, row * st_dtype.itemsize))
    for start in range(0, rows, per_chunk):
        n = min(per_chunk, rows - start) * row
        if dtype == "bfloat16":
            # Random sign and mantissa, exponent 2^-7 or 2^-6: finite values of magnitude ~0.01,
            # made straight as bits because a float32 normal draw + cast is ~10x slower.
            bits = rng.integers(0, 1 << 16, size=n, dtype=np.uint16)
            yield ((bits & np.uint16(0x80FF)) | np.uint16(0x3C00)).view(st_dtype)
        else:
            yield rng.standard_normal(n, dtype=np.float32) * np.float32(0.02)


@dataclasses.dataclass(frozen=True)
class SyntheticCheckpoint:
    directory: Path
    files: list[Path]
    config: Qwen3Config

    @property
    def disk_bytes(self) -> int:
        """Bytes of the safetensors files (the weights; config.json etc. excluded)."""
        return sum(os.path.getsize(f) for f in self.files)


def _plan_shards(
    tensors: list[tuple[str, tuple[int, ...]]], itemsize: int, max_shard_bytes: int | None
) -> list[list[tuple[str, tuple[int, ...]]]]:
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for name, shape in tensors:
        nbytes = int(np.prod(shape, dtype=np.int64)) * itemsize
        if max_shard_bytes and shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append((name, shape))
        size += nbytes
    return shards


def _write_safetensors(
    file: Path, tensors: list[tuple[str, tuple[int, ...]]], dtype: str, rng: np.random.Generator
) -> None:
    code, np_dtype = _ST_DTYPES[dtype]
    header: dict[str, dict] = {"__metadata__": {"format": "pt"}}  # type: ignore[dict-item]
    offset = 0
    for name, shape in tensors:
        nbytes = int(np.prod(shape, dtype=np.int64)) * np_dtype.itemsize
        header[name] = {
            "dtype": code,
            "shape": list(shape),
            "data_offsets": [offset, offset + nbytes],
        }
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # data must start 8-byte aligned
    with open(file, "wb") as out:
        out.write(struct.pack("<Q", len(raw)))
        out.write(raw)
        for _, shape in tensors:
            for chunk in _random_chunks(shape, dtype, rng):
                out.write(chunk.tobytes())


def write_checkpoint(
    directory: str | Path,
    cfg: Qwen3Config,
    *,
    dtype: str = "bfloat16",
    max_shard_bytes: int | None = None,
    seed: int = 0,
) -> SyntheticCheckpoint:
    """Write config.json and random weights (one file, or shards + index when max_shard_bytes)."""
    if dtype not in _ST_DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_ST_DTYPES)}, got {dtype!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(hf_config_dict(cfg, dtype), indent=2))
    tensors = checkpoint_tensors(cfg)
    itemsize = _ST_DTYPES[dtype][1].itemsize
    shards = _plan_shards(tensors, itemsize, max_shard_bytes)
    rng = np.random.default_rng(seed)
    if len(shards) == 1:
        files = [directory / SINGLE_FILE]
        _write_safetensors(files[0], shards[0], dtype, rng)
        return SyntheticCheckpoint(directory, files, cfg)
    files = [
        directory / f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        for i in range(len(shards))
    ]
    weight_map = {}
    for file, shard in zip(files, shards, strict=True):
        _write_safetensors(file, shard, dtype, rng)
        weight_map.update({name: file.name for name, _ in shard})
    total = sum(int(np.prod(s, dtype=np.int64)) * itemsize for _, s in tensors)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / INDEX_FILE).write_text(json.dumps(index, indent=2))
    return SyntheticCheckpoint(directory, files, cfg)
