"""What resuming a run must tidy: a config that changed the numbers, metrics past the restore.

A resumed run promises the same numbers as an uninterrupted one; that only holds if the keys
that feed the computation are unchanged, so any difference is named loudly. metrics.jsonl
stays one record per step: records written after the restored step are dropped (they will be
written again).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import yaml

from f2jax.config import ConfigError
from f2jax.paths import PathLike, as_path

log = logging.getLogger(__name__)

# Sections whose values change the computed numbers...
NUMERIC_SECTIONS = ("model", "teacher", "data", "train")
# ...except these keys: run length (extending a run is the point of train.steps) and bookkeeping.
IGNORED_KEYS = frozenset(
    {"train.steps", "train.log_every", "train.eval_every", "train.eval_batches", "data.num_threads"}
)


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and prefix.count(".") < 1:  # sections, then their keys
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def config_differences(
    stored: dict[str, Any], current: dict[str, Any]
) -> dict[str, tuple[Any, Any]]:
    """{dotted key: (stored, current)} for keys that change the numbers."""
    old = {k: v for k, v in _flatten(stored).items() if k.split(".")[0] in NUMERIC_SECTIONS}
    new = {k: v for k, v in _flatten(current).items() if k.split(".")[0] in NUMERIC_SECTIONS}
    keys = sorted((set(old) | set(new)) - IGNORED_KEYS)
    return {k: (old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k)}


def check_run_dir_config(run_dir: PathLike, current: dict[str, Any], has_checkpoints: bool,
                         allow_change: bool) -> None:
    """Refuse to resume a run directory whose checkpoints belong to another config (before its
    config.yaml is overwritten), unless `checkpoint.allow_config_change` says so."""
    stored_file = as_path(run_dir) / "config.yaml"
    if allow_change or not has_checkpoints or not stored_file.exists():
        return
    stored = yaml.safe_load(stored_file.read_text()) or {}
    diff = config_differences(stored, current)
    if diff:
        keys = ", ".join(f"{k} ({old!r} -> {new!r})" for k, (old, new) in diff.items())
        raise ConfigError(f"{run_dir} holds checkpoints of another config; {keys}: use another --run-dir, "
                          "or checkpoint.allow_config_change=true to resume it with this config")


def warn_config_changes(
    stored: dict[str, Any] | None, current: dict[str, Any], step: int
) -> dict[str, Any]:
    if not stored:
        log.warning("checkpoint step %d has no stored config; cannot check that it matches", step)
        return {}
    diff = config_differences(stored, current)
    if diff:
        lines = "\n".join(
            f"  {k}: {old!r} (checkpoint) -> {new!r} (now)" for k, (old, new) in diff.items()
        )
        log.warning(
            "!!! RESUMING WITH A DIFFERENT CONFIG: the run will NOT reproduce an uninterrupted "
            "one. Keys that change the numbers differ from checkpoint step %d:\n%s",
            step,
            lines,
        )
    return diff


def truncate_metrics(path: PathLike, step: int) -> int:
    """Drop records with step > `step` (and a line cut by a crash); returns how many."""
    path = as_path(path)
    if not path.exists():
        return 0
    kept, dropped = [], 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # half-written by a kill
            dropped += 1
            continue
        if int(record.get("step", 0)) > step:
            dropped += 1
        else:
            kept.append(line)
    if dropped:
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(f"{line}\n" for line in kept))
        tmp.replace(path)
        log.info("%s: dropped %d records after the restored step %d", path, dropped, step)
    return dropped
