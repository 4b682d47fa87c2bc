"""The miniatures' model names and the 9B recipe (issue 17): `tiny`, `tiny-base` and `tiny-9b`
(and `tiny:<variant>`) resolve to separate cached builds, and `tiny-9b` keeps what sets the
klein-9B apart (block counts, Qwen3-8B's proportions to Qwen3-4B, the 9/18/27 read-out)."""

import json

import pytest

from klein_engine.load import resolve_model
from klein_engine.tiny import MODEL_NAMES, build_tiny, variant_of

from .test_load import digest_tree


def config(path, component):
    return json.loads((path / component / "config.json").read_text())


def test_model_names_resolve_to_their_own_builds(tiny_path, tiny_base_path, tiny_9b_path):
    assert resolve_model("tiny") == tiny_path
    assert resolve_model("tiny-base") == resolve_model("tiny:base") == tiny_base_path
    assert resolve_model("tiny-9b") == resolve_model("tiny:9b") == tiny_9b_path
    assert len({tiny_path, tiny_base_path, tiny_9b_path}) == 3  # the cache keeps the variants apart
    for path, distilled in ((tiny_path, True), (tiny_base_path, False), (tiny_9b_path, True)):
        assert json.loads((path / "model_index.json").read_text()).get("is_distilled", False) is distilled
    assert variant_of("tiny-4b") is None and variant_of("black-forest-labs/FLUX.2-klein-9B") is None
    assert set(MODEL_NAMES) == {"tiny", "tiny-base", "tiny-9b"}


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="variant must be one of"):
        resolve_model("tiny:13b")


def test_9b_miniature_has_the_9b_proportions(tiny_path, tiny_9b_path):
    small, large = config(tiny_path, "transformer"), config(tiny_9b_path, "transformer")
    assert (small["num_layers"], small["num_single_layers"]) == (1, 1)
    assert (large["num_layers"], large["num_single_layers"]) == (8, 24)  # reference §2: 8 and 24
    text_small, text_large = config(tiny_path, "text_encoder"), config(tiny_9b_path, "text_encoder")
    # Qwen3-8B to Qwen3-4B: hidden 4096:2560 = 1.6, intermediate 12288:9728 ≈ 1.26 (reference §3).
    assert text_large["hidden_size"] / text_small["hidden_size"] == pytest.approx(4096 / 2560, rel=0.05)
    assert text_large["intermediate_size"] / text_small["intermediate_size"] == pytest.approx(12288 / 9728, rel=0.05)
    for t, tc in ((small, text_small), (large, text_large)):
        assert t["joint_attention_dim"] == 3 * tc["hidden_size"]  # the 9/18/27 read-out, concatenated
        assert tc["num_hidden_layers"] > 27
    # The 9B's transformer is wider than the 4B's (4096 against 3072).
    width = lambda c: c["num_attention_heads"] * c["attention_head_dim"]  # noqa: E731
    assert width(large) > width(small)


def test_9b_miniature_is_byte_reproducible(tmp_path):
    a = build_tiny(tmp_path / "a", seed=5, variant="9b")
    b = build_tiny(tmp_path / "b", seed=5, variant="9b")
    assert digest_tree(a) == digest_tree(b)
