"""How to run a Qwen3 architecture: dtypes, attention kernel, gradient checkpointing.

The names are `Literal` types so that the run config (`f2jax.config`) checks them with the
dotted key before anything is built, and the model reads the same single definition: the
config's `model`/`teacher` sections are built from these fields and their meanings (`help`).
Annotations are evaluated (no `from __future__ import annotations`) so the config can read them.
"""

import dataclasses
import typing
from typing import Literal

DType = Literal["float32", "bfloat16", "float16"]
AttentionImpl = Literal["auto", "xla", "chunked", "dot_product", "cudnn", "splash"]
RematPolicy = Literal["none", "full", "dots", "dots_all"]

DTYPE_NAMES: tuple[str, ...] = typing.get_args(DType)
ATTENTION_IMPLS: tuple[str, ...] = typing.get_args(AttentionImpl)
REMAT_NAMES: tuple[str, ...] = typing.get_args(RematPolicy)


def check_choice(value: str, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise ValueError(f"{what} must be one of {choices}, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """Runtime options of one model (student or teacher); the architecture is `Qwen3Config`."""

    param_dtype: DType = dataclasses.field(
        default="float32", metadata={"help": "dtype the weights are stored (and optimised) in"})
    dtype: DType = dataclasses.field(default="float32", metadata={"help": "compute dtype"})
    attention: AttentionImpl = dataclasses.field(default="auto", metadata={
        "help": "attention kernel; auto: splash (TPU), cudnn (GPU, bf16/fp16), xla (CPU)"})
    remat: RematPolicy = dataclasses.field(default="none", metadata={
        "help": "gradient checkpointing policy of each layer (named remat policy)"})
    # With remat, the backward's working set of a layer scales with seq_chunk and the FLOPs do
    # not change; without remat every chunk's activations are kept anyway (only loop overhead).
    seq_chunk: int = dataclasses.field(default=0, metadata={
        "help": "at most this many sequences per device through a layer at once (0: all)"})

    def __post_init__(self) -> None:
        check_choice(self.param_dtype, DTYPE_NAMES, "param_dtype")
        check_choice(self.dtype, DTYPE_NAMES, "dtype")
        check_choice(self.attention, ATTENTION_IMPLS, "attention")
        check_choice(self.remat, REMAT_NAMES, "remat")
        if self.seq_chunk < 0:
            raise ValueError(f"seq_chunk must be >= 0 (0: no limit), got {self.seq_chunk}")
