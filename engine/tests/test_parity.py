"""Our engine against diffusers' Flux2KleinPipeline in float32 on each miniature of the family
(issue: parity; issue 17): `tiny`, `tiny-base` (with CFG) and `tiny-9b`."""

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline
from PIL import Image

from klein_engine.job import ReferenceImage
from klein_engine.pipeline import KleinEngine

from .conftest import never, noop_step, request

TOL = 1e-4


def pipeline_for(engine: KleinEngine, path, distilled: bool) -> Flux2KleinPipeline:
    components = engine.components
    scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(str(path / "scheduler"))
    pipe = Flux2KleinPipeline(scheduler=scheduler, vae=components.vae, text_encoder=components.text_encoder,
                              tokenizer=components.tokenizer, transformer=components.transformer, is_distilled=distilled)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def ours(engine, req):
    return engine.generate(req, noop_step, never, output_type="latent")


def theirs(pipe, req, images=None, guidance=1.0):
    out = pipe(prompt=req.prompt, image=images, height=req.height, width=req.width, num_inference_steps=req.steps,
               guidance_scale=guidance, generator=torch.Generator("cpu").manual_seed(req.seed), output_type="latent")
    return out.images


def assert_parity(engine, pipe, req, images=None, guidance=1.0):
    """Our final latents equal the pipeline's within TOL; returns ours."""
    a = ours(engine, req)
    b = theirs(pipe, req, images=images, guidance=guidance)
    assert a.shape == b.shape
    diff = (a - b).abs().max().item()
    print(f"parity max abs diff: {diff:.3e}")
    assert diff <= TOL, diff
    return a


def ref_image(w, h, seed):
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    return ReferenceImage(w, h, arr.tobytes()), Image.fromarray(arr)


@pytest.mark.parametrize("n_refs", [0, 1, 2])
def test_matches_reference_pipeline(engine, tiny_path, n_refs):
    pipe = pipeline_for(engine, tiny_path, distilled=True)
    refs = [ref_image(64 + 16 * i, 64, 100 + i) for i in range(n_refs)]
    req = request(width=96, height=64, steps=4, images=tuple(r for r, _ in refs))
    a = assert_parity(engine, pipe, req, images=[im for _, im in refs] or None)
    # The references really take part: without them the result differs.
    if n_refs:
        assert (ours(engine, request(width=96, height=64, steps=4)) - a).abs().max().item() > 1e-3


def test_cfg_matches_reference_pipeline_on_base_variant(tiny_base_path):
    engine = KleinEngine.load(str(tiny_base_path), device="cpu")
    assert engine.facts()["variant"] == "base"
    pipe = pipeline_for(engine, tiny_base_path, distilled=False)
    # The pipeline's own CFG uses the empty negative prompt; ours batches cond and negative.
    req = request(cfg=4.0, negative_prompt="", steps=4)
    a = assert_parity(engine, pipe, req, guidance=4.0)
    assert (ours(engine, request(cfg=1.0, steps=4)) - a).abs().max().item() > 1e-3, "CFG changes the result"


def test_schedule_is_read_from_the_model_directory(engine):
    """`static-shift` is tiny with another scheduler config (a fixed shift of 3 instead of the
    resolution-dependent one): the engine follows it, as diffusers does with the same files."""
    from klein_engine.tiny import ensure_tiny

    path = ensure_tiny(seed=0, variant="static-shift")
    other = KleinEngine.load(str(path), device="cpu")
    req = request(width=96, height=64, steps=4)
    a = assert_parity(other, pipeline_for(other, path, distilled=True), req)
    assert (ours(engine, req) - a).abs().max().item() > 1e-3, "the other schedule changes the result"


@pytest.mark.parametrize("n_refs", [0, 1])
def test_9b_miniature_matches_reference_pipeline(tiny_9b_path, n_refs):
    """`tiny-9b`: the 9B's 8 double and 24 single blocks and Qwen3-8B's proportions, text to
    image and editing, within the same tolerance as `tiny`."""
    engine = KleinEngine.load(str(tiny_9b_path), device="cpu")
    config = engine.components.transformer.config
    assert (config.num_layers, config.num_single_layers) == (8, 24)
    assert config.joint_attention_dim == 3 * engine.components.text_encoder.config.hidden_size
    pipe = pipeline_for(engine, tiny_9b_path, distilled=True)
    refs = [ref_image(64, 64, 200 + i) for i in range(n_refs)]
    req = request(width=96, height=64, steps=4, images=tuple(r for r, _ in refs))
    assert_parity(engine, pipe, req, images=[im for _, im in refs] or None)


def test_base_miniature_text_to_image_without_cfg_matches_reference_pipeline(tiny_base_path):
    """`tiny-base` at cfg 1 (the pipeline then runs no negative pass), besides the CFG test above."""
    engine = KleinEngine.load(str(tiny_base_path), device="cpu")
    pipe = pipeline_for(engine, tiny_base_path, distilled=False)
    assert_parity(engine, pipe, request(width=96, height=64, steps=4))
