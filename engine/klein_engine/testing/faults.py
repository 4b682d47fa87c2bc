"""Fault injection for tests of the supervisor and the API (crash, OOM, slow steps).

Active ONLY when the engine's environment has KLEIN_ENGINE_FAULTS=1 — never set it in
production. Then markers in the prompt act at the sampler's step boundaries, and the real
pipeline runs otherwise:

    [[fault:oom]]        torch.OutOfMemoryError before the first step
    [[fault:crash]]      the process exits abruptly (status 70) before the first step
    [[fault:internal]]   RuntimeError before the first step
    [[fault:sleep:MS]]   sleep MS milliseconds before each step

KLEIN_ENGINE_FAULT_LOAD_DELAY_MS delays the `ready` frame (tests of the STARTING state).
Without KLEIN_ENGINE_FAULTS=1 the markers are ordinary prompt text.
"""

from __future__ import annotations

import os
import re
import time

from .job import OnStep, ShouldStop

_SLEEP = re.compile(r"\[\[fault:sleep:(\d{1,6})\]\]")


def enabled() -> bool:
    return os.environ.get("KLEIN_ENGINE_FAULTS") == "1"


def load_delay() -> None:
    if enabled():
        ms = int(os.environ.get("KLEIN_ENGINE_FAULT_LOAD_DELAY_MS", "0") or 0)
        if ms > 0:
            time.sleep(ms / 1000)


def wrap(prompt: str, on_step: OnStep, should_stop: ShouldStop) -> tuple[OnStep, ShouldStop]:
    if not enabled() or "[[fault:" not in prompt:
        return on_step, should_stop
    m = _SLEEP.search(prompt)
    sleep_s = int(m.group(1)) / 1000 if m else 0.0
    first = [True]

    def stop() -> bool:
        if first[0]:
            first[0] = False
            if "[[fault:oom]]" in prompt:
                import torch

                raise torch.OutOfMemoryError("simulated out of memory ([[fault:oom]])")
            if "[[fault:crash]]" in prompt:
                os._exit(70)
            if "[[fault:internal]]" in prompt:
                raise RuntimeError("simulated internal error ([[fault:internal]])")
        if sleep_s:
            time.sleep(sleep_s)
        return should_stop()

    return on_step, stop
