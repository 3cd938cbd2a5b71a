"""Reading a safetensors checkpoint directory one tensor at a time.

Headers are read up front (names, shapes, dtypes) so a bad checkpoint fails before any data
is loaded. A URL is read from its local copy (`f2jax.storage.local_copy`). Each read opens
the file anew: safetensors memory-maps files, and a mapping held open for the whole load would
count every touched page in host RSS.
"""

from __future__ import annotations

import json

import numpy as np
from safetensors import safe_open

from f2jax.errors import F2JaxError
from f2jax.paths import Path
from f2jax.storage import local_copy

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "tf_model.h5")


class CheckpointError(F2JaxError, ValueError):
    """A checkpoint directory that f2jax refuses to load, with the reason and the file."""

    kind = "checkpoint refused"


class SafetensorsCheckpoint:
    """Name -> (file, shape, dtype) for a single-file or sharded (indexed) checkpoint."""

    def __init__(self, directory: str | Path):
        try:
            self.directory = local_copy(directory)
        except FileNotFoundError as err:
            raise CheckpointError(f"{err}: not a directory") from None
        self.files = self._files()
        self.entries: dict[str, tuple[Path, tuple[int, ...], str]] = {}
        for file in self.files:
            with safe_open(str(file), framework="numpy") as handle:
                for name in handle.keys():  # noqa: SIM118 (safe_open is not a dict)
                    piece = handle.get_slice(name)
                    self.entries[name] = (file, tuple(piece.get_shape()), piece.get_dtype())

    def _files(self) -> list[Path]:
        d = self.directory
        if not d.is_dir():
            raise CheckpointError(f"{d}: not a directory")
        index = d / INDEX_FILE
        if index.exists():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (json.JSONDecodeError, KeyError) as err:
                raise CheckpointError(f"{index}: not a valid safetensors index ({err})") from None
            files = sorted({d / f for f in weight_map.values()})
            missing = [str(f) for f in files if not f.exists()]
            if missing:
                raise CheckpointError(f"{index} names shard files that do not exist: {missing}")
            return files
        if (d / SINGLE_FILE).exists():
            return [d / SINGLE_FILE]
        found = sorted(d.glob("*.safetensors"))
        if found:
            return found
        pickles = [p for p in PICKLE_FILES if (d / p).exists()] + [p.name for p in d.glob("*.bin")]
        if pickles:
            raise CheckpointError(
                f"{d} holds only pickle checkpoints ({sorted(set(pickles))}); f2jax loads safetensors "
                "only (pickle files can run arbitrary code). Convert with transformers: "
                "AutoModel.from_pretrained(dir).save_pretrained(out, safe_serialization=True)"
            )
        raise CheckpointError(f"{d}: no model.safetensors, index or *.safetensors file")

    def shape(self, name: str) -> tuple[int, ...]:
        return self.entries[name][1]

    def read(self, name: str, index: tuple[slice, ...] | None = None) -> np.ndarray:
        """One tensor (or a slice of it) as a NumPy array, in its stored dtype."""
        file = self.entries[name][0]
        with safe_open(str(file), framework="numpy") as handle:
            if index is None:
                return handle.get_tensor(name)
            return handle.get_slice(name)[index]
