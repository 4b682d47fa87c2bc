"""diffusers' Flux2KleinPipeline on the cases of test/e2e/parity.test.ts: what the served path
must reproduce. Reads {"model", "out", "cases": [...]} as JSON on stdin; writes each case's
image as packed RGB to out/<name>.rgb and prints one line per case.

`parity_reference.py sharpen MODEL OUT FACTOR` writes a copy of MODEL whose attention is
sharper: the gains of the query and key RMSNorms multiplied by FACTOR. On tiny's random
weights attention is nearly uniform, so an image token sees the mean of thousands of
reference tokens and another reference image moves the output by at most 1/255; sharpened,
the output depends on the reference pixels, and a preprocessing difference shows.

Each case runs as a diffusers user would run it: the pipeline built from the model
directory, reference images opened with PIL from the very bytes sent to the API, the
request's size, steps and seed (a CPU generator). True CFG with the request's negative prompt
goes through the pipeline's own CFG (`is_distilled=False` on a distilled model, whose
pipeline otherwise ignores guidance) with `negative_prompt_embeds`, since the pipeline takes
no negative prompt string. One intra-op thread, as the engine computes on a CPU.
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from diffusers import Flux2KleinPipeline
from PIL import Image

from klein_engine.load import resolve_model


def sharpen(model: str, out: str, factor: float) -> None:
    from diffusers import Flux2Transformer2DModel

    shutil.copytree(resolve_model(model), out)
    transformer = Flux2Transformer2DModel.from_pretrained(f"{out}/transformer", torch_dtype=torch.float32)
    with torch.no_grad():
        for name, module in transformer.named_modules():
            if name.rsplit(".", 1)[-1] in ("norm_q", "norm_k", "norm_added_q", "norm_added_k"):
                module.weight.mul_(factor)
    transformer.save_pretrained(f"{out}/transformer", safe_serialization=True)


def main() -> None:
    if sys.argv[1:2] == ["sharpen"]:
        sharpen(sys.argv[2], sys.argv[3], float(sys.argv[4]))
        return
    job = json.load(sys.stdin)
    torch.set_num_threads(1)
    path = resolve_model(job["model"])
    pipe = Flux2KleinPipeline.from_pretrained(str(path), torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    guided = Flux2KleinPipeline(scheduler=pipe.scheduler, vae=pipe.vae, text_encoder=pipe.text_encoder,
                                tokenizer=pipe.tokenizer, transformer=pipe.transformer, is_distilled=False)
    guided.set_progress_bar_config(disable=True)
    out = Path(job["out"])
    for case in job["cases"]:
        images = [Image.open(p) for p in case.get("images", [])] or None
        kwargs = dict(prompt=case["prompt"], image=images, height=case["height"], width=case["width"],
                      num_inference_steps=case["steps"], generator=torch.Generator("cpu").manual_seed(case["seed"]),
                      output_type="pil")
        with torch.inference_mode():
            if case["cfg"] > 1:
                negative, _ = guided.encode_prompt(prompt=case["negative_prompt"], device=torch.device("cpu"))
                image = guided(guidance_scale=case["cfg"], negative_prompt_embeds=negative, **kwargs).images[0]
            else:
                image = pipe(guidance_scale=1.0, **kwargs).images[0]
        (out / f"{case['name']}.rgb").write_bytes(np.asarray(image.convert("RGB")).tobytes())
        print(case["name"], image.width, image.height, flush=True)


if __name__ == "__main__":
    main()
