"""XLA's per-device buffer sizes of a compiled computation: the one place that reads
`memory_analysis()` (the train step's log line, the benchmarks, the mining block check)."""

from __future__ import annotations

from typing import Any

FIELDS = ("argument", "output", "temp", "alias", "generated_code")


def compiled_memory(compiled: Any) -> dict[str, int] | None:
    """{argument,output,temp,alias,generated_code,total}_bytes, total = argument + output +
    temp - alias (what the computation holds at its peak); None where the backend reports none."""
    try:
        mem = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend implements it
        return None
    if mem is None:
        return None
    out = {f"{name}_bytes": int(getattr(mem, f"{name}_size_in_bytes")) for name in FIELDS}
    out["total_bytes"] = out["argument_bytes"] + out["output_bytes"] + out["temp_bytes"] - out["alias_bytes"]
    return out
