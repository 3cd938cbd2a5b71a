"""Typed run configuration: YAML file + `key=value` overrides -> validated dataclasses.

Unknown keys and ill-typed values fail with the dotted key that caused them, before anything
is loaded or compiled.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from f2jax.errors import F2JaxError
from f2jax.model.options import AttentionImpl, DType, ModelOptions, RematPolicy


class ConfigError(F2JaxError, ValueError):
    """A configuration that cannot work; the message names the offending key."""

    kind = "configuration error"


@dataclasses.dataclass
class ModelRuntime:
    """How a model runs (shared by the student `model` and a co-hosted `teacher`)."""

    param_dtype: DType = "float32"
    dtype: DType = "float32"  # compute dtype
    attention: AttentionImpl = "auto"  # per backend: splash (TPU), cudnn (GPU, bf16/fp16), xla (CPU)
    remat: RematPolicy = "none"
    seq_chunk: int = 0  # at most this many sequences per device through a layer at once (0: all)

    def options(self) -> ModelOptions:
        return ModelOptions(param_dtype=self.param_dtype, dtype=self.dtype, attention=self.attention,
                            remat=self.remat, seq_chunk=self.seq_chunk)


@dataclasses.dataclass
class ModelSection(ModelRuntime):
    path: str | None = None  # Hugging Face Qwen3 directory to start from
    init: dict[str, Any] | None = None  # or a config.json-style dict: a fresh random model
    init_seed: int = 0
    tokenizer: str | None = None  # default: the model directory, else the bundled Qwen3 tokenizer


@dataclasses.dataclass
class TeacherSection(ModelRuntime):
    path: str | None = None  # a frozen Qwen3 teacher for distillation (same tokenizer)
    embeddings: bool = False  # or its vectors precomputed into data.path/teacher (`f2jax data teacher-embed`)
    param_dtype: DType = "bfloat16"  # frozen: no optimiser, so half-size weights are enough
    dtype: DType = "bfloat16"
    weight: float = 1.0  # kd_weight


@dataclasses.dataclass
class DataSection:
    path: str | None = None  # tokenised data directory (`f2jax data tokenize` output)
    raw: str | None = None  # raw parquet sources tokenised into `path` (or run_dir/data) if absent; "demo"
    global_batch_size: int = 16
    max_length: int = 1024
    buckets: list[int] | None = None
    negatives: dict[str, int] | None = None
    instructions: bool = False
    holdout: float = 0.01
    max_rows_per_source: int | None = 80_000
    num_threads: int = 2
    packing: bool = False  # pack each step's texts into rows of pack_length (segment-aware attention)
    pack_length: int | None = None  # packed row length T; default data.max_length


@dataclasses.dataclass
class TrainSection:
    seed: int = 0
    steps: int | None = None  # default: epochs × steps per epoch
    epochs: int = 1
    lr: float = 1e-5
    min_lr: float = 1e-7
    warmup_steps: int = 0
    schedule: Literal["cosine", "constant"] = "cosine"
    weight_decay: float = 0.01
    b1: float = 0.9
    b2: float = 0.98
    clip_norm: float = 1.0
    grad_accum: int = 1
    temperature: float = 0.05
    mrl: bool = True
    mrl_dims: list[int] | None = None
    inbatch_passage_gradient: bool = True
    log_every: int = 10
    eval_every: int = 0
    eval_batches: int = 8


@dataclasses.dataclass
class MeshSection:
    data: int = -1
    fsdp: int = 1
    tensor: int = 1


@dataclasses.dataclass
class CheckpointSection:
    every: int = 0  # steps; 0 = only at epoch ends and on preemption
    keep: int = 3
    keep_every: int | None = None
    async_save: bool = True
    allow_config_change: bool = False  # resume a run dir whose checkpoints were made with another config


@dataclasses.dataclass
class RunConfig:
    model: ModelSection = dataclasses.field(default_factory=ModelSection)
    teacher: TeacherSection = dataclasses.field(default_factory=TeacherSection)
    data: DataSection = dataclasses.field(default_factory=DataSection)
    train: TrainSection = dataclasses.field(default_factory=TrainSection)
    mesh: MeshSection = dataclasses.field(default_factory=MeshSection)
    checkpoint: CheckpointSection = dataclasses.field(default_factory=CheckpointSection)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def check_packing(cfg: RunConfig) -> None:
    """`data.packing` settings that cannot work, named by key (before anything is built)."""
    d = cfg.data
    if d.pack_length is not None and d.pack_length < d.max_length:
        raise ConfigError(f"data.pack_length ({d.pack_length}) must be >= data.max_length ({d.max_length}): "
                          "every text must fit one packed row")
    if not d.packing:
        return
    for key, section in (("model", cfg.model), ("teacher", cfg.teacher if cfg.teacher.path else None)):
        if section is not None and section.attention == "cudnn":
            raise ConfigError(f"{key}.attention: cudnn cannot take packed batches; use data.packing=false or "
                              "attention xla/chunked")


def _check_type(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _check_type(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if hint is Any:
        return value
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{key}: expected one of {list(choices)}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint)
        return [_check_type(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        _, item = typing.get_args(hint)
        return {k: _check_type(v, item, f"{key}.{k}") for k, v in value.items()}
    if hint is float and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            return float(value)  # YAML 1.1 reads "5e-3" (no dot) as a string
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if hint is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if not isinstance(value, hint):
        raise ConfigError(f"{key}: expected {hint.__name__}, got {value!r}")
    return value


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        keys = ", ".join(f"{prefix}{k}" for k in unknown)
        raise ConfigError(f"unknown config key(s): {keys} (known under {prefix or 'top level'}: {sorted(names)})")
    kwargs = {}
    for name, value in data.items():
        hint, key = hints[name], f"{prefix}{name}"
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value or {}, f"{key}.")
        else:
            kwargs[name] = _check_type(value, hint, key)
    return cls(**kwargs)


def apply_override(tree: dict[str, Any], assignment: str) -> None:
    """`a.b.c=value` with a YAML-parsed value, in place."""
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} must look like key=value")
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {key}: {part} is not a section")
    node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else value
    return out


def read_yaml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A YAML config; `include: other.yaml` (relative to the file) is read first, then overridden."""
    file = Path(path)
    if not file.exists():
        raise ConfigError(f"config file {file} not found")
    if file.resolve() in _seen:
        raise ConfigError(f"{file}: include cycle")
    tree = yaml.safe_load(file.read_text()) or {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{file}: the top level must be a mapping")
    include = tree.pop("include", None)
    if include is not None:
        tree = _merge(read_yaml(file.parent / include, (*_seen, file.resolve())), tree)
    return tree


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    tree: dict[str, Any] = read_yaml(path) if path is not None else {}
    for assignment in overrides or []:
        apply_override(tree, assignment)
    return _build(RunConfig, tree, "")


def dump_config(cfg: RunConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def config_from_dict(tree: dict[str, Any]) -> RunConfig:
    """A `RunConfig` from `RunConfig.to_dict()` output (e.g. the copy stored in a checkpoint)."""
    return _build(RunConfig, tree, "")
