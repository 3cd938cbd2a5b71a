"""Where a run keeps its files: RUN_DIR (local or a URL, see `f2jax.paths`) and its checkpoints."""

from __future__ import annotations

import os

from etils import epath

from f2jax.paths import PathLike, absolute, as_path


def checkpoint_dir(run_dir: PathLike) -> epath.Path:
    """The Orbax directory of a run: RUN_DIR/checkpoints."""
    return absolute(run_dir) / "checkpoints"


def default_run_dir(run_dir: str | None, config: PathLike) -> epath.Path:
    """`--run-dir` as given, else runs/<config file stem>."""
    if run_dir:
        return as_path(run_dir)
    stem = os.path.splitext(os.path.basename(os.fspath(config)))[0]
    return as_path(os.path.join("runs", stem))
