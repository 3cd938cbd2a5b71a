"""Finding the raw sources of a folder and their task types (manifest or the reference's lists).

A folder holds one parquet per source (`{name}.parquet`) and optionally `manifest.yaml` or
`manifest.json` mapping each source name to its task type and query instruction, either as
`name: retrieval` or `name: {task: retrieval, instruction: "..."}` (optionally nested under a
top-level `sources:` key).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import yaml

from f2jax.data.tasks import check_task, default_task
from f2jax.errors import InputNotFoundError, UserInputError
from f2jax.paths import Path, existing_dir

MANIFEST_NAMES = ("manifest.yaml", "manifest.yml", "manifest.json")
_NAME = re.compile(r"^[A-Za-z0-9_]+$")  # TFDS split names must be word characters


@dataclass(frozen=True)
class SourceSpec:
    """One raw source: its parquet file, task type and optional query instruction."""

    name: str
    path: Path
    task: str
    instruction: str | None = None


def read_manifest(folder: Path) -> dict[str, dict]:
    """Per-source entries of the folder's manifest ({} when there is none)."""
    for fname in MANIFEST_NAMES:
        path = folder / fname
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8")
        raw = json.loads(text) if fname.endswith(".json") else yaml.safe_load(text)
        raw = raw or {}
        if not isinstance(raw, dict):
            raise UserInputError(f"{path}: expected a mapping of source name -> task type")
        raw = raw.get("sources", raw)
        entries = {}
        for name, entry in raw.items():
            if isinstance(entry, str):
                entry = {"task": entry}
            if not isinstance(entry, dict):
                raise UserInputError(f"{path}: entry for {name!r} must be a task name or a mapping")
            unknown = set(entry) - {"task", "instruction"}
            if unknown:
                raise UserInputError(f"{path}: entry for {name!r} has unknown keys {sorted(unknown)}")
            task = entry.get("task", default_task(str(name)))
            entries[str(name)] = {
                "task": check_task(task, f"{path}: source {name!r}"),
                "instruction": entry.get("instruction"),
            }
        return entries
    return {}


def find_sources(folder: str | Path) -> list[SourceSpec]:
    """All `*.parquet` sources of a folder, sorted by name, with task types resolved."""
    folder = existing_dir(folder)
    manifest = read_manifest(folder)
    specs = []
    for path in sorted(folder.glob("*.parquet")):
        name = path.stem
        if not _NAME.match(name):
            raise UserInputError(f"{path}: source names must match [A-Za-z0-9_]+ (got {name!r})")
        entry = manifest.get(name, {})
        specs.append(
            SourceSpec(
                name=name,
                path=path,
                task=entry.get("task", default_task(name)),
                instruction=entry.get("instruction"),
            )
        )
    missing = sorted(set(manifest) - {s.name for s in specs})
    if missing:
        raise InputNotFoundError(f"{folder}: manifest names sources with no parquet file: {missing}")
    if not specs:
        raise InputNotFoundError(f"{folder}: no *.parquet source files")
    return specs
