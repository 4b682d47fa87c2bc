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
from .limits import MAX_REFERENCE_IMAGES, PIXEL_MULTIPLE, SAMPLERS
from .load import DEFAULT_MODEL

# References larger than this many pixels are scaled down (the gateway's rule, src/images/decode.ts).
MAX_AREA = 1024 * 1024


def prepare_reference(path: str, multiple: int = PIXEL_MULTIPLE) -> ReferenceImage:
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
    parser = argparse.ArgumentParser(prog="python -m klein_engine generate")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--negative-prompt", default="low quality, blurry, less details")
    parser.add_argument("--seed", type=int, default=3425234)
    parser.add_argument("--cfg", type=float, default=5.0)
    parser.add_argument("--sampler", choices=SAMPLERS, default="euler")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--image", action="append", default=[], help=f"reference image (repeat for up to {MAX_REFERENCE_IMAGES})")
    parser.add_argument("--no-go-fast", action="store_true")
    parser.add_argument("--model", default=os.environ.get("KLEIN_MODEL", DEFAULT_MODEL))
    parser.add_argument("--repeat", type=int, default=1, help="generate N times and report each timing")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    import logging

    from PIL import Image

    from .job import EngineError, LoadError
    from .options import EngineOptions
    from .server import load_and_warm_up

    logging.basicConfig(level=os.environ.get("KLEIN_ENGINE_LOG_LEVEL", "INFO"), stream=sys.stderr,
                        format="engine %(process)d %(levelname)s %(message)s")
    log = logging.getLogger("klein_engine")
    try:
        engine = load_and_warm_up(args.model, EngineOptions.from_env(), log)
    except LoadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    refs = tuple(prepare_reference(path) for path in args.image)
    req = GenerateRequest(
        prompt=args.prompt, negative_prompt=args.negative_prompt, seed=args.seed, cfg=args.cfg, sampler=args.sampler,
        steps=args.steps, width=args.width, height=args.height, go_fast=not args.no_go_fast, images=refs,
    )
    for _ in range(args.repeat):
        try:
            res = engine.generate(req, lambda step, total, preview: print(f"\rstep {step}/{total}", end="", file=sys.stderr), lambda: False)
        except EngineError as e:  # invalid input: one line, as the server's error frame says it
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(file=sys.stderr)
        print(json.dumps({"seed": res.seed, "width": res.width, "height": res.height, "timings": res.timings}), flush=True)
    Image.frombytes("RGB", (res.width, res.height), res.rgb).save(args.out)
    return 0
