"""`f2jax data import`: a user's (query, passage[, negatives]) dataset -> one F2LLM-format source.

Most users hold pairs in a Hugging Face dataset, a JSONL or a CSV. This maps their columns to
`query, passage, negative_1..N`, checks every row with M2's rules (errors name file, row and
column; `--on-error skip` drops and counts rows per reason, never silently), writes
`OUT/{name}.parquet` and merges `name: {task, instruction}` into `OUT/manifest.yaml`.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from f2jax.data.readers import RawTable, read_any
from f2jax.data.sources import MANIFEST_NAMES
from f2jax.data.tasks import DEFAULT_NEGATIVES, check_task
from f2jax.data.validate import DataValidationError, _check_text, validate_source
from f2jax.errors import UserInputError
from f2jax.paths import Path, as_path, display_name
from f2jax.storage import copy_file, publish_dir

log = logging.getLogger(__name__)
_NEG = re.compile(r"^negative_(\d+)$")
_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_LINE = re.compile(r" [(]line \d+[)]$")


@dataclass
class Converted:
    """F2LLM columns of the valid rows, and what was skipped per reason."""

    query: list[str] = field(default_factory=list)
    passage: list[str] = field(default_factory=list)
    negatives: list[list[str]] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)


def default_negative_columns(columns: list[str]) -> list[str]:
    """`negative_1..N` columns of the input in numeric order (none if the input has none)."""
    found = [(int(m.group(1)), c) for c in columns if (m := _NEG.match(c))]
    return [c for _, c in sorted(found)]


def _require_columns(table: RawTable, names: list[str]) -> None:
    available = list(table.columns)
    for name in names:
        if name not in table.columns:
            close = [c for c in available if c.strip().lower() == name.strip().lower()]
            hint = f" (found {close[0]!r})" if close else f"; the input has {available}"
            raise DataValidationError(table.path, None, name, f"column missing{hint}")


def _text(table: RawTable, row: int, column: str, value: object, required: bool) -> str | None:
    """M2's text rule (null, non-UTF-8, non-text, empty) on one cell, located by row and line."""
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogateescape")  # lone surrogates = undecodable input bytes
    try:
        return _check_text(Path(table.path), row, column, value, required)
    except DataValidationError as err:
        raise DataValidationError(table.path, row, column, err.reason + table.where(row)) from None


def _row(table: RawTable, row: int, query_col: str, passage_col: str,
         negative_cols: list[str]) -> tuple[str, str, list[str]]:
    query = _text(table, row, query_col, table.columns[query_col][row], True)
    value = table.columns[passage_col][row]
    if value is None or (isinstance(value, str | bytes) and not value.strip()):
        what = "missing" if value is None else "empty"
        raise DataValidationError(table.path, row, passage_col,
                                  f"query without a positive passage ({what}){table.where(row)}")
    passage = _text(table, row, passage_col, value, True)
    negatives: list[str] = []
    for col in negative_cols:
        value = table.columns[col][row]
        items = value if isinstance(value, list) else [value]
        for j, item in enumerate(items):
            if item is None or (table.blank_is_null and item == ""):
                continue
            label = f"{col}[{j}]" if isinstance(value, list) else col
            negatives.append(_text(table, row, label, item, True))
    return query, passage, negatives


def convert(table: RawTable, query_col: str = "query", passage_col: str = "passage",
            negative_cols: list[str] | None = None, on_error: str = "raise") -> Converted:
    """Map and check every row; column errors always raise, row errors raise or are counted."""
    if on_error not in ("raise", "skip"):
        raise UserInputError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if negative_cols is None:
        negative_cols = default_negative_columns(list(table.columns))
    _require_columns(table, [query_col, passage_col, *negative_cols])
    out = Converted()
    for row in range(table.num_rows):
        try:
            query, passage, negatives = _row(table, row, query_col, passage_col, negative_cols)
        except DataValidationError as err:
            if on_error == "raise":
                raise
            out.skipped[f"{err.column}: {_LINE.sub('', err.reason)}"] += 1
            continue
        out.query.append(query)
        out.passage.append(passage)
        out.negatives.append(negatives)
        out.rows.append(row)
    if not out.rows:
        raise DataValidationError(table.path, None, None, f"no valid rows (skipped: {dict(out.skipped)})")
    return out


def write_source(path: Path, query: list[str], passage: list[str], negatives: list[list[str]]) -> int:
    """Write F2LLM columns (ragged negatives padded with nulls); returns the negative count N."""
    n_neg = max((len(n) for n in negatives), default=0)
    cols = {"query": pa.array(query, pa.string()), "passage": pa.array(passage, pa.string())}
    for j in range(n_neg):
        cols[f"negative_{j + 1}"] = pa.array([n[j] if j < len(n) else None for n in negatives], pa.string())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(pa.table(cols), tmp)
    tmp.replace(path)
    return n_neg


def manifest_file(folder: Path) -> Path:
    """The folder's manifest (yaml or json), or where a new one goes."""
    return next((folder / m for m in MANIFEST_NAMES if (folder / m).exists()), folder / "manifest.yaml")


def update_manifest(folder: Path, name: str, task: str, instruction: str | None) -> Path:
    """Create or merge `name: {task, instruction}` into the folder's manifest (yaml or json)."""
    path = manifest_file(folder)
    raw: dict = {}
    if path.exists():
        text = path.read_text(encoding="utf-8")
        raw = (json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)) or {}
        if not isinstance(raw, dict):
            raise UserInputError(f"{path}: expected a mapping of source name -> task type")
    entries = raw["sources"] if isinstance(raw.get("sources"), dict) else raw
    if name in entries:
        log.info("%s: replacing the entry for %r", path, name)
    entries[name] = {"task": task, **({"instruction": instruction} if instruction else {})}
    text = json.dumps(raw, indent=1) if path.suffix == ".json" else yaml.safe_dump(raw, sort_keys=False,
                                                                                   allow_unicode=True)
    path.write_text(text, encoding="utf-8")
    return path


def publish_source(out: str | Path, name: str, task: str, instruction: str | None, query: list[str],
                   passage: list[str], negatives: list[list[str]], needed_negatives: int = 0) -> tuple[Path, Path, int]:
    """OUT/{name}.parquet, checked by the same reader training uses, then its manifest entry,
    each file written whole (`f2jax.storage.publish_dir`; OUT may be a URL).
    Returns (parquet, manifest, negative columns)."""
    out = as_path(out)
    manifest = manifest_file(out)
    with publish_dir(out, last=(manifest.name,)) as local:
        if manifest.exists():
            copy_file(manifest, local / manifest.name)
        n_neg = write_source(local / f"{name}.parquet", query, passage, negatives)
        validate_source(local / f"{name}.parquet", task, needed_negatives=needed_negatives)
        update_manifest(local, name, task, instruction)
    return out / f"{name}.parquet", manifest, n_neg


def source_name(src: str, name: str | None) -> str:
    """--name, else the input's stem with other characters turned into '_'."""
    if name is None:
        stem = display_name(src)
        stem = stem.rsplit(".", 1)[0] if "." in stem and not as_path(src).is_dir() else stem
        name = re.sub(r"[^A-Za-z0-9_]", "_", stem) or "imported"
    if not _NAME.match(name):
        raise UserInputError(f"--name {name!r}: source names must match [A-Za-z0-9_]+")
    return name


def import_source(src: str, out: str | Path, *, task: str = "retrieval", query: str = "query",
                  passage: str = "passage", negatives: list[str] | None = None, split: str | None = None,
                  name: str | None = None, instruction: str | None = None, fmt: str = "auto",
                  hub: bool = False, config: str | None = None, on_error: str = "raise") -> dict:
    """Import one dataset into the source folder `out`; returns a summary for the CLI to print."""
    check_task(task, "--task")
    name = source_name(src, name)
    table = read_any(src, fmt, split=split, hub=hub, config=config)
    conv = convert(table, query, passage, negatives, on_error)
    path, manifest, n_neg = publish_source(out, name, task, instruction, conv.query, conv.passage, conv.negatives)
    needed = DEFAULT_NEGATIVES[task]
    short = sum(len(n) < needed for n in conv.negatives)
    summary = {
        "output": str(path), "manifest": str(manifest), "name": name, "task": task,
        "rows_in": table.num_rows, "rows_written": len(conv.rows), "negatives_columns": n_neg,
        "skipped": sum(conv.skipped.values()), "skipped_per_reason": dict(conv.skipped),
    }
    if short:
        summary["note"] = (f"{short} rows have fewer than the {needed} negatives {task} training needs; "
                           f"run `f2jax data mine MODEL {path} OUT` to mine hard negatives")
    if conv.skipped:
        log.warning("%s: skipped %d of %d rows (%s)", table.path, summary["skipped"], table.num_rows,
                    dict(conv.skipped))
    return summary
