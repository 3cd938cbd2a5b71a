"""Child process of the load-memory benchmark: load one checkpoint, print memory as JSON.

Run in a fresh interpreter so the peak belongs to this load alone:
`python -m f2jax.bench.load_probe DIR --mode streaming|naive --dtype bfloat16`.
The last stdout line is the JSON result.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from typing import Any

from f2jax.paths import Path

MODES = ("streaming", "naive")


def _load_naive(path: Path, opts: Any) -> Any:
    """The obvious way: read every tensor into a dict, stack/transpose, then build the model."""
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx, traverse_util
    from safetensors.numpy import load_file

    from f2jax.hf.checkpoint import SafetensorsCheckpoint
    from f2jax.hf.load import validate_checkpoint
    from f2jax.hf.names import tensor_maps
    from f2jax.model.config import Qwen3Config
    from f2jax.model.qwen3 import abstract_model, as_dtype

    cfg = Qwen3Config.from_pretrained(path)
    ckpt = SafetensorsCheckpoint(path)
    prefix = validate_checkpoint(ckpt, cfg)
    tensors: dict[str, Any] = {}
    for file in ckpt.files:
        tensors.update(load_file(str(file)))
    dtype = as_dtype(opts.param_dtype)
    values = {}
    for tmap in tensor_maps(cfg):
        arrays = [tensors[prefix + n] for n in tmap.names(cfg.num_hidden_layers)]
        arrays = [a.T if tmap.transpose else a for a in arrays]
        host = arrays[0] if not tmap.per_layer else np.stack(arrays)
        values[tmap.path] = jnp.asarray(host, dtype)
    graphdef, state = abstract_model(cfg, opts)
    nnx.replace_by_pure_dict(state, traverse_util.unflatten_dict(values))
    return nnx.merge(graphdef, state)


def probe(
    path: str | Path, mode: str = "streaming", dtype: str = "bfloat16", timeline: bool = False
) -> dict[str, Any]:
    """Baseline RSS after imports, then load and report peak/final RSS (bytes) and load time."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from f2jax.bench import rss
    from f2jax.hf.load import load_model
    from f2jax.model.qwen3 import ModelOptions

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    jnp.zeros(8).block_until_ready()  # start the backend before the baseline
    gc.collect()
    opts = ModelOptions(param_dtype=dtype, dtype=dtype)
    peak_reset = rss.reset_peak()
    base = rss.status()
    start = time.perf_counter()
    with rss.Sampler() as sampler:
        model = load_model(path, opts) if mode == "streaming" else _load_naive(Path(path), opts)
        leaves = jax.tree.leaves(nnx.state(model))
        jax.block_until_ready(leaves)
    seconds = time.perf_counter() - start
    after = rss.status()
    gc.collect()
    settled = rss.status()
    result: dict[str, Any] = {
        "mode": mode,
        "load_s": seconds,
        "param_bytes": int(sum(x.nbytes for x in leaves)),
        "baseline_rss": base["VmRSS"],
        "peak_rss": after["VmHWM"],
        "peak_reset": peak_reset,
        "final_rss": after["VmRSS"],
        "final_rss_after_gc": settled["VmRSS"],
        "sampled_peak_anon": sampler.max.get("RssAnon", 0),
        "sampled_peak_file": sampler.max.get("RssFile", 0),
        "baseline_anon": base.get("RssAnon", 0),
        "baseline_file": base.get("RssFile", 0),
    }
    if timeline:
        result["timeline"] = sampler.timeline[:: max(1, len(sampler.timeline) // 400)]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--mode", choices=MODES, default="streaming")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument(
        "--timeline", action="store_true", help="include a sampled (t, anon, file) trace"
    )
    args = parser.parse_args(argv)
    print(json.dumps(probe(args.path, args.mode, args.dtype, args.timeline)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
