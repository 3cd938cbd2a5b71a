"""EOS is appended after truncation, the recipe's rule, on the real Qwen3 tokenizer."""

from __future__ import annotations

from f2jax.tokenizer import load_tokenizer, tokenize


def test_eos_appended_after_truncation():
    tok = load_tokenizer()
    plain = tok("hello world, how are you today?", add_special_tokens=False)["input_ids"]
    ids = tokenize(tok, ["hello world, how are you today?"], max_length=4)[0]
    assert ids == plain[:3] + [tok.eos_token_id]
    full = tokenize(tok, ["hello world, how are you today?"], max_length=512)[0]
    assert full == plain + [tok.eos_token_id]
    assert tok.eos_token == "<|im_end|>" and tok.padding_side == "right"


def test_saved_tokenizer_keeps_eos(tmp_path):
    tok = load_tokenizer()
    tok.save_pretrained(tmp_path)
    again = load_tokenizer(tmp_path)
    assert again("abc")["input_ids"] == tok("abc")["input_ids"]
    assert again("abc")["input_ids"][-1] == tok.eos_token_id
    # loading the saved directory with transformers alone still appends EOS
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(tmp_path)("abc")["input_ids"] == tok("abc")["input_ids"]
