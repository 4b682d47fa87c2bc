"""KLEIN_OFFLOAD=model: the text encoder goes to the compute device only to encode a prompt
the cache does not hold, and back after (also after an error); results are unchanged."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from klein_engine.offload import Placement
from klein_engine.text import TextEncoder


class Recorder:
    """Records every move; moves for real (CPU to CPU here: the logic, not the bytes)."""

    def __init__(self):
        self.moves = []

    def __call__(self, module, device):
        self.moves.append(str(device))
        module.to(device)


@pytest.fixture(scope="module")
def parts(tiny_path):
    tok = AutoTokenizer.from_pretrained(str(tiny_path / "tokenizer"))
    return tok, lambda: AutoModelForCausalLM.from_pretrained(str(tiny_path / "text_encoder")).eval()


def test_moves_only_on_cache_misses_and_results_are_unchanged(parts):
    tok, load = parts
    plain = TextEncoder(tok, load())
    model = load()
    rec = Recorder()
    enc = TextEncoder(tok, model, placement=Placement(model, "cpu", "model", offload="cpu", move=rec))
    assert rec.moves == ["cpu"]  # parked at start
    a = enc.encode(["a red bicycle", "a cat"])
    assert rec.moves == ["cpu", "cpu", "cpu"]  # one visit for both misses: there and back
    enc.encode(["a cat"])
    assert len(rec.moves) == 3  # a hit moves nothing
    assert torch.equal(a, plain.encode(["a red bicycle", "a cat"]))


def test_moves_back_when_encoding_fails(parts):
    tok, load = parts
    model = load()
    rec = Recorder()
    p = Placement(model, "cpu", "model", offload="cpu", move=rec)
    with pytest.raises(RuntimeError):
        with p.on_device():
            raise RuntimeError("boom")
    assert rec.moves == ["cpu", "cpu", "cpu"]


def test_no_offload_never_moves(parts):
    tok, load = parts
    model = load()
    rec = Recorder()
    enc = TextEncoder(tok, model, placement=Placement(model, "cpu", "none", move=rec))
    enc.encode(["a cat"])
    assert rec.moves == []
    with pytest.raises(ValueError):
        Placement(model, "cpu", "sometimes")
