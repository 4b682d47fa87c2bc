"""`python -m klein_engine generate`: the engine alone, for trying and benchmarking.

    python -m klein_engine generate --prompt "a lighthouse" --out x.png [--image ref.png …]

Reference images are prepared by the same rule as the API: EXIF orientation, RGB, Lanczos
down to at most 1024×1024 pixels of area keeping the ratio, centre-cropped to multiples of 16.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

from .job import GenerateRequest, ReferenceImage

MAX_AREA = 1024 * 1024


def prepare_reference(path: str, multiple: int = 16) -> ReferenceImage:
    from PIL import Image, ImageOps

    im = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    w, h = im.size
    if w * h > MAX_AREA:
        scale = math.sqrt(MAX_AREA / (w * h))
        w, h = int(w * scale), int(h * scale)
        im = im.resize((w, h), Image.LANCZOS)
    cw, ch = (w // multiple) * multiple, (h // multiple) * multiple
    left, top = (w - cw) // 2, (h - ch) // 2
    im = im.crop((left, top, left + cw, top + ch))
    return ReferenceImage(cw, ch, im.tobytes())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m klein_engine generate")
    p.add_argument("--prompt", required=True)
    p.add_argument("--negative-prompt", default="low quality, blurry, less details")
    p.add_argument("--seed", type=int, default=3425234)
    p.add_argument("--cfg", type=float, default=5.0)
    p.add_argument("--sampler", choices=["euler", "res_2s"], default="euler")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--height", type=int, default=1024)
    p.add_argument("--image", action="append", default=[], help="reference image (repeat for up to 4)")
    p.add_argument("--no-go-fast", action="store_true")
    p.add_argument("--model", default=os.environ.get("KLEIN_MODEL", "black-forest-labs/FLUX.2-klein-4B"))
    p.add_argument("--repeat", type=int, default=1, help="generate N times and report each timing")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)

    import logging

    from PIL import Image

    from .job import EngineError, LoadError
    from .options import EngineOptions
    from .server import load_and_warm_up

    logging.basicConfig(level=os.environ.get("KLEIN_ENGINE_LOG_LEVEL", "INFO"), stream=sys.stderr,
                        format="engine %(process)d %(levelname)s %(message)s")
    log = logging.getLogger("klein_engine")
    try:
        engine = load_and_warm_up(a.model, EngineOptions.from_env(), log)
    except LoadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    refs = tuple(prepare_reference(path) for path in a.image)
    req = GenerateRequest(
        prompt=a.prompt, negative_prompt=a.negative_prompt, seed=a.seed, cfg=a.cfg, sampler=a.sampler,
        steps=a.steps, width=a.width, height=a.height, go_fast=not a.no_go_fast, images=refs,
    )
    for _ in range(a.repeat):
        try:
            res = engine.generate(req, lambda s, t, pv: print(f"\rstep {s}/{t}", end="", file=sys.stderr), lambda: False)
        except EngineError as e:  # invalid input: one line, as the server's error frame says it
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(file=sys.stderr)
        print(json.dumps({"seed": res.seed, "width": res.width, "height": res.height, "timings": res.timings}), flush=True)
    Image.frombytes("RGB", (res.width, res.height), res.rgb).save(a.out)
    return 0
