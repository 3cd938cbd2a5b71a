"""RoPE frequencies against transformers' own rope initialisation functions."""

from __future__ import annotations

import numpy as np
import pytest
from transformers import Qwen3Config as HFQwen3Config
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from f2jax.model import Qwen3Config, UnsupportedModelError
from f2jax.model.rope import inverse_frequencies

SCALINGS = [
    None,
    {"rope_type": "linear", "factor": 4.0},
    {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 8192},
    {"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 4096, "beta_fast": 16,
     "mscale": 1.0, "mscale_all_dim": 0.5},
    {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
     "original_max_position_embeddings": 8192},
]


@pytest.mark.parametrize("scaling", SCALINGS, ids=lambda s: (s or {}).get("rope_type", "default"))
def test_inverse_frequencies_match_transformers(scaling):
    rope = {"rope_type": "default", "rope_theta": 1_000_000.0, **(scaling or {})}
    hf = HFQwen3Config(hidden_size=256, num_attention_heads=4, num_key_value_heads=4, head_dim=128,
                       max_position_embeddings=32768, rope_parameters=rope)
    ref, ref_scale = ROPE_INIT_FUNCTIONS[rope["rope_type"]](hf, None) if rope["rope_type"] != "default" \
        else (1.0 / (1e6 ** (np.arange(0, 128, 2, dtype=np.float32) / 128)), 1.0)
    ours, scale = inverse_frequencies(Qwen3Config.from_hf_dict(hf.to_dict()))
    np.testing.assert_allclose(ours, np.asarray(ref), rtol=2e-6)
    assert scale == pytest.approx(float(ref_scale), rel=1e-7)


def test_unknown_rope_type_is_refused():
    raw = HFQwen3Config(hidden_size=64, num_attention_heads=4, num_key_value_heads=4, head_dim=16).to_dict()
    raw["rope_parameters"] = {"rope_type": "longrope", "rope_theta": 1e6, "factor": 2.0}
    with pytest.raises(UnsupportedModelError, match="longrope"):
        inverse_frequencies(Qwen3Config.from_hf_dict(raw))
