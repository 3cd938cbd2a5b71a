"""Orbax checkpoints of a run: params, optimiser state + step, data-iterator state, metadata.

Items are stored separately so that an export can restore the parameters alone (no optimiser
moments in host memory). Restores take the *current* mesh's shardings as targets, so a run can
resume on a different mesh shape. A checkpoint that fails to restore or validate is reported,
moved aside and skipped in favour of the previous one: never silently loaded.

On disk: `params` (the parameter dict), `train` ({"opt_state", "step"}), `data` (the Grain
iterator state) and `meta` (JSON); a `TrainState` is split into and rebuilt from these items.

The directory may be a URL (`gs://bucket/run/checkpoints`): it reaches Orbax as an
`etils.epath.Path`, unchanged. With several processes every call here is collective (all
processes save and restore the same steps); Orbax writes each process's shards.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

from f2jax import distributed
from f2jax.config import CheckpointSection
from f2jax.errors import F2JaxError
from f2jax.paths import PathLike, absolute
from f2jax.train.state import TrainState, abstract_like

__all__ = ["CORRUPT_DIR", "CheckpointError", "Checkpointer", "Restored", "TrainState", "abstract_like"]

log = logging.getLogger(__name__)
CORRUPT_DIR = "corrupt"  # sibling of the step directories; orbax ignores non-integer names


class CheckpointError(F2JaxError, RuntimeError):
    """A checkpoint could not be saved (surfaced from a background save) or found."""

    kind = "checkpoint error"


@dataclasses.dataclass
class Restored:
    step: int
    state: TrainState  # on the target's shardings; opt_state/step None for a params-only target
    data: dict[str, Any]  # the Grain iterator state
    meta: dict[str, Any]  # {"step", "seeds", "config", "saved_at"}


def preservation(cfg: CheckpointSection) -> pp.PreservationPolicy:
    """Keep the newest `keep` checkpoints plus every `keep_every`-th step for good."""
    policies: list[pp.PreservationPolicy] = [pp.LatestN(n=max(cfg.keep, 1))]
    if cfg.keep_every:
        policies.append(pp.EveryNSteps(interval_steps=cfg.keep_every))
    return pp.AnyPreservationPolicy(policies)


@jax.jit
def _all_finite(tree: Any) -> jax.Array:
    leaves = [
        jnp.all(jnp.isfinite(x))
        for x in jax.tree.leaves(tree)
        if jnp.issubdtype(x.dtype, jnp.floating)
    ]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


class Checkpointer:
    """One run's `checkpoints/` directory (an Orbax CheckpointManager)."""

    def __init__(
        self,
        directory: PathLike,
        cfg: CheckpointSection | None = None,
        *,
        read_only: bool = False,
    ):
        self.directory = absolute(directory)  # an epath: gs:// URLs stay URLs
        self.cfg = cfg or CheckpointSection()
        options = ocp.CheckpointManagerOptions(
            preservation_policy=preservation(self.cfg),
            enable_async_checkpointing=self.cfg.async_save,
            create=not read_only,
            read_only=read_only,
            cleanup_tmp_directories=not read_only,
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)
        self.last_blocked_s = 0.0  # time the caller was blocked by the last save
        self._barriers = 0

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(
        self, step: int, state: TrainState, data_state: dict[str, Any], meta: dict[str, Any]
    ) -> None:
        """Start saving `step` (in the background when async); raises any earlier save's error."""
        start = time.perf_counter()
        self.check()
        if step in self.manager.all_steps():
            log.info("checkpoint step %d already exists; not saving it again", step)
            return
        args = ocp.args.Composite(
            params=ocp.args.StandardSave(state.params),
            train=ocp.args.StandardSave(_train_item(state)),
            data=ocp.args.JsonSave(data_state),
            meta=ocp.args.JsonSave({**meta, "step": step, "saved_at": time.time()}),
        )
        try:
            self.manager.save(step, args=args, force=True)
        except Exception as err:
            raise CheckpointError(
                f"saving checkpoint step {step} in {self.directory} failed: {err}"
            ) from err
        self.last_blocked_s = time.perf_counter() - start
        log.info(
            "checkpoint step %d: %s (loop blocked %.3fs)",
            step,
            "saving in the background" if self.cfg.async_save else "saved",
            self.last_blocked_s,
        )

    def check(self) -> None:
        """Raise the error of a finished background save, if any (never lose it in a thread)."""
        try:
            self.manager.check_for_errors()
        except Exception as err:
            raise CheckpointError(
                f"a background checkpoint save in {self.directory} failed: {err}"
            ) from err

    def wait(self) -> None:
        """Block until background saves are done; raises their errors."""
        try:
            self.manager.wait_until_finished()
            self.manager.check_for_errors()
        except Exception as err:
            raise CheckpointError(
                f"a background checkpoint save in {self.directory} failed: {err}"
            ) from err

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self.manager.close()

    def _restore(self, step: int, target: TrainState | None) -> Restored:
        items: dict[str, Any] = {"meta": ocp.args.JsonRestore()}
        full = target is not None and target.opt_state is not None
        if target is not None:
            items["params"] = ocp.args.StandardRestore(target.params)
            if full:
                items["train"] = ocp.args.StandardRestore(_train_item(target))
                items["data"] = ocp.args.JsonRestore()
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        meta = restored["meta"]
        if not isinstance(meta, dict) or meta.get("step") != step:
            raise CheckpointError(
                f"metadata names step {meta.get('step') if isinstance(meta, dict) else meta!r}"
            )
        if target is None:
            return Restored(step, TrainState(params=None), {}, meta)
        params = restored["params"]
        _check_tree(params, target.params, "params")
        state, data = TrainState(params=params), {}
        if full:
            train = restored["train"]
            _check_tree(train, _train_item(target), "train")
            if int(train["step"]) != step:
                raise CheckpointError(f"optimiser step counter {int(train['step'])} != {step}")
            state = TrainState(params=params, opt_state=train["opt_state"], step=train["step"])
            data = restored["data"]
        if not bool(_all_finite(params)):
            raise CheckpointError("non-finite parameters")
        return Restored(step, state, data, meta)

    def restore(self, target: TrainState | None, step: int | None = None) -> Restored | None:
        """The newest valid checkpoint (or exactly `step`), restored onto `target`'s shardings
        (see `abstract_like`); None when there is none. A target without `opt_state` restores
        the parameters only; target None reads the metadata only."""
        self.wait()
        steps = self.steps()
        if step is not None:
            if step not in steps:
                raise CheckpointError(
                    f"no checkpoint step {step} in {self.directory} (have {steps})"
                )
            return self._restore(step, target)
        for candidate in reversed(steps):
            try:
                return self._restore(candidate, target)
            except Exception as err:  # any failure means: do not trust this checkpoint
                self._set_aside(candidate, err)
        return None

    def _set_aside(self, step: int, err: Exception) -> None:
        """Warn, and move the bad step out of the way so a later save of that step can succeed."""
        path = self.directory / str(step)
        target = self.directory / CORRUPT_DIR / f"{step}-{int(time.time())}"
        log.warning(
            "checkpoint %s is incomplete or corrupt (%s: %s); skipping it and trying the "
            "previous one; moved to %s",
            path,
            type(err).__name__,
            str(err)[:300],
            target,
        )
        if jax.process_index() == 0 and path.exists() and not self.manager._options.read_only:
            target.parent.mkdir(parents=True, exist_ok=True)
            path.rename(target)
        self._barriers += 1  # the same sequence on every process: unique, matching names
        distributed.barrier(f"f2jax_ckpt_set_aside_{step}_{self._barriers}", timeout_s=600)
        self.manager.reload()


def _train_item(state: TrainState) -> dict[str, Any]:
    """The `train` item's layout on disk (unchanged since the first checkpoints)."""
    return {"opt_state": state.opt_state, "step": state.step}


def _check_tree(got: Any, want: Any, name: str) -> None:
    """Same structure, shapes and dtypes as the target."""
    got_def, want_def = jax.tree.structure(got), jax.tree.structure(want)
    if got_def != want_def:
        raise CheckpointError(f"{name}: structure differs from the model's")
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        if tuple(g.shape) != tuple(w.shape) or g.dtype != w.dtype:
            raise CheckpointError(
                f"{name}: leaf {g.shape} {g.dtype} != expected {w.shape} {w.dtype}"
            )
