"""What the CLI prints on a clean run, in one place: f2jax's own records at INFO, and the
third-party lines that f2jax itself provokes silenced where it provokes them.

- The root logger stays at WARNING and only the `f2jax` logger is at INFO, so other libraries'
  INFO records stay hidden: e.g. JAX's "Unable to initialize backend 'tpu' ... libtpu.so" on every
  host without a TPU (JAX probes each platform and logs the miss at INFO).
- `TRANSFORMERS_NO_ADVISORY_WARNINGS=1` (unless set): transformers' advisory "PyTorch was not
  found. Models won't be available" on the torch-free core install, where f2jax uses only its
  tokenizers and config classes (it is advice, not an error).
- orbax's absl warnings "Given directory is read only" and "CheckpointManagerOptions.read_only=True,
  setting ...": orbax says so whenever f2jax opens a run's checkpoints to read them (export,
  `f2jax.load(RUN_DIR)`, the demo report); dropped by a filter on exactly these messages.
- TFDS's "Downloading and preparing dataset ... downloaded and prepared" and its progress bars
  when f2jax writes tokenised data (nothing is downloaded): silenced in
  `f2jax.data.tfds_builder`, where the builder is f2jax's; `f2jax.data.tokenize` logs one line.
"""

from __future__ import annotations

import logging
import os

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: absl (orbax) warnings that f2jax provokes on purpose, by message prefix.
EXPECTED_ABSL_WARNINGS = ("Given directory is read only", "CheckpointManagerOptions.read_only=True, setting")


class _DropExpected(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(EXPECTED_ABSL_WARNINGS)


def quiet_third_party() -> None:
    """Silence the third-party lines listed above (idempotent); call before the libraries load."""
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    absl = logging.getLogger("absl")
    if not any(isinstance(f, _DropExpected) for f in absl.filters):
        absl.addFilter(_DropExpected())


def setup_logging(level: int = logging.INFO) -> None:
    """f2jax's records on stderr at `level`, other libraries' at WARNING. `force`: absl (imported by
    orbax/grain) installs a root handler first, which would otherwise swallow every INFO record."""
    logging.basicConfig(level=logging.WARNING, format=FORMAT, force=True)
    logging.getLogger("f2jax").setLevel(level)
    logging.getLogger("absl").setLevel(logging.WARNING)  # absl may lower its own level when flags are parsed
    quiet_third_party()
