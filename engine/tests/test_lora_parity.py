"""LoRA parity (issue 18, point 6): on `tiny`, a seeded random adapter in each layout the engine
reads gives our final latents equal, within test_parity's 1e-4, to diffusers'
Flux2KleinPipeline.load_lora_weights + set_adapters with the same scales; one adapter and two.

diffusers loads the same file's state dict, except for ComfyUI's bare names and BFL alphas,
which diffusers' loader refuses: for those it loads the equivalent kohya file (same delta,
lora_files.py), so the comparison still ends at diffusers' own numbers."""

import pytest
import torch

from klein_engine.job import LoraSpec
from klein_engine.pipeline import KleinEngine

from .conftest import request
from .lora_files import FORMATS, layout, random_adapter, write
from .test_parity import TOL, ours, pipeline_for, theirs


@pytest.fixture(scope="module")
def ours_engine(tiny_path):
    return KleinEngine.load(str(tiny_path), device="cpu")


@pytest.fixture(scope="module")
def pipe(tiny_path):
    # Its own components: load_lora_weights injects PEFT layers into the transformer it holds.
    return pipeline_for(KleinEngine.load(str(tiny_path), device="cpu"), tiny_path, distilled=True)


def both(engine, pipe, tmp_path, adapters, req):
    """adapters: (our file's state dict, diffusers' state dict, scale) each → (ours, theirs)."""
    specs, names = [], []
    for i, (ours_sd, theirs_sd, scale) in enumerate(adapters):
        key, path = write(tmp_path, f"adapter{i}", ours_sd)
        specs.append(LoraSpec(key, path, scale))
        pipe.load_lora_weights(dict(theirs_sd), adapter_name=f"a{i}")
        names.append(f"a{i}")
    try:
        pipe.set_adapters(names, [s for _, _, s in adapters])
        return ours(engine, request(**req, loras=tuple(specs))), theirs(pipe, request(**req))
    finally:
        pipe.delete_adapters(names)


REQ = dict(width=64, height=64, steps=3)


@pytest.mark.parametrize("fmt", FORMATS)
def test_one_adapter_matches_diffusers(ours_engine, pipe, tmp_path, fmt):
    t = ours_engine.components.transformer
    adapter = random_adapter(t, seed=11)
    alpha = 2.0 if fmt in ("kohya", "comfyui") else None  # alpha/rank = 1/2, baked by the converter (ours for comfyui)
    theirs_sd = layout(t, adapter, "kohya" if fmt == "comfyui" else fmt, alpha)
    a, b = both(ours_engine, pipe, tmp_path, [(layout(t, adapter, fmt, alpha), theirs_sd, 0.8)], REQ)
    diff = (a - b).abs().max().item()
    plain = ours(ours_engine, request(**REQ))
    print(f"{fmt}: parity {diff:.2e}, the adapter moves the latents by {(a - plain).abs().max().item():.2e}")
    assert diff <= TOL
    assert (a - plain).abs().max().item() > 1e-2, "the adapter changes the result"


@pytest.mark.parametrize("fmts", [("diffusers", "kohya"), ("ai-toolkit", "peft")])
def test_two_adapters_with_different_scales_match_diffusers(ours_engine, pipe, tmp_path, fmts):
    t = ours_engine.components.transformer
    first, second = random_adapter(t, seed=21), random_adapter(t, seed=22, rank=2)
    adapters = [(layout(t, first, fmts[0]), layout(t, first, fmts[0]), 1.1),
                (layout(t, second, fmts[1]), layout(t, second, fmts[1]), -0.6)]
    a, b = both(ours_engine, pipe, tmp_path, adapters, REQ)
    diff = (a - b).abs().max().item()
    print(f"{fmts}: parity {diff:.2e}")
    assert diff <= TOL
    # Both take part: the first alone differs.
    key, path = write(tmp_path, "first", layout(t, first, fmts[0]))
    alone = ours(ours_engine, request(**REQ, loras=(LoraSpec(key, path, 1.1),)))
    assert (alone - a).abs().max().item() > 1e-3
