"""Printing benchmark results: a two-column table for people, JSON for machines."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from f2jax.paths import Path

_BYTE_SUFFIXES = ("_bytes", "_rss", "_anon", "_file")


def _format(key: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if key.endswith(_BYTE_SUFFIXES) and isinstance(value, int):
        return f"{value / 1024**2:,.1f} MiB"
    if isinstance(value, float):
        return f"{value:,.4g}"
    return f"{value:,}"


def format_table(title: str, result: Mapping[str, Any]) -> str:
    width = max(len(k) for k in result) if result else 0
    lines = [title, "-" * max(len(title), width + 20)]
    lines += [f"{key:<{width}}  {_format(key, value)}" for key, value in result.items()]
    return "\n".join(lines)


def host_allocator() -> str:
    """The malloc this process runs on (`LD_PRELOAD`ed tcmalloc/jemalloc, else glibc).

    XLA:CPU allocates each execution's temporaries afresh; glibc returns blocks over 32 MiB to
    the kernel, so every step faults its pages in again. On the 2-core development machine the
    80m `bench train` step took 21.0 s on glibc and 5.2 s on tcmalloc (PyTorch 11.0 / 8.2 s),
    so CPU figures are only comparable on the same allocator."""
    preload = os.environ.get("LD_PRELOAD", "")
    for name in ("tcmalloc", "jemalloc", "mimalloc"):
        if name in preload:
            return name
    return "glibc"


def emit(title: str, result: Mapping[str, Any], json_path: str | Path | None = None) -> None:
    """Print the table (with the host allocator); also write it as JSON when json_path is given."""
    result = {**result, "host_allocator": host_allocator()}
    print(format_table(title, result))
    if json_path:
        Path(json_path).write_text(json.dumps(dict(result), indent=2) + "\n")
        print(f"wrote {json_path}")
