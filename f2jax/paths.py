"""One path type for every user-given location: local paths and URLs (`gs://`, `s3://`, ...).

Every path a user gives f2jax (model, tokenizer, data, run directory, outputs) is an
`etils.epath.Path`, the type Orbax uses itself: a local path behaves as `pathlib.Path`, a URL
is dispatched to its filesystem backend (fsspec/gcsfs, or tf.io.gfile) on first I/O.
`pathlib.Path` would turn `gs://bucket/x` into `gs:/bucket/x`, so f2jax never imports it
(`tests/test_paths.py` guards that).

Libraries that only read local files (safetensors' memory map, tokenizers, ArrayRecord) get a
local copy of a URL through `f2jax.storage.local_copy`.
"""

from __future__ import annotations

import os
import re

from etils import epath

from f2jax.errors import InputNotFoundError

PathLike = str | os.PathLike
Path = epath.Path

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(path: PathLike) -> bool:
    """`gs://...`, `s3://...` and the like (not a local path)."""
    return bool(_URL.match(os.fspath(path)))


def as_path(path: PathLike) -> epath.Path:
    """`path` as an epath: URLs untouched, local paths as given (`~` expanded)."""
    text = os.fspath(path)
    return epath.Path(text if is_url(text) else os.path.expanduser(text))


def absolute(path: PathLike) -> epath.Path:
    """`as_path`, made absolute when local (Orbax wants absolute directories)."""
    p = as_path(path)
    return p if is_url(p) else epath.Path(os.path.abspath(os.fspath(p)))


def display_name(path: PathLike) -> str:
    """The last component of a local path or URL (`gs://b/models/m/` -> `m`)."""
    return os.fspath(path).rstrip("/").rsplit("/", 1)[-1]


def existing(path: PathLike, what: str = "") -> epath.Path:
    """`as_path(path)`, or InputNotFoundError "<what>: <path> does not exist"."""
    p = as_path(path)
    if not p.exists():
        raise InputNotFoundError(f"{what + ': ' if what else ''}{p} does not exist")
    return p


def existing_dir(path: PathLike, what: str = "") -> epath.Path:
    """`existing`, and a directory (a file gets "is a file, not a directory")."""
    p = existing(path, what)
    if not p.is_dir():
        raise InputNotFoundError(f"{what + ': ' if what else ''}{p} is a file, not a directory")
    return p
