"""`f2jax train` (and, with checkpoints, `f2jax export`)."""

from __future__ import annotations

import argparse
import os


def add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train an embedding model (the F2LLM-v2 recipe)")
    p.add_argument("--config", required=True, help="YAML config (see configs/)")
    p.add_argument("--run-dir", default=None, help="run directory (default: runs/<config name>)")
    p.add_argument("--export", default=None,
                   help="write the final model here as a Hugging Face directory (default: RUN_DIR/export)")
    p.add_argument("--distributed", action="store_true",
                   help="multi-host: call jax.distributed.initialize() (auto-detected on TPU pods / SLURM)")
    p.add_argument("--coordinator", default=None, help="host:port of process 0 (with --distributed)")
    p.add_argument("--num-processes", type=int, default=None,
                   help="number of processes in the job (with --distributed; default: auto-detected, or env "
                        "F2JAX_NUM_PROCESSES)")
    p.add_argument("--process-id", type=int, default=None,
                   help="this process's index, 0 .. N-1 (with --distributed; default: auto-detected, or env "
                        "F2JAX_PROCESS_ID)")
    p.add_argument("--init-timeout", type=int, default=None,
                   help="seconds for all processes to connect (default 1800; env F2JAX_INIT_TIMEOUT)")
    p.add_argument("--heartbeat-timeout", type=int, default=None,
                   help="seconds without heartbeat before a peer counts as dead (default 100)")
    p.add_argument("overrides", nargs="*",
                   help="key=value overrides, anywhere after `train`, e.g. train.steps=100 mesh.data=8; "
                        "every key with its default and meaning: `f2jax config show`")
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from f2jax.distributed import ensure_cpu_collective_threads

    ensure_cpu_collective_threads()  # before JAX starts its CPU backend (simulated devices)
    if args.distributed:
        import logging

        from f2jax import distributed

        known_id = args.process_id if args.process_id is not None else os.environ.get(distributed.ENV_PROCESS_ID)
        if known_id not in (None, "", 0, "0"):  # quiet from the start (before joining) where known
            logging.getLogger("f2jax").setLevel(logging.WARNING)
        pg = distributed.initialize(args.coordinator, args.num_processes, args.process_id,
                                    init_timeout_s=args.init_timeout, heartbeat_timeout_s=args.heartbeat_timeout)
        if pg.process_id != 0:  # one process speaks; the others report warnings and errors only
            logging.getLogger("f2jax").setLevel(logging.WARNING)
        try:
            return _train(args)
        except Exception as err:
            if distributed.is_peer_failure(err):
                distributed.peer_failure(f"a collective failed ({distributed.first_line(err)})")
            raise
    return _train(args)


def _train(args: argparse.Namespace) -> int:
    from f2jax.config import load_config
    from f2jax.train.paths import default_run_dir
    from f2jax.train.trainer import Trainer

    cfg = load_config(args.config, args.overrides)
    run_dir = default_run_dir(args.run_dir, args.config)  # gs:// URLs stay URLs
    trainer = Trainer(cfg, run_dir)
    try:
        trainer.train()
        if trainer.preempted:
            steps = trainer.checkpointer.steps()
            print(f"preempted: checkpoint step {steps[-1] if steps else '?'} saved in "
                  f"{trainer.checkpointer.directory}; rerun the same command to resume")
            return 0
        out = trainer.export(args.export or os.fspath(run_dir / "export"))
        print(f"model written to {out}")
    finally:
        trainer.close()
    return 0


def add_export_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="write a saved training step as a Hugging Face dir")
    p.add_argument("run_dir", help="run directory of `f2jax train` (holds checkpoints/)")
    p.add_argument("out_dir", help="output directory (transformers + sentence-transformers)")
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest valid)")
    p.set_defaults(func=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from f2jax.train.export import export_checkpoint

    step, out = export_checkpoint(args.run_dir, args.out_dir, step=args.step)
    print(f"checkpoint step {step} written to {out}")
    return 0
