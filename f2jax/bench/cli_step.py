"""`f2jax bench train` and `f2jax bench gpu-check`: the train-step benchmarks' command lines.

`bench train --realistic` is the figure to quote (issue 26): Qwen3-0.6B, batch 16 × (2 + 7),
texts of log-normal length (mean 256) cut to 1024, packed rows, as the recipe trains; any flag
given explicitly overrides it. Without it the defaults are the small historical ones.
"""

from __future__ import annotations

import argparse
import json

from f2jax.model.options import ATTENTION_IMPLS, REMAT_NAMES
from f2jax.model.presets import SHAPES

PLAIN = dict(shape="tiny", batch=16, negatives=7, length=128, lengths="uniform", packing=False)
REALISTIC = dict(shape="0.6b", batch=16, negatives=7, length=1024, lengths="lognormal:256", packing=True)


def _lengths_mode(text: str) -> str:
    from f2jax.bench.lengths import check_lengths_mode

    try:
        return check_lengths_mode(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def train_defaults(args: argparse.Namespace) -> None:
    """Fill the shape/batch/length flags left unset from `REALISTIC` (`--realistic`) or `PLAIN`."""
    base = REALISTIC if args.realistic else PLAIN
    for key, value in base.items():
        if getattr(args, key) is None:
            setattr(args, key, value)


def _run_train(args: argparse.Namespace) -> int:
    from f2jax.bench.report import emit
    from f2jax.bench.train_step import bench_train_step

    train_defaults(args)
    result = bench_train_step(
        shape=args.shape, hidden=args.hidden, layers=args.layers, heads=args.heads, kv_heads=args.kv_heads,
        head_dim=args.head_dim, intermediate=args.intermediate, vocab=args.vocab, batch=args.batch,
        negatives=args.negatives, length=args.length, lengths=args.lengths, steps=args.steps,
        warmup=args.warmup, lr=args.lr, threads=args.threads, attn=args.attn, workdir=args.workdir,
        param_dtype=args.param_dtype, dtype=args.dtype, attention=args.attention, remat=args.remat,
        torch=args.torch, packing=args.packing, seq_chunk=args.seq_chunk,
    )
    side = "PyTorch/transformers" if args.torch else "no PyTorch side"
    title = (f"train ({result['shape']}, {result['dtype']} compute, f2jax jitted step vs {side}, "
             "median step; ratio_* = f2jax / PyTorch)")
    emit(title, result, args.json)
    return 0


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train-step time, tokens/s, MFU/HFU, memory: f2jax vs the PyTorch reference")
    p.add_argument("--realistic", action="store_true",
                   help="the figure to quote: --shape 0.6b --batch 16 --negatives 7 --length 1024 "
                        "--lengths lognormal:256 --packing (explicit flags override)")
    p.add_argument("--shape", default=None, choices=["tiny", *SHAPES],
                   help="model preset (default tiny: hidden 128, 2 layers); the flags below override it")
    for flag in ("--hidden", "--layers", "--heads", "--kv-heads", "--head-dim", "--intermediate", "--vocab"):
        p.add_argument(flag, type=int, default=None)
    p.add_argument("--batch", type=int, default=None, help="queries per step (default 16)")
    p.add_argument("--negatives", type=int, default=None, help="hard negatives per query (default 7)")
    p.add_argument("--length", type=int, default=None,
                   help="maximum tokens per text, the largest bucket (default 128; --realistic 1024)")
    p.add_argument("--lengths", type=_lengths_mode, default=None,
                   help="token-length mix: fixed | uniform (length/4..length; the default) | demo (the bundled "
                        "demo data) | lognormal:MEAN (passages mean MEAN, queries MEAN/4)")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                   help="compute dtype (torch: bf16 autocast); auto: bfloat16 on a GPU, else float32")
    p.add_argument("--param-dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--attention", default="auto", choices=list(ATTENTION_IMPLS), help="f2jax model.attention")
    p.add_argument("--remat", default="none", choices=list(REMAT_NAMES),
                   help="f2jax remat policy; any but none also turns on torch gradient checkpointing")
    p.add_argument("--steps", type=int, default=10, help="timed steps each, interleaved")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps each after the first")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: the cores XLA uses)")
    p.add_argument("--attn", default="auto", choices=["auto", "sdpa", "flash_attention_2", "eager"],
                   help="transformers attention kernel (auto: flash_attention_2 where installed, else sdpa)")
    p.add_argument("--no-torch", dest="torch", action="store_false", help="skip the PyTorch baseline")
    p.add_argument("--seq-chunk", type=int, default=0,
                   help="model.seq_chunk: at most this many sequences per device through a layer at once "
                        "(0: all; default 0)")
    p.add_argument("--packing", action=argparse.BooleanOptionalAction, default=None,
                   help="f2jax packs the texts into rows of --length (data.packing) instead of length buckets "
                        "(default off; --realistic on)")
    p.add_argument("--workdir", default=None)
    p.add_argument("--json", default=None, metavar="OUT")
    p.set_defaults(func=_run_train)


def _run_gpu_check(args: argparse.Namespace) -> int:
    from f2jax.bench.report import emit

    if args.suite == "perf":
        from f2jax.bench.perf_suite import markdown, perf_suite

        rows = tuple(r for r in (args.rows or "").split(",") if r) or None
        result = perf_suite(tiny=args.tiny, rows=rows, json_path=args.json, md_path=args.markdown)
        print(markdown(result))
        return 0
    from f2jax.bench.gpu_check import gpu_check

    parts = tuple(args.parts.split(","))
    result = gpu_check(tiny=args.tiny, remat=args.remat, param_dtype=args.param_dtype,
                       steps=args.steps, workdir=args.workdir, parts=parts)
    emit("gpu-check (bf16 parity, cudnn vs xla attention, 0.6B train step vs PyTorch)", result, args.json)
    print(json.dumps(result, indent=2))
    return 0


def add_gpu_check_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "gpu-check", help="one-GPU check: bf16/cuDNN parity vs transformers, packed attention kernels, "
                          "0.6B train step (--suite perf: the speed table)")
    p.add_argument("--suite", default="parity", choices=["parity", "perf"],
                   help="parity: the --parts below; perf: buckets vs packing, remat, 0.6B/1.7B (< 8 min on one H200)")
    p.add_argument("--tiny", action="store_true", help="tiny shapes (implied without a GPU): the CPU rehearsal")
    p.add_argument("--remat", default="full", choices=["none", "full", "dots", "dots_all"])
    p.add_argument("--param-dtype", default="float32", choices=["float32", "bfloat16"],
                   help="f2jax train-step parameter dtype (compute is bfloat16)")
    p.add_argument("--steps", type=int, default=None, help="timed train steps each (default 10; tiny 2)")
    p.add_argument("--parts", default="parity,attn,train",
                   help="comma-separated subset of parity,attn,packed,train to run (suite parity)")
    p.add_argument("--rows", default=None, help="comma-separated perf rows (suite perf; default all)")
    p.add_argument("--markdown", default=None, metavar="OUT", help="suite perf: also write the markdown table")
    p.add_argument("--workdir", default=None, help="where temporary checkpoints are written")
    p.add_argument("--json", default=None, metavar="OUT")
    p.set_defaults(func=_run_gpu_check)
