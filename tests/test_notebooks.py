"""The notebooks under notebooks/: stored without outputs, and executed end to end with their
tiny parameters (injected after the cell tagged "parameters", as papermill does) in a kernel
that runs this interpreter (the venv's python)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
TIMEOUT_S = 600  # per cell
PLOTS = {"01_quickstart.ipynb": 2, "02_finetune.ipynb": 1, "03_prune_distill.ipynb": 0}  # figures drawn

nbformat = pytest.importorskip("nbformat", reason="the notebooks extra (nbformat, nbclient, ipykernel) is needed")


def _tiny_parameters(workdir: Path) -> str:
    return f"# Injected by tests/test_notebooks.py\nTINY = True\nWORKDIR = {str(workdir)!r}\n"


def test_there_are_notebooks():
    assert [p.name for p in NOTEBOOKS] == ["01_quickstart.ipynb", "02_finetune.ipynb", "03_prune_distill.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs_and_has_one_parameters_cell(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    dirty = [i for i, c in enumerate(code) if c.outputs or c.execution_count is not None]
    assert not dirty, f"{path.name}: code cells {dirty} carry outputs/execution counts; strip them"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "TINY = False" in tagged[0].source and "WORKDIR" in tagged[0].source
    assert any("jax.default_backend()" in c.source for c in code)


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """A kernelspec named python3 whose kernel is this interpreter, found first via JUPYTER_PATH."""
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    jupyter = tmp_path_factory.mktemp("jupyter")
    spec = jupyter / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "f2jax test kernel", "language": "python"}))
    return jupyter


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_with_tiny_parameters(path, kernel_env, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    injected = nbformat.v4.new_code_cell(_tiny_parameters(tmp_path / "work"))
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(index + 1, injected)

    monkeypatch.setenv("JUPYTER_PATH", str(kernel_env))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend: figures become outputs
    monkeypatch.delenv("XLA_FLAGS", raising=False)  # one CPU device in the kernel (tests/conftest sets 8)
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    client = NotebookClient(nb, kernel_name="python3", timeout=TIMEOUT_S, allow_errors=False,
                            resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    client.execute()  # raises CellExecutionError on the first failing cell
    elapsed = time.perf_counter() - t0
    print(f"{path.name}: {elapsed:.1f} s")
    out = tmp_path / path.name
    nbformat.write(nb, out)  # the executed copy, for inspection when a later assertion fails
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o.get("name") == "stdout")
    assert "backend cpu" in text
    figures = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert figures >= PLOTS[path.name], f"{path.name}: {figures} figures"
