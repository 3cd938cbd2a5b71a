"""Run-directory paths that may be URLs: `gs://bucket/run` must reach Orbax, metrics.jsonl and
TensorBoard unchanged (`pathlib.Path` would turn it into `gs:/bucket/run`).

Everything under a run directory is an `etils.epath.Path` (what Orbax uses itself): a local
path behaves as `pathlib.Path`, a URL is dispatched to its filesystem backend on first I/O.
"""

from __future__ import annotations

import os
import re

from etils import epath

PathLike = str | os.PathLike

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


def checkpoint_dir(run_dir: PathLike) -> epath.Path:
    """The Orbax directory of a run: RUN_DIR/checkpoints."""
    return absolute(run_dir) / "checkpoints"


def default_run_dir(run_dir: str | None, config: PathLike) -> epath.Path:
    """`--run-dir` as given, else runs/<config file stem>."""
    if run_dir:
        return as_path(run_dir)
    stem = os.path.splitext(os.path.basename(os.fspath(config)))[0]
    return as_path(os.path.join("runs", stem))
