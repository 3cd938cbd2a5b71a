"""`f2jax config show`: every key of the typed config with default, type and meaning, then the
resolved config; overrides anywhere after the command."""

from __future__ import annotations

import dataclasses
import io
import re

import yaml

from f2jax.cli import main
from f2jax.config import RunConfig
from f2jax.config_cli import config_keys, show


def _typed_keys(cls: type = RunConfig, prefix: str = "") -> list[str]:
    out = []
    for field in dataclasses.fields(cls):
        if dataclasses.is_dataclass(field.default_factory if field.default_factory is not dataclasses.MISSING
                                    else None):
            out += _typed_keys(field.default_factory, f"{prefix}{field.name}.")
        else:
            out.append(f"{prefix}{field.name}")
    return out


def test_every_key_has_a_meaning_and_is_listed():
    keys = _typed_keys()
    assert [k.key for k in config_keys()] == keys and len(keys) > 50
    assert all(k.meaning for k in config_keys()), [k.key for k in config_keys() if not k.meaning]
    out = io.StringIO()
    show(None, [], out)
    text = out.getvalue()
    for info in config_keys():
        assert re.search(rf"^  {re.escape(info.key)} .*{re.escape(info.meaning)}$", text, re.M), info.key
    assert re.search(r"^  train\.lr +1\.0e-05 +float +peak learning rate", text, re.M)
    assert re.search(r"^  train\.schedule +cosine +cosine\|constant ", text, re.M)


def test_show_prints_the_resolved_config(capsys):
    assert main(["config", "show", "train.steps=7", "--config", "configs/demo.yaml", "mesh.fsdp=1"]) == 0
    text = capsys.readouterr().out
    resolved = yaml.safe_load(text.split("resolved config (configs/demo.yaml + train.steps=7 + mesh.fsdp=1):\n")[1])
    assert resolved["train"]["steps"] == 7 and resolved["model"]["init"]["hidden_size"] == 128
    assert main(["config", "show", "train.lrr=3"]) == 2
    assert "did you mean train.lr?" in capsys.readouterr().err
