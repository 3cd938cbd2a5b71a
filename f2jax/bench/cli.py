"""`f2jax bench load-memory | compile | encode | train | step-memory | gpu-check | data | checkpoint | mteb
| mine | prune`.

Each runs one benchmark and prints a table (`--json OUT` also writes it).

Registered by `f2jax.cli` through `add_bench_parser`; also runnable on its own as
`python -m f2jax.bench.cli ...`. Benchmark modules are imported only when their command runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from f2jax.bench.cli_step import add_gpu_check_parser, add_train_parser
from f2jax.bench.mine import add_mine_bench_parser
from f2jax.model.options import ATTENTION_IMPLS
from f2jax.model.presets import QWEN3_06B


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _add_shape_args(p: argparse.ArgumentParser, layers_type: type | object = int) -> None:
    """Model-shape flags; defaults are Qwen3-0.6B."""
    d = QWEN3_06B
    p.add_argument("--layers", type=layers_type, default=d["num_hidden_layers"])
    p.add_argument("--hidden", type=int, default=d["hidden_size"])
    p.add_argument("--intermediate", type=int, default=d["intermediate_size"])
    p.add_argument("--heads", type=int, default=d["num_attention_heads"])
    p.add_argument("--kv-heads", type=int, default=d["num_key_value_heads"])
    p.add_argument("--head-dim", type=int, default=d["head_dim"])
    p.add_argument("--vocab", type=int, default=d["vocab_size"])
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    p.add_argument("--json", default=None, metavar="OUT", help="also write the results as JSON")


def _config(args: argparse.Namespace, layers: int):  # -> Qwen3Config (imported lazily)
    from f2jax.bench.synth import qwen3_config

    return qwen3_config(
        num_hidden_layers=layers,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_attention_heads=args.heads,
        num_key_value_heads=args.kv_heads,
        head_dim=args.head_dim,
        vocab_size=args.vocab,
    )


def _run_load_memory(args: argparse.Namespace) -> int:
    from f2jax.bench.load_memory import bench_load_memory
    from f2jax.bench.report import emit

    shard = int(args.shard_mb * 1024**2) if args.shard_mb else None
    result = bench_load_memory(
        _config(args, args.layers),
        dtype=args.dtype,
        naive=args.naive,
        max_shard_bytes=shard,
        workdir=args.workdir,
        keep=args.keep,
    )
    emit("load-memory (bytes as MiB; ratios vs safetensors bytes on disk)", result, args.json)
    return 0


def _run_compile(args: argparse.Namespace) -> int:
    from f2jax.bench.compile import bench_compile
    from f2jax.bench.report import emit

    result = bench_compile(
        _config(args, args.layers[0]),
        args.layers,
        dtype=args.dtype,
        batch=args.batch,
        seq_len=args.seq_len,
        repeats=args.repeats,
        remat=args.remat,
        backward=not args.forward_only,
    )
    emit("compile (seconds: jit lower + XLA compile, abstract params)", result, args.json)
    return 0


def _run_encode(args: argparse.Namespace) -> int:
    from f2jax.bench.encode import bench_encode
    from f2jax.bench.report import emit

    result = bench_encode(args.texts, args.batch_size, hidden=args.hidden, layers=args.layers, heads=args.heads,
                          kv_heads=args.kv_heads, max_length=args.max_length, repeats=args.repeats,
                          workdir=args.workdir)
    emit("encode (f2jax Encoder vs sentence-transformers, float32 CPU)", result, args.json)
    return 0


def _mesh_shape(text: str) -> tuple[int, int, int]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise argparse.ArgumentTypeError(f"expected data,fsdp,tensor (one may be -1), got {text!r}")
    return values  # type: ignore[return-value]


def _add_seq_chunk(p: argparse.ArgumentParser, default: int) -> None:
    p.add_argument("--seq-chunk", type=int, default=default,
                   help=f"model.seq_chunk: at most this many sequences per device through a layer at once "
                        f"(0: all; default {default})")


def _run_step_memory(args: argparse.Namespace) -> int:
    from f2jax.bench.report import emit
    from f2jax.bench.step_memory import DEFAULT_MESHES, bench_step_memory

    result = bench_step_memory(devices=args.devices, meshes=args.mesh or DEFAULT_MESHES, batch=args.batch,
                               negatives=args.negatives, length=args.length, model=args.model, remat=args.remat,
                               attention=args.attention, seq_chunk=args.seq_chunk, cpu_faithful=args.cpu_faithful)
    title = "step-memory (compiled bytes per device, abstract sharded args, CPU stand-in devices)"
    emit(title, result, args.json)
    return 0


def _run_data(args: argparse.Namespace) -> int:
    from f2jax.bench.data import bench_data
    from f2jax.bench.report import emit

    result = bench_data(synthetic_rows=args.synthetic_rows, max_length=args.max_length)
    emit("data (tokenise, pipeline sequences/s, padding efficiency)", result, args.json)
    return 0


def _run_checkpoint(args: argparse.Namespace) -> int:
    from f2jax.bench.checkpoint import kill_trials, time_saves
    from f2jax.bench.report import emit

    result = time_saves(args.model, saves=args.saves)
    if args.trials:
        trials = kill_trials(args.data, args.trials)
        result["trials"] = len(trials)
        result["trials_rerun_ok"] = sum(t["rerun_ok"] for t in trials)
        result["max_steps_lost"] = max(t["steps_lost"] for t in trials)
        result["max_loss_diff"] = max(t["max_loss_diff"] for t in trials)
    emit("checkpoint (seconds the loop is blocked per save; kill-and-resume trials)", result, args.json)
    return 0


def _run_mteb(args: argparse.Namespace) -> int:
    from f2jax.bench.mteb_throughput import EXAMPLES, bench_mteb_throughput
    from f2jax.bench.report import emit

    result = bench_mteb_throughput(args.model, args.tasks or EXAMPLES, repeats=args.repeats,
                                   batch_size=args.batch_size)
    flat = {f"{side}_{key}": value for side, r in result.items() for key, value in r.items()}
    emit("mteb (texts/s inside encode: f2jax MTEBModel vs sentence-transformers)", flat, args.json)
    return 0


def _run_prune(args: argparse.Namespace) -> int:
    from f2jax.bench.prune import bench_prune_memory, bench_prune_quality
    from f2jax.bench.report import emit

    if args.what == "memory":
        rows = bench_prune_memory(args.workdir)
        result = {f"{r['preset']}_{key}": value for r in rows for key, value in r.items() if key != "preset"}
    else:
        nested = bench_prune_quality(args.workdir, teacher_steps=args.teacher_steps,
                                     student_steps=args.student_steps)
        result = {f"{model}_{key}": value for model, r in nested.items() for key, value in r.items()}
    emit(f"prune {args.what}", result, args.json)
    return 0


def _add_more_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune", help="prune time + peak RSS per preset (memory); demo-data quality (quality)")
    p.add_argument("what", choices=["memory", "quality"])
    p.add_argument("--workdir", default="runs/bench_prune")
    p.add_argument("--teacher-steps", type=int, default=300)
    p.add_argument("--student-steps", type=int, default=200)
    p.add_argument("--json", default=None, metavar="OUT")
    p.set_defaults(func=_run_prune)

    p = sub.add_parser("data", help="tokenise and pipeline throughput, padding efficiency (demo + synthetic)")
    p.add_argument("--synthetic-rows", type=int, default=100_000, help="0 skips the synthetic source")
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--json", default=None, metavar="OUT")
    p.set_defaults(func=_run_data)

    p = sub.add_parser("checkpoint", help="how long a save blocks the loop (async vs sync); kill trials")
    p.add_argument("--model", choices=["demo", "0.6b"], default="demo")
    p.add_argument("--saves", type=int, default=3)
    p.add_argument("--trials", type=int, default=0, help="SIGKILL-and-resume trials (needs --data)")
    p.add_argument("--data", default=None, help="tokenised demo data (for --trials)")
    p.add_argument("--json", default=None, metavar="OUT")
    p.set_defaults(func=_run_checkpoint)

    p = sub.add_parser("mteb", help="encode throughput inside mteb vs sentence-transformers (same model)")
    p.add_argument("model", help="Hugging Face / f2jax export directory")
    p.add_argument("--tasks", default=None, help="local task folder (default: the bundled examples)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--json", default=None, metavar="OUT")
    p.set_defaults(func=_run_mteb)


def add_bench_parser(subparsers: argparse._SubParsersAction) -> None:
    bench = subparsers.add_parser(
        "bench",
        help="benchmarks: load memory, compile time, encode throughput, train step, step memory",
    )
    sub = bench.add_subparsers(dest="bench_command", required=True)

    p = sub.add_parser(
        "load-memory", help="peak host RSS of loading a random Qwen3-shaped checkpoint"
    )
    _add_shape_args(p)
    p.add_argument(
        "--naive", action="store_true", help="also measure load_file-everything-then-build"
    )
    p.add_argument(
        "--shard-mb", type=float, default=None, help="write shards of at most this size + index"
    )
    p.add_argument("--workdir", default=None, help="where the temporary checkpoint is written")
    p.add_argument("--keep", action="store_true", help="keep the checkpoint and print its path")
    p.set_defaults(func=_run_load_memory)

    p = sub.add_parser(
        "compile", help="jit compile seconds at several depths (forward, forward+backward)"
    )
    _add_shape_args(p, layers_type=_int_list)
    p.set_defaults(layers=[2, 28])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--repeats", type=int, default=1, help="best of this many compiles per size")
    p.add_argument("--remat", default="none", choices=["none", "full", "dots", "dots_all"])
    p.add_argument("--forward-only", action="store_true", help="skip the forward+backward compile")
    p.set_defaults(func=_run_compile)

    p = sub.add_parser(
        "encode", help="Encoder.encode texts/s vs sentence-transformers on a tiny model"
    )
    p.add_argument("--texts", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument(
        "--repeats", type=int, default=3, help="timed runs each (interleaved); best is kept"
    )
    p.add_argument("--workdir", default=None)
    p.add_argument("--json", default=None, metavar="OUT")
    p.set_defaults(func=_run_encode)

    add_train_parser(sub)

    p = sub.add_parser(
        "step-memory", help="compiled memory per device of the sharded train step on N CPU devices"
    )
    p.add_argument("--devices", type=int, default=64)
    p.add_argument(
        "--mesh", type=_mesh_shape, action="append", default=None,
        help="data,fsdp,tensor; repeatable (default: 8,8,1 and 4,16,1)",
    )
    p.add_argument("--batch", type=int, default=512, help="global queries per step")
    p.add_argument("--negatives", type=int, default=7)
    p.add_argument("--length", type=int, default=1024)
    p.add_argument("--model", default="0.6b", choices=["0.6b"])
    p.add_argument("--remat", default="full", choices=["none", "full", "dots", "dots_all"])
    p.add_argument("--attention", default="chunked", choices=list(ATTENTION_IMPLS),
                   help="model.attention of the compiled step (chunked: no [T, T] logits per layer)")
    _add_seq_chunk(p, 4)
    p.add_argument("--cpu-faithful", action=argparse.BooleanOptionalAction, default=True,
                   help="disable XLA:CPU's while-loop-invariant-code-motion, which adds an f32 copy "
                        "of the saved layer inputs that TPU/GPU do not make (default: on)")
    p.add_argument("--json", default=None, metavar="OUT")
    p.set_defaults(func=_run_step_memory)

    add_gpu_check_parser(sub)
    _add_more_parsers(sub)
    add_mine_bench_parser(sub)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="f2jax")
    add_bench_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
