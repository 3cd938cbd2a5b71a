"""Reading user datasets (Hugging Face on disk or Hub, parquet, JSONL, CSV) into plain columns.

Text formats are decoded with `surrogateescape`, so a non-UTF-8 byte does not abort the whole
read: it survives as a lone surrogate and the row check reports its row, column and byte
offset. Row numbers count records from 0 (like M2's parquet rows); for JSONL/CSV each record's
line number is kept too so messages can point at the line an editor shows.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from f2jax.data.validate import DataValidationError
from f2jax.errors import InputNotFoundError, UserInputError, one_line, require_extra
from f2jax.paths import Path, existing, is_url
from f2jax.storage import local_copy

FORMATS = ("auto", "hf", "parquet", "jsonl", "csv")
_SUFFIX = {".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
           ".csv": "csv", ".tsv": "csv"}
_HF_MARKERS = ("dataset_dict.json", "dataset_info.json", "state.json")
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass
class RawTable:
    """A user's dataset as columns of Python values, plus where each record came from."""

    path: str  # what error messages name: the file (or dataset) the user gave
    columns: dict[str, list[object]]
    lines: list[int] | None = None  # 1-based line of each record (text formats only)
    blank_is_null: bool = False  # CSV cannot say "missing" other than with an empty cell

    @property
    def num_rows(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def where(self, row: int) -> str:
        """' (line N)' for text formats, '' otherwise."""
        return f" (line {self.lines[row]})" if self.lines else ""


def detect_format(src: Path) -> str:
    """The input format from a local path: a saved HF dataset dir, parquet, JSONL or CSV."""
    if src.is_dir():
        if any((src / m).exists() for m in _HF_MARKERS):
            return "hf"
        if any(src.glob("*.parquet")):
            return "parquet"
        raise UserInputError(f"{src}: a directory that is neither a saved Hugging Face dataset "
                             "(dataset_info.json / dataset_dict.json) nor a folder of *.parquet files")
    fmt = _SUFFIX.get(src.suffix.lower())
    if fmt is None:
        raise UserInputError(f"{src}: unknown file type {src.suffix!r}; use --format {{parquet,jsonl,csv}}")
    return fmt


def is_hub_name(src: str) -> bool:
    """A string that can only mean a Hub dataset: not on disk, no file suffix, `owner/name` form."""
    if is_url(src) or Path(src).exists():
        return False
    return bool(_HUB_NAME.match(src)) and Path(src).suffix.lower() not in _SUFFIX


def from_arrow(path: str | Path, table: pa.Table) -> RawTable:
    """Arrow columns as Python values; strings go through bytes so bad UTF-8 is caught per row."""
    columns: dict[str, list[object]] = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            col = col.cast(pa.large_binary())
        columns[name] = col.to_pylist()
    return RawTable(str(path), columns)


def read_parquet(path: Path) -> RawTable:
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise DataValidationError(path, None, None, f"not a readable parquet file: {one_line(err)}") from None
    return from_arrow(path, table)


def _decode(path: Path) -> str:
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    return data.decode("utf-8", "surrogateescape")


def _columns_of(records: list[dict]) -> dict[str, list[object]]:
    names: dict[str, None] = {}
    for rec in records:
        names.update(dict.fromkeys(rec))
    return {n: [rec.get(n) for rec in records] for n in names}


def read_jsonl(path: Path) -> RawTable:
    """One JSON object per line (blank lines ignored), or a single JSON array of objects."""
    text = _decode(path)
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataValidationError(path, None, None, f"invalid JSON at line {err.lineno}: {err.msg}") from None
        lines = None
    else:
        records, lines = [], []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise DataValidationError(path, len(records), None,
                                          f"invalid JSON (line {lineno}): {err.msg}") from None
            lines.append(lineno)
    for row, rec in enumerate(records):
        if not isinstance(rec, dict):
            where = f" (line {lines[row]})" if lines else ""
            raise DataValidationError(path, row, None, f"expected a JSON object, got {type(rec).__name__}{where}")
    if not records:
        raise DataValidationError(path, None, None, "no records")
    return RawTable(str(path), _columns_of(records), lines)


def read_csv(path: Path) -> RawTable:
    """A CSV (or .tsv) with a header row; quoted fields may span lines."""
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.reader(io.StringIO(_decode(path), newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise DataValidationError(path, None, None, "empty file (no header row)") from None
    except csv.Error as err:
        raise DataValidationError(path, None, None, f"malformed CSV header: {err}") from None
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise DataValidationError(path, None, dupes[0], "column appears more than once in the header")
    rows, lines = [], []
    start = reader.line_num + 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            raise DataValidationError(path, len(rows), None, f"malformed CSV (line {start}): {err}") from None
        if fields:
            if len(fields) != len(header):
                raise DataValidationError(path, len(rows), None,
                                          f"expected {len(header)} fields, got {len(fields)} (line {start})")
            rows.append(fields)
            lines.append(start)
        start = reader.line_num + 1
    if not rows:
        raise DataValidationError(path, None, None, "no data rows after the header")
    columns = {h: [r[j] for r in rows] for j, h in enumerate(header)}
    return RawTable(str(path), columns, lines, blank_is_null=True)


def _pick_split(label: str, ds: object, split: str | None) -> object:
    """A Dataset from a Dataset or DatasetDict; a DatasetDict needs --split."""
    if not hasattr(ds, "keys"):
        return ds
    splits = sorted(ds.keys())
    if split is None:
        raise UserInputError(f"{label}: a dataset with splits {splits}; choose one with --split")
    if split not in ds:
        raise UserInputError(f"{label}: no split {split!r}; available: {splits}")
    return ds[split]


def read_hf_disk(path: Path, split: str | None) -> RawTable:
    """A dataset saved with `Dataset.save_to_disk` / `DatasetDict.save_to_disk`."""
    require_extra("datasets", "import", "f2jax data import from a Hugging Face dataset")
    import datasets

    ds = _pick_split(str(path), datasets.load_from_disk(str(path)), split)
    return from_arrow(path, ds.with_format("arrow")[:])


def read_hub(name: str, split: str | None, config: str | None = None) -> RawTable:
    """A dataset from the Hugging Face Hub; an unreachable Hub is one clear line, not a traceback."""
    require_extra("datasets", "import", "f2jax data import from a Hugging Face dataset")
    import datasets

    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    hub_log.setLevel(logging.ERROR)  # its per-retry warnings would bury the one line below
    try:
        ds = datasets.load_dataset(name, config, split=split)
    except Exception as err:  # network, auth and not-found errors all come from third-party code
        if type(err).__name__ == "DatasetNotFoundError":
            raise InputNotFoundError(f"{name}: not on disk and not found on the Hugging Face Hub "
                                     f"({one_line(err)})") from None
        raise UserInputError(f"{name}: not on disk and the Hugging Face Hub is unreachable "
                             f"({type(err).__name__}: {one_line(err)[:300]})") from None
    finally:
        hub_log.setLevel(level)
    return from_arrow(f"hub:{name}", _pick_split(f"hub:{name}", ds, split).with_format("arrow")[:])


def read_any(src: str, fmt: str = "auto", split: str | None = None, hub: bool = False,
             config: str | None = None) -> RawTable:
    """Dispatch on --format (or the path) to the readers above."""
    if fmt not in FORMATS:
        raise UserInputError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    if hub or (fmt in ("auto", "hf") and is_hub_name(src)):
        return read_hub(src, split, config)
    path = local_copy(existing(src))
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "hf":
        return read_hf_disk(path, split)
    if split is not None:
        raise UserInputError(f"{path}: --split applies to Hugging Face datasets only")
    if fmt == "parquet":
        return read_parquet(path)
    if fmt == "jsonl":
        return read_jsonl(path)
    return read_csv(path)
