"""go_fast per request on `tiny` (CPU): nothing changes unless a test asks for the emulated
fp8 path; then go_fast false stays the exact reference path, go_fast true stays within the
stated tolerance; KLEIN_GO_FAST_ONLY keeps one (fp8) transformer and refuses go_fast false."""

import dataclasses

import pytest
import torch
from torch import nn

from klein_engine.fast.fp8 import Fp8Linear, keep_high_precision
from klein_engine.job import InvalidInput
from klein_engine.options import EngineOptions
from klein_engine.pipeline import KleinEngine

from .conftest import never, noop_step, request
from .fidelity import TINY_LATENT_REL_TOL, psnr, relative_error


def latents(engine, req):
    return engine.generate(req, noop_step, never, output_type="latent")


@pytest.fixture(scope="module")
def emulated(tiny_path):
    return KleinEngine.load(str(tiny_path), device="cpu", options=EngineOptions(fp8="emulate"))


def test_on_cpu_go_fast_changes_nothing(engine):
    f = engine.facts()
    assert f["capabilities"]["go_fast"] is False and f["capabilities"]["max_batch"] == 1
    assert f["fast"]["fp8"] is None and f["fast"]["compile"] is None and "CUDA" in f["fast"]["fp8_note"]
    assert engine.fast.transformer_for(True) is engine.fast.transformer_for(False) is engine.components.transformer
    req = request(cfg=2.0, steps=3)
    assert engine.generate(req, noop_step, never).rgb == engine.generate(dataclasses.replace(req, go_fast=False), noop_step, never).rgb


def test_emulated_fp8_reference_path_is_untouched(engine, emulated):
    f = emulated.facts()
    assert f["capabilities"]["go_fast"] is True and f["fast"]["fp8"] == "emulated" and f["fast"]["reference_path"] is True
    ref = emulated.fast.transformer_for(False)
    fast = emulated.fast.transformer_for(True)
    assert not any(isinstance(m, Fp8Linear) for m in ref.modules())
    assert sum(isinstance(m, Fp8Linear) for m in fast.modules()) == len(emulated.fast.swapped) > 0
    # The copy shares what it does not quantise: no second set of embedders, norms, modulation.
    assert fast.x_embedder.weight is ref.x_embedder.weight
    assert fast.transformer_blocks[0].attn.norm_q.weight is ref.transformer_blocks[0].attn.norm_q.weight
    req = request(cfg=3.0, sampler="res_2s", steps=3, go_fast=False)
    assert emulated.generate(req, noop_step, never).rgb == engine.generate(req, noop_step, never).rgb


@pytest.mark.parametrize("kw", [dict(cfg=1.0, sampler="euler"), dict(cfg=4.0, sampler="res_2s")])
def test_emulated_fp8_go_fast_is_within_the_tolerance(emulated, kw):
    for seed in (0, 1):
        req = request(seed=seed, steps=4, width=96, height=64, **kw)
        fast = latents(emulated, req)
        ref = latents(emulated, dataclasses.replace(req, go_fast=False))
        rel = relative_error(fast, ref)
        print(f"tiny, fp8 emulated, {kw}, seed {seed}: final latents relative error {rel:.2e}")
        assert 0 < rel <= TINY_LATENT_REL_TOL
    a = emulated.generate(req, noop_step, never).rgb
    b = emulated.generate(dataclasses.replace(req, go_fast=False), noop_step, never).rgb
    assert psnr(a, b) > 30


def test_go_fast_only_keeps_one_fp8_transformer_and_refuses_the_reference(tiny_path, emulated):
    only = KleinEngine.load(str(tiny_path), device="cpu", options=EngineOptions(fp8="emulate", go_fast_only=True))
    assert only.facts()["fast"]["reference_path"] is False
    assert only.fast.reference is None and only.components.transformer is only.fast.transformer_for(True)
    assert all(keep_high_precision(n) for n, m in only.components.transformer.named_modules() if type(m) is nn.Linear)
    with pytest.raises(InvalidInput, match="KLEIN_GO_FAST_ONLY"):
        only.generate(request(go_fast=False), noop_step, never)
    # The same quantisation as the shared copy's: identical go_fast results.
    req = request(seed=5, steps=3)
    assert torch.equal(latents(only, req), latents(emulated, req))


def test_go_fast_only_without_fp8_fails_at_start(tiny_path):
    from klein_engine.job import LoadError

    with pytest.raises(LoadError, match="fp8"):
        KleinEngine.load(str(tiny_path), device="cpu", options=EngineOptions(go_fast_only=True))
