"""Text encoding: chat template, 512 tokens, layers 9/18/27, truncation, cache."""

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from klein_engine.text import MAX_SEQUENCE_LENGTH, TextEncoder, chat_text


def test_chat_template_matches_qwen3_with_thinking_disabled(tiny_path):
    tok = AutoTokenizer.from_pretrained(str(tiny_path / "tokenizer"))
    assert chat_text(tok, "a cat") == "<|im_start|>user\na cat<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


def test_read_out_equals_the_full_model_and_is_cached(tiny_path):
    tok = AutoTokenizer.from_pretrained(str(tiny_path / "tokenizer"))
    full = AutoModelForCausalLM.from_pretrained(str(tiny_path / "text_encoder")).eval()
    n_full = len(full.model.layers)
    cut = AutoModelForCausalLM.from_pretrained(str(tiny_path / "text_encoder")).eval()
    enc = TextEncoder(tok, cut)
    assert len(cut.model.layers) == 27 < n_full  # only the layers that are read run
    got = enc.encode(["a red bicycle", "x" * 5000])
    assert got.shape == (2, MAX_SEQUENCE_LENGTH, 3 * full.config.hidden_size)
    with torch.inference_mode():
        ids = tok([chat_text(tok, "a red bicycle")], return_tensors="pt", padding="max_length", truncation=True, max_length=512)
        out = full(**ids, output_hidden_states=True, use_cache=False)
    want = torch.cat([out.hidden_states[k] for k in (9, 18, 27)], dim=-1)
    assert torch.allclose(got[0:1], want, atol=1e-6)
    # Cache: a second call returns the cached tensor without running the model.
    calls = []
    orig = enc._run
    enc._run = lambda prompts: calls.append(prompts) or orig(prompts)
    again = enc.encode(["a red bicycle"])
    assert calls == [] and torch.equal(again[0], got[0])
