"""The GradCache micro-batch layout is defined once: the host index rule and the device split agree."""

from __future__ import annotations

import numpy as np
import pytest

from f2jax.data.batch import micro_batch_rows, split_micro


@pytest.mark.parametrize(("batch", "micro"), [(8, 1), (8, 2), (12, 4), (6, 6)])
def test_split_micro_holds_micro_batch_rows(batch, micro):
    x = np.arange(batch * 3).reshape(batch, 3)
    split = np.asarray(split_micro({"x": x}, micro)["x"])
    assert split.shape == (micro, batch // micro, 3)
    for j in range(micro):
        np.testing.assert_array_equal(split[j], x[micro_batch_rows(batch, micro, j)])
    assert sorted(np.concatenate([micro_batch_rows(batch, micro, j) for j in range(micro)])) == list(range(batch))
