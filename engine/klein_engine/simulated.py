"""A simulated engine for gateway benchmarks and scale-out tests, clearly not a model.

`KLEIN_MODEL=simulated[:<cost>]` makes `serve` answer with this class instead of
`KleinEngine`: the same protocol, the same progress frames, the same cancellation points and
batching, but each model evaluation is a sleep of a fixed "GPU time" and each image a seeded
gradient. It loads no torch model, so it starts in well under a second. It lets the
TypeScript side be measured without the engine's cost ("instant engine") and lets
throughput tests use a known GPU time per image.

The cost of one evaluation (one sampler step with euler; CFG is one batch-2 forward, as in
the real engine, so it costs the same) of a batch of n requests is `a + b·n` milliseconds:
`a` is what a forward costs whatever its batch (weights read, kernel launches, the part of
the GPU a small batch leaves idle), `b` what each request adds. `<cost>` is `b` alone
(`simulated:100`: a = 0, every image costs the same in or out of a batch) or `a+b`
(`simulated:60+40`: 100 ms for one image, 60 + 4·40 = 220 ms for a batch of four).
KLEIN_MAX_BATCH sets how many jobs it runs together (default 1), as for the real engine.
"""

from __future__ import annotations

import random
import re
import time
from typing import Callable, Optional, Sequence

from .batch import BatchJob, shape_key
from .job import Cancelled, GenerateRequest, GenerateResult, InvalidInput, OnDone, OnStep, ShouldStop
from .limits import MAX_REFERENCE_IMAGES, MAX_SIDE, MIN_SIDE, PIXEL_MULTIPLE, SAMPLERS
from .messages import EngineFacts

_COST = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*\+\s*)?(\d+(?:\.\d+)?)\s*$")


class SimulatedEngine:
    def __init__(self, model: str, ms_fixed: float, ms_per_request: float, max_batch: int = 1,
                 sleep: Callable[[float], None] = time.sleep):
        self.model = model
        self.ms_fixed = ms_fixed
        self.ms_per_request = ms_per_request
        self.max_batch = max_batch
        self.sleep = sleep  # tests record the simulated GPU time instead of waiting for it

    @classmethod
    def load(cls, model: str, max_batch: int = 1) -> "SimulatedEngine":
        _, _, cost = model.partition(":")
        if not cost:
            return cls(model, 0.0, 0.0, max_batch)
        m = _COST.match(cost)
        if not m:
            raise InvalidInput(f"simulated engine: '{cost}' is not <ms per request> or <fixed ms>+<ms per request>")
        return cls(model, float(m.group(1) or 0.0), float(m.group(2)), max_batch)

    def evaluation_ms(self, n: int) -> float:
        """The simulated GPU time of one evaluation of a batch of n requests."""
        return self.ms_fixed + self.ms_per_request * n

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
        outcome = self.generate_batch([BatchJob(req, on_step, should_stop)])[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def generate_batch(self, jobs: Sequence[BatchJob], on_done: Optional[OnDone] = None) -> list:
        """As KleinEngine.generate_batch: one simulated forward per step for the jobs still
        running, a cancelled job answered at once and dropped between steps."""
        outcomes: list = [None] * len(jobs)

        def finish(k: int, outcome) -> None:
            outcomes[k] = outcome
            if on_done is not None:
                on_done(k, outcome)

        live = []
        for k, job in enumerate(jobs):
            if job.req.width % PIXEL_MULTIPLE or job.req.height % PIXEL_MULTIPLE:
                finish(k, InvalidInput(f"width and height must be multiples of {PIXEL_MULTIPLE}"))
            else:
                live.append(k)
        if len({shape_key(jobs[k].req) for k in live}) > 1:
            raise ValueError("generate_batch: the requests cannot share a batch (different shapes)")
        if not live:
            return outcomes
        first = jobs[live[0]].req
        t0 = time.perf_counter()
        evaluations_per_step = 2 if first.sampler == "res_2s" else 1
        for step in range(1, first.steps + 1):
            still = []
            for k in live:
                if jobs[k].should_stop():
                    finish(k, Cancelled(f"cancelled before step {step}"))
                else:
                    still.append(k)
            live = still
            if not live:
                return outcomes
            cost_ms = self.evaluation_ms(len(live)) * evaluations_per_step
            if cost_ms > 0:
                self.sleep(cost_ms / 1000.0)
            for k in live:
                jobs[k].on_step(step, first.steps, None)
        denoise_ms = (time.perf_counter() - t0) * 1000.0
        for k in live:
            req = jobs[k].req
            rgb = _gradient(req.width, req.height, req.seed)
            total_ms = (time.perf_counter() - t0) * 1000.0
            finish(k, GenerateResult(width=req.width, height=req.height, seed=req.seed, rgb=rgb,
                                     timings={"text_ms": 0.0, "denoise_ms": denoise_ms, "decode_ms": total_ms - denoise_ms,
                                              "total_ms": total_ms}))
        return outcomes


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
