"""The tiny Qwen3 shape the bench tests run their benchmarks on."""

TINY = dict(
    num_hidden_layers=2,
    hidden_size=32,
    intermediate_size=64,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    vocab_size=300,
)
