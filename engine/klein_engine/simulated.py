"""A simulated engine for gateway benchmarks and scale-out tests, clearly not a model.

`KLEIN_MODEL=simulated` (or `simulated:<ms per evaluation>`) makes `serve` answer with this
class instead of `KleinEngine`: the same protocol, the same progress frames, the same
cancellation points, but each model evaluation is a sleep of a fixed "GPU time" and the
image is a seeded gradient. It loads no torch model, so it starts in well under a second.
It lets the TypeScript side be measured without the engine's cost ("instant engine") and
lets throughput tests use a known, fixed GPU time per image.
"""

from __future__ import annotations

import random
import time

from .job import Cancelled, GenerateRequest, GenerateResult, InvalidInput, OnStep, ShouldStop
from .limits import MAX_REFERENCE_IMAGES, MAX_SIDE, MIN_SIDE, PIXEL_MULTIPLE, SAMPLERS
from .messages import EngineFacts


class SimulatedEngine:
    # One job at a time: generate_batch is never called.
    max_batch = 1

    def __init__(self, model: str, ms_per_eval: float):
        self.model = model
        self.ms_per_eval = ms_per_eval

    @classmethod
    def load(cls, model: str, device: str | None = None) -> "SimulatedEngine":
        _, _, ms = model.partition(":")
        try:
            ms_per_eval = float(ms) if ms else 0.0
        except ValueError:
            raise InvalidInput(f"simulated engine: '{ms}' is not a number of milliseconds") from None
        return cls(model, ms_per_eval)

    def facts(self) -> EngineFacts:
        return {
            "model": self.model,
            "variant": "simulated",
            "device": "cpu",
            "dtype": "none",
            "capabilities": {
                "samplers": list(SAMPLERS),
                "max_reference_images": MAX_REFERENCE_IMAGES,
                "go_fast": False,
                "preview": False,
                "max_batch": self.max_batch,
            },
            "geometry": {"pixel_multiple": PIXEL_MULTIPLE, "min_side": MIN_SIDE, "max_side": MAX_SIDE},
        }

    def warm_up(self) -> float:
        return 0.0  # nothing to compile

    def generate(self, req: GenerateRequest, on_step: OnStep, should_stop: ShouldStop) -> GenerateResult:
        if req.width % PIXEL_MULTIPLE or req.height % PIXEL_MULTIPLE:
            raise InvalidInput(f"width and height must be multiples of {PIXEL_MULTIPLE}")
        t0 = time.perf_counter()
        evaluations_per_step = 2 if req.sampler == "res_2s" else 1
        for step in range(1, req.steps + 1):
            if should_stop():
                raise Cancelled("cancelled")
            if self.ms_per_eval > 0:
                # CFG is one batch-2 forward, as in the real engine: same wall time per step.
                time.sleep(self.ms_per_eval * evaluations_per_step / 1000.0)
            on_step(step, req.steps, None)
        denoise_ms = (time.perf_counter() - t0) * 1000.0
        rgb = _gradient(req.width, req.height, req.seed)
        total_ms = (time.perf_counter() - t0) * 1000.0
        return GenerateResult(
            width=req.width,
            height=req.height,
            seed=req.seed,
            rgb=rgb,
            timings={"text_ms": 0.0, "denoise_ms": denoise_ms, "decode_ms": total_ms - denoise_ms, "total_ms": total_ms},
        )


def _gradient(width: int, height: int, seed: int) -> bytes:
    """A seeded horizontal/vertical gradient: cheap, deterministic, different per seed."""
    rnd = random.Random(seed)
    r0, g0, b0 = rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)
    row = bytearray()
    for x in range(width):
        row += bytes(((r0 + x) & 255, g0, b0))
    out = bytearray()
    for y in range(height):
        shifted = bytearray(row)
        shifted[2::3] = bytes(((b0 + y) & 255,)) * width
        out += shifted
    return bytes(out)
