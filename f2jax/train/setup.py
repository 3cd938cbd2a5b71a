"""Turn a `RunConfig` into the pieces of a run: mesh, tokenizer, data, model, teacher, optimiser.

Everything that can be checked without compiling is checked here first, with the config key
named in the error.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import jax
from flax import nnx

from f2jax import distributed
from f2jax.config import ConfigError, ModelRuntime, RunConfig
from f2jax.hf.load import load_model
from f2jax.losses import mrl_dims as default_mrl_dims
from f2jax.model.config import Qwen3Config
from f2jax.model.qwen3 import ModelOptions, Qwen3Model, abstract_model
from f2jax.paths import Path, PathLike, as_path
from f2jax.sharding import MeshError, make_mesh, param_shardings
from f2jax.storage import local_copy

log = logging.getLogger(__name__)


def model_options(section: ModelRuntime, key: str) -> ModelOptions:
    """The runtime options of `model` or `teacher` (each from its own section)."""
    try:
        return section.options()
    except ValueError as err:
        raise ConfigError(f"{key}: {err}") from None


def _existing_dir(path: str, key: str) -> Path:
    p = as_path(path)
    if not p.exists():
        raise ConfigError(f"{key}: {p} does not exist")
    return p


def model_config(cfg: RunConfig, vocab_size: int) -> Qwen3Config:
    cfg.validate()  # exactly one of model.path / model.init
    m = cfg.model
    if m.path is not None:
        path = _existing_dir(m.path, "model.path")
        return Qwen3Config.from_pretrained(path)
    raw = {"model_type": "qwen3", "vocab_size": vocab_size, **m.init}
    try:
        return Qwen3Config.from_hf_dict(raw, source="model.init")
    except ValueError as err:
        raise ConfigError(f"model.init: {err}") from None


def resolve_mrl_dims(cfg: RunConfig, hidden: int) -> tuple[int, ...] | None:
    cfg.validate(hidden_size=hidden)
    if not cfg.train.mrl:
        return None
    return tuple(sorted(set(cfg.train.mrl_dims or default_mrl_dims(hidden))))


def build_mesh(cfg: RunConfig) -> jax.sharding.Mesh:
    try:
        mesh = make_mesh(cfg.mesh.data, cfg.mesh.fsdp, cfg.mesh.tensor)
    except MeshError as err:
        raise ConfigError(f"mesh: {err}") from None
    cfg.validate(data_parallel=mesh.shape["data"] * mesh.shape["fsdp"], processes=jax.process_count())
    return mesh


def check_static(cfg: RunConfig) -> None:
    """Everything checkable without devices: the config's own rules (`RunConfig.validate`) and
    that every path it names exists (local or a URL)."""
    cfg.validate()
    if cfg.data.raw not in (None, "demo"):
        _existing_dir(cfg.data.raw, "data.raw")
    if cfg.data.path is not None and cfg.data.raw is None:
        _existing_dir(cfg.data.path, "data.path")
    if cfg.teacher.path is not None:
        _existing_dir(cfg.teacher.path, "teacher.path")


def prepare_data(cfg: RunConfig, run_dir: PathLike, tokenizer_dir: Path | None) -> Path:
    """The tokenised data directory (a URL's local copy), tokenising `data.raw` first when
    needed: process 0 alone tokenises, the others wait for it (a coordination-service barrier,
    no device work), so the directory must be shared by all processes (or a URL)."""
    out = as_path(cfg.data.path) if cfg.data.path else as_path(run_dir) / "data"
    if cfg.data.raw is not None:
        if jax.process_index() == 0 and not (out / "meta.json").exists():
            from f2jax.data import demo_data_dir, tokenize_sources

            raw = demo_data_dir() if cfg.data.raw == "demo" else local_copy(cfg.data.raw)
            log.info("tokenising %s into %s", cfg.data.raw, out)
            tokenize_sources(raw, out, tokenizer_dir=tokenizer_dir, max_length=cfg.data.max_length,
                             negatives=cfg.data.negatives)
        distributed.barrier("f2jax_prepare_data")  # every process, whether or not it was needed
        if not (out / "meta.json").exists():
            raise ConfigError(f"data.raw: process 0 tokenised into {out}, which process {jax.process_index()} "
                              "cannot see: a multi-host run needs a shared run directory, or set data.path")
    return local_copy(out)


def tokenizer_dir(cfg: RunConfig) -> Path | None:
    if cfg.model.tokenizer:
        return _existing_dir(cfg.model.tokenizer, "model.tokenizer")
    if cfg.model.path and (as_path(cfg.model.path) / "tokenizer.json").exists():
        return as_path(cfg.model.path)
    return None


def build_params(qcfg: Qwen3Config, opts: ModelOptions, mesh: jax.sharding.Mesh, *,
                 path: str | None, seed: int) -> tuple[nnx.GraphDef, dict[str, Any]]:
    """(graphdef, sharded parameter dict): loaded from `path`, or freshly initialised."""
    if path is not None:
        model = load_model(path, opts, mesh=mesh, config=qcfg)
        graphdef, state = nnx.split(model)
        return graphdef, nnx.to_pure_dict(state)
    graphdef, abstract_state = abstract_model(qcfg, opts)
    shardings = param_shardings(abstract_state, mesh)

    def init() -> dict[str, Any]:
        return nnx.to_pure_dict(nnx.state(Qwen3Model(qcfg, opts, rngs=nnx.Rngs(seed))))

    return graphdef, jax.jit(init, out_shardings=shardings)()


def check_teacher(cfg: RunConfig, student: Qwen3Config) -> Qwen3Config | None:
    if cfg.teacher.path is None:
        return None
    teacher = Qwen3Config.from_pretrained(cfg.teacher.path)
    if teacher.hidden_size < student.hidden_size:
        raise ConfigError(f"teacher.path: teacher hidden size {teacher.hidden_size} is smaller than the "
                          f"student's {student.hidden_size}; KD truncates the teacher, it cannot widen it")
    if teacher.vocab_size < student.vocab_size:
        raise ConfigError("teacher.path: teacher vocabulary is smaller than the student's (same token ids needed)")
    return teacher


def check_teacher_embeddings(cfg: RunConfig, data_dir: Path, student: Qwen3Config) -> None:
    """With `teacher.embeddings`, check the stored teacher folder against the data and the
    student now, with the config key named, rather than at the first batch."""
    if not cfg.teacher.embeddings:
        return
    from f2jax.data.teacher import TEACHER_DIR, read_teacher_meta

    try:
        meta = read_teacher_meta(data_dir)
    except FileNotFoundError:
        raise ConfigError(f"teacher.embeddings: {as_path(data_dir) / TEACHER_DIR / 'meta.json'} does not exist; "
                          f"run `f2jax data teacher-embed {data_dir} --teacher MODEL_DIR` first") from None
    except ValueError as err:
        raise ConfigError(f"teacher.embeddings: {err}") from None
    if meta["hidden_size"] < student.hidden_size:
        raise ConfigError(f"teacher.embeddings: stored teacher hidden size {meta['hidden_size']} is smaller "
                          f"than the student's {student.hidden_size}; KD truncates the teacher, it cannot widen it")
    sources = read_json(as_path(data_dir) / "meta.json")["sources"]
    missing = [f"{src}.{key}" for src, info in sources.items()
               for key in ["query_instructed" if cfg.data.instructions and info.get("instruction") else "query"]
               if key not in meta["queries"].get(src, [])]
    if missing:
        raise ConfigError(f"teacher.embeddings: no stored vectors for {missing} (data.instructions="
                          f"{cfg.data.instructions}); rerun `f2jax data teacher-embed`")


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())
