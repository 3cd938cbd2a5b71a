"""The CLI's parser: `f2jax --help` (and each command's help) starts no heavy library, and
`key=value` overrides may follow a command's options."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from f2jax.cli import build_parser, parse_args

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("jax", "jaxlib", "flax", "optax", "orbax", "grain", "tensorflow_datasets", "transformers", "torch", "mteb")

HELP_SCRIPT = textwrap.dedent("""
    import sys
    from f2jax.cli import main
    for argv in ([], *([c] for c in sys.argv[1:])):
        try:
            main([*argv, "--help"])
        except SystemExit as stop:
            assert stop.code == 0, (argv, stop.code)
    heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))
    print("HEAVY", heavy)
""").format(heavy=HEAVY)


def test_help_imports_no_heavy_module():
    commands = ["train", "export", "encode", "eval", "data", "prune", "bench", "config", "plot"]
    result = subprocess.run([sys.executable, "-c", HELP_SCRIPT, *commands], capture_output=True, text=True,
                            cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "HEAVY []" in result.stdout, result.stdout[-500:]
    for command in commands:
        assert command in result.stdout


def test_overrides_may_follow_options():
    parser = build_parser()
    args = parse_args(parser, ["train", "--config", "X", "train.steps=3", "--run-dir", "R", "mesh.data=1"])
    assert (args.config, args.run_dir, args.overrides) == ("X", "R", ["train.steps=3", "mesh.data=1"])
    args = parse_args(parser, ["train", "a=1", "--config", "X", "b=2", "--run-dir", "R", "c=3"])
    assert args.overrides == ["a=1", "b=2", "c=3"]  # in order: the last assignment of a key wins
    with pytest.raises(SystemExit):  # an unknown option stays an error
        parse_args(parser, ["train", "--config", "X", "a=1", "--no-such-option"])
    with pytest.raises(SystemExit):  # so does a stray positional of a command without overrides
        parse_args(parser, ["export", "RUN", "OUT", "extra"])


def test_train_num_processes_and_process_id_have_help():
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    helps = {a.dest: a.help for a in train._actions}
    assert helps["num_processes"] and helps["process_id"] and "config show" in helps["overrides"]
