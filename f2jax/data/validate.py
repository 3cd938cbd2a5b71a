"""Validation of raw sources before anything is trained on them.

Every error names the file, the row and the column, so a bad row in a 459-source folder can be
found. With `on_error="skip"` bad rows are dropped and counted per source (never silently);
errors that concern a whole column (a missing or misnamed column, a non-text type) always raise.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from f2jax.errors import F2JaxError
from f2jax.paths import Path

log = logging.getLogger(__name__)
_NEG = re.compile(r"^negative_(\d+)$")


class DataValidationError(F2JaxError, ValueError):
    """A data error located by file, row (None for a whole column) and column."""

    kind = "invalid data"

    def __init__(self, file: str | Path, row: int | None, column: str | None, message: str):
        self.file, self.row, self.column, self.reason = str(file), row, column, message
        where = "header" if row is None else f"row {row}"
        super().__init__(f"{file}: {where}, column {column!r}: {message}")


@dataclass
class CleanSource:
    """The valid rows of one source: texts per column plus where each row came from."""

    rows: list[int]
    query: list[str]
    passage: list[str]
    negatives: list[list[str | None]]  # [row][j]; None where that row has no j-th negative
    skipped: int = 0
    reasons: Counter = field(default_factory=Counter)


def _negative_columns(path: Path, names: list[str]) -> list[str]:
    """Check the header: query, passage, then negative_1..negative_N with no gaps or extras."""
    for required in ("query", "passage"):
        if required not in names:
            close = [n for n in names if n.strip().lower() == required]
            hint = f" (found {close[0]!r})" if close else ""
            raise DataValidationError(path, None, required, f"required column missing{hint}")
    numbers = []
    for name in names:
        if name in ("query", "passage"):
            continue
        m = _NEG.match(name)
        if not m or m.group(1).startswith("0"):
            raise DataValidationError(
                path, None, name, "unexpected column; expected query, passage, negative_1..N"
            )
        numbers.append(int(m.group(1)))
    numbers.sort()
    for expect, got in enumerate(numbers, start=1):
        if got != expect:
            raise DataValidationError(path, None, f"negative_{expect}", "column missing (gap)")
    return [f"negative_{i}" for i in range(1, len(numbers) + 1)]


def _texts(path: Path, table: pa.Table, column: str) -> list[object]:
    """Column values as Python objects; bytes stay bytes so that bad UTF-8 is caught per row."""
    col = table.column(column)
    typ = col.type
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        col = col.cast(pa.large_binary())  # no UTF-8 trust: decode row by row below
    elif not (pa.types.is_binary(typ) or pa.types.is_large_binary(typ) or pa.types.is_null(typ)):
        raise DataValidationError(path, None, column, f"expected a string column, got {typ}")
    return col.to_pylist()


def _check_text(path: Path, row: int, column: str, value: object, required: bool) -> str | None:
    if value is None:
        if required:
            raise DataValidationError(path, row, column, "null value; text expected")
        return None
    try:
        text = value.decode("utf-8") if isinstance(value, bytes) else value
    except UnicodeDecodeError as err:
        raise DataValidationError(
            path, row, column, f"non-UTF-8 bytes at byte offset {err.start}"
        ) from None
    if not isinstance(text, str):
        raise DataValidationError(path, row, column, f"expected text, got {type(text).__name__}")
    if not text.strip():
        raise DataValidationError(path, row, column, "empty text")
    return text


def validate_source(
    path: str | Path, task: str, needed_negatives: int, on_error: str = "raise"
) -> CleanSource:
    """Read and check one raw parquet source; return its valid rows."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    path = Path(path)
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise DataValidationError(path, None, None, f"not a readable parquet file: {err}") from None
    neg_cols = _negative_columns(path, table.column_names)
    if len(neg_cols) < needed_negatives:
        missing = f"negative_{len(neg_cols) + 1}"
        raise DataValidationError(
            path, None, missing,
            f"{task} needs {needed_negatives} negatives per query; file has {len(neg_cols)}",
        )
    columns = {c: _texts(path, table, c) for c in ["query", "passage", *neg_cols]}
    out = CleanSource(rows=[], query=[], passage=[], negatives=[])
    for row in range(table.num_rows):
        try:
            query = _check_text(path, row, "query", columns["query"][row], True)
            passage = _check_text(path, row, "passage", columns["passage"][row], True)
            negs = [_check_text(path, row, c, columns[c][row], False) for c in neg_cols]
            have = sum(n is not None for n in negs)
            if have < needed_negatives:
                first_missing = neg_cols[negs.index(None)]
                raise DataValidationError(
                    path, row, first_missing,
                    f"{task} needs {needed_negatives} negatives; this row has {have}",
                )
        except DataValidationError as err:
            if on_error == "raise":
                raise
            out.skipped += 1
            out.reasons[f"{err.column}: {err.reason}"] += 1
            continue
        out.rows.append(row)
        out.query.append(query)
        out.passage.append(passage)
        out.negatives.append(negs)
    if out.skipped:
        log.warning("%s: skipped %d of %d rows (%s)", path, out.skipped, table.num_rows,
                    dict(out.reasons))
    if not out.rows:
        raise DataValidationError(path, None, None, "no valid rows")
    return out
