"""`f2jax bench gpu-check --suite perf`: the issue-26 speed table on one GPU in one short run.

Rows are `f2jax bench train` runs (`f2jax.bench.train_step`) at batch 16 × (2 + 7): length
buckets vs packing, remat none / dots / full, Qwen3-0.6B and 1.7B shapes, `lognormal:256` at
T 1024 and the demo lengths at T 512. PyTorch runs in one row only (the packed 0.6B one, for
the ratio); elsewhere it adds nothing new. After every row the JSON (one object: `rows` by
name, plus the environment) and a markdown table are rewritten, so a row that is killed by a
timeout loses only itself. Sized for < 8 minutes on one H200; `tiny` shrinks every row to run
on CPU in about a minute (the rehearsal).
"""

from __future__ import annotations

import json
import time
import traceback
from typing import Any

from f2jax.paths import Path

_QUOTE = dict(batch=16, negatives=7, length=1024, lengths="lognormal:256")
_DEMO = dict(batch=16, negatives=7, length=512, lengths="demo")
ROWS: dict[str, dict[str, Any]] = {
    "0.6b_ln256_buckets_full": dict(shape="0.6b", **_QUOTE, packing=False, remat="full"),
    "0.6b_ln256_packed_full": dict(shape="0.6b", **_QUOTE, packing=True, remat="full", torch=True),
    "0.6b_ln256_packed_dots": dict(shape="0.6b", **_QUOTE, packing=True, remat="dots"),
    "0.6b_ln256_packed_none": dict(shape="0.6b", **_QUOTE, packing=True, remat="none"),
    "0.6b_demo_buckets_full": dict(shape="0.6b", **_DEMO, packing=False, remat="full"),
    "0.6b_demo_packed_full": dict(shape="0.6b", **_DEMO, packing=True, remat="full"),
    "1.7b_ln256_packed_full": dict(shape="1.7b", **_QUOTE, packing=True, remat="full"),
    "1.7b_ln256_packed_dots": dict(shape="1.7b", **_QUOTE, packing=True, remat="dots"),
}
TINY = dict(shape="tiny", hidden=64, layers=2, heads=4, kv_heads=2, head_dim=16, intermediate=128, vocab=1024,
            batch=4, negatives=2, length=64)
TINY_LENGTHS = {"lognormal:256": "lognormal:16", "demo": "demo"}
STEPS = dict(steps=5, warmup=1)
# Per row in the table: (column, result key, format).
COLUMNS = (("kernel", "attention_kernel", "{}"), ("real / computed tokens", None, None),
           ("compile", "f2jax_compile_s", "{:.1f} s"), ("step", "f2jax_step_s", "{:.3f} s"),
           ("real tokens/s", "f2jax_tokens_per_s", "{:,.0f}"), ("MFU (real)", "f2jax_mfu_real", "{:.1%}"),
           ("compiled memory", "f2jax_mem_total_bytes", None), ("÷ PyTorch", "ratio_tokens_per_s", "{:.2f}×"))


def row_args(name: str, tiny: bool) -> dict[str, Any]:
    """`bench_train_step` keyword arguments of one row (shrunk with `tiny`)."""
    spec = dict(ROWS[name])
    torch = spec.pop("torch", False)
    if tiny:
        spec = {**spec, **TINY, "lengths": TINY_LENGTHS[spec["lengths"]]}
    return {**spec, **STEPS, "torch": torch, "dtype": "auto", "attention": "auto", "lr": 1e-5, "attn": "sdpa"}


def _cell(r: dict[str, Any], key: str | None, fmt: str | None, column: str) -> str:
    if column == "real / computed tokens":
        return f"{r.get('real_tokens', 0):,} / {r.get('padded_tokens', 0):,}"
    value = r.get(key) if key else None
    if value is None:
        return "—"
    if key == "f2jax_mem_total_bytes":
        return f"{value / 2**30:.1f} GiB" if value >= 2**30 else f"{value / 2**20:.0f} MiB"
    return fmt.format(value) if fmt else str(value)


def markdown(result: dict[str, Any]) -> str:
    """The rows as one markdown table (a failed row shows its error)."""
    head = "| row | " + " | ".join(c for c, _, _ in COLUMNS) + " |"
    lines = [f"`f2jax bench gpu-check --suite perf` on {result.get('device_kind')} (jax {result.get('jax')})", "",
             head, "|" + " --- |" * (len(COLUMNS) + 1)]
    for name, r in result["rows"].items():
        if "error" in r:
            lines.append(f"| {name} | error: {r['error'][:120]} |" + " |" * (len(COLUMNS) - 1))
            continue
        lines.append(f"| {name} | " + " | ".join(_cell(r, k, f, c) for c, k, f in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def _write(result: dict[str, Any], json_path: str | None, md_path: str | None) -> None:
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2, default=str) + "\n")
    if md_path:
        Path(md_path).write_text(markdown(result))


def perf_suite(*, tiny: bool = False, rows: tuple[str, ...] | None = None, json_path: str | None = None,
               md_path: str | None = None) -> dict[str, Any]:
    """Run `rows` (default: all), rewriting `json_path`/`md_path` after each; rows already in an
    existing `json_path` are kept (a later call adds to it)."""
    import jax

    from f2jax.bench.train_step import bench_train_step

    unknown = set(rows or ()) - set(ROWS)
    if unknown:
        raise ValueError(f"unknown perf rows {sorted(unknown)}; known: {list(ROWS)}")
    on_gpu = jax.default_backend() == "gpu"
    tiny = tiny or not on_gpu
    result: dict[str, Any] = {"rows": {}}
    if json_path and Path(json_path).exists():
        result = json.loads(Path(json_path).read_text())
    result.update(backend=jax.default_backend(), device_kind=jax.devices()[0].device_kind, jax=jax.__version__,
                  tiny=tiny)
    for name in rows or tuple(ROWS):
        start = time.perf_counter()
        try:
            r = bench_train_step(**row_args(name, tiny))
        except Exception as err:  # noqa: BLE001 - one failing row must not lose the others
            traceback.print_exc()
            r = {"error": f"{type(err).__name__}: {str(err)[:800]}"}
        r["row_seconds"] = time.perf_counter() - start
        result["rows"][name] = r
        jax.clear_caches()
        _write(result, json_path, md_path)
        print(f"perf row {name}: {r.get('f2jax_step_s', r.get('error'))} ({r['row_seconds']:.0f} s)", flush=True)
    return result
