"""Every user-given location may be a URL: no `pathlib` in f2jax, and each path key of the run
config reaches the filesystem layer as `gs://bucket/...`, unmangled."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest
from fake_bucket import fake_bucket

from f2jax.config import ConfigError, load_config
from f2jax.errors import F2JaxError
from f2jax.paths import as_path, display_name, existing, existing_dir, is_url
from f2jax.train import setup

PACKAGE = Path(__file__).resolve().parents[1] / "f2jax"


def test_no_module_imports_pathlib():
    """`pathlib.Path("gs://b/x")` is `gs:/b/x`; user paths are `f2jax.paths.Path` (epath)."""
    offenders = []
    for file in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) else [])
            if "pathlib" in names:
                offenders.append(f"{file.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert offenders == []


def test_urls_stay_urls():
    assert is_url("gs://b/x") and is_url("s3://b/x") and not is_url("/tmp/x") and not is_url("runs/x")
    assert os.fspath(as_path("gs://b/runs/x") / "checkpoints") == "gs://b/runs/x/checkpoints"
    assert os.fspath(as_path("~/x")) == os.path.expanduser("~/x")
    assert display_name("gs://b/models/m/") == "m"


def test_missing_paths_say_does_not_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"^DATA: .*/nope does not exist$"):
        existing(tmp_path / "nope", "DATA")
    (tmp_path / "f").write_text("x")
    with pytest.raises(FileNotFoundError, match="is a file, not a directory"):
        existing_dir(tmp_path / "f")


# (config key, how the run checks it): each must name the key and the URL as given.
CHECKS = {
    "model.path": lambda cfg: setup.model_config(cfg, 100),
    "model.tokenizer": setup.tokenizer_dir,
    "teacher.path": setup.check_static,
    "data.path": setup.check_static,
    "data.raw": setup.check_static,
}


@pytest.mark.parametrize("key", sorted(CHECKS))
def test_every_config_path_key_reaches_the_filesystem_as_a_url(key):
    url = f"gs://bucket/{key.replace('.', '_')}"
    base = ["data.raw=null", "data.path=/"] if key != "data.raw" else ["data.path=null"]
    overrides = [*base, *(["model.init=null"] if key == "model.path" else []), f"{key}={url}"]
    cfg = load_config("configs/demo.yaml", overrides)
    with fake_bucket() as bucket:
        with pytest.raises(ConfigError, match=f"^{key}: {url} does not exist$"):
            CHECKS[key](cfg)
        bucket().pipe(f"{url}/config.json", b"{}")  # now it exists, in the bucket only
        if key == "model.path":  # read through to the file: the fake config lacks every key
            with pytest.raises(F2JaxError, match=f"^{url}/config.json: "):
                CHECKS[key](cfg)
        elif key == "model.tokenizer":
            assert os.fspath(CHECKS[key](cfg)) == url
        else:
            CHECKS[key](cfg)
