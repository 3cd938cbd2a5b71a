"""`f2jax prune MODEL --calibration DATA --preset 330m --output OUT`; registered by f2jax.cli
through `add_prune_parser`. Heavy imports happen when the command runs."""

from __future__ import annotations

import argparse
import json


def _run(args: argparse.Namespace) -> int:
    from f2jax.prune.prune import Calibration, prune_checkpoint

    calib = Calibration(data=args.calibration, batches=args.batches, batch_size=args.batch_size,
                        max_length=args.max_length, eval_batches=args.eval_batches, negatives=args.negatives)
    dims = {"hidden_size": args.hidden, "num_hidden_layers": args.layers, "intermediate_size": args.intermediate,
            "num_attention_heads": args.heads, "num_key_value_heads": args.kv_heads}
    report = prune_checkpoint(args.model, args.output, calibration=calib, preset=args.preset, dims=dims,
                              scores_file=args.scores, steps=args.steps, depth_metric=args.depth_metric)
    print(json.dumps({k: report[k] for k in ("source_params", "params", "seconds")} | {"output": args.output}))
    return 0


def add_prune_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "prune", help="prune a Qwen3 embedder to a smaller shape (F2LLM-v2 80m/160m/330m students)",
        description="Score layers (block influence) and hidden/MLP channels and heads (Minitron activation "
                    "importance) on calibration data, cut the model to the target shape and write a Qwen3 + "
                    "sentence-transformers directory. Unspecified dimensions keep the model's (or the preset's).")
    p.add_argument("model", help="Hugging Face Qwen3 directory (safetensors) to prune")
    p.add_argument("--calibration", default=None, metavar="DATA",
                   help="tokenised data dir (`f2jax data tokenize`), raw parquet sources, or 'demo'")
    p.add_argument("--output", required=True, metavar="OUT", help="directory for the pruned model")
    p.add_argument("--preset", choices=["80m", "160m", "330m"], default=None,
                   help="F2LLM-v2 student shape (hidden/layers/intermediate; heads stay)")
    p.add_argument("--hidden", type=int, default=None, help="hidden size")
    p.add_argument("--layers", type=int, default=None, help="number of layers")
    p.add_argument("--intermediate", type=int, default=None, help="MLP intermediate size")
    p.add_argument("--heads", type=int, default=None, help="query heads (within kept KV groups)")
    p.add_argument("--kv-heads", type=int, default=None, help="KV groups (each with its query heads)")
    p.add_argument("--scores", default=None, metavar="FILE",
                   help="importance scores (.npz or .json): reused if FILE exists, else written there")
    p.add_argument("--steps", type=int, default=1, help="prune gradually through N shapes, re-scoring each")
    p.add_argument("--batches", type=int, default=64, help="calibration batches per scoring pass")
    p.add_argument("--batch-size", type=int, default=16, help="rows per calibration batch")
    p.add_argument("--max-length", type=int, default=512, help="calibration tokens per sequence")
    p.add_argument("--depth-metric", choices=["block_influence", "drop_loss"], default="block_influence",
                   help="rank layers by block influence, or by the held-out loss rise when dropped (slower)")
    p.add_argument("--eval-batches", type=int, default=8, help="held-out batches for --depth-metric drop_loss")
    p.add_argument("--negatives", action="store_true", help="also score on hard negatives")
    p.set_defaults(func=_run)
    return p
