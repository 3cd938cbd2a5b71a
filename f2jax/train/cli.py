"""`f2jax train` (and, with checkpoints, `f2jax export`)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path


def add_train_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train an embedding model (the F2LLM-v2 recipe)")
    p.add_argument("--config", required=True, help="YAML config (see configs/)")
    p.add_argument("--run-dir", default=None, help="run directory (default: runs/<config name>)")
    p.add_argument("--export", default=None,
                   help="write the final model here as a Hugging Face directory (default: RUN_DIR/export)")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.steps=100 mesh.data=8")
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from f2jax.config import load_config
    from f2jax.train.trainer import Trainer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_config(args.config, args.overrides)
    run_dir = Path(args.run_dir or Path("runs") / Path(args.config).stem)
    trainer = Trainer(cfg, run_dir)
    try:
        trainer.train()
        out = trainer.export(args.export or run_dir / "export")
        print(f"model written to {out}")
    finally:
        trainer.close()
    return 0
