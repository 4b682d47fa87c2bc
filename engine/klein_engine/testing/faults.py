"""Fault injection for tests of the supervisor and the API: crash, OOM, internal error, slow
steps, a slow start.

A wrapper around an engine (the real or the simulated one), never part of a production
engine: `python -m klein_engine serve` serves through it only when the engine's environment
has KLEIN_ENGINE_FAULTS=1 (the TypeScript tests set it; __main__.py), and
`python -m klein_engine.testing.faults [--model M]` always does. Markers in a job's prompt
then act at its sampler's step boundaries, and the engine runs as it is otherwise:

    [[fault:oom]]        torch.OutOfMemoryError before the first step
    [[fault:crash]]      the process exits abruptly (status 70) before the first step
    [[fault:internal]]   RuntimeError before the first step
    [[fault:sleep:MS]]   sleep MS milliseconds before each step

KLEIN_ENGINE_FAULT_LOAD_DELAY_MS delays the `ready` frame (tests of the STARTING state).
Without the wrapper the markers are ordinary prompt text.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import time
from typing import Optional, Sequence

from ..batch import BatchJob
from ..job import Engine, GenerateRequest, GenerateResult, OnDone, OnStep, ShouldStop

MARKER = "[[fault:"
_SLEEP = re.compile(r"\[\[fault:sleep:(\d{1,6})\]\]")
CRASH_STATUS = 70


class PromptFaults:
    """A job's should_stop with its prompt's faults: the first poll, before the first step,
    raises or exits; every poll first sleeps."""

    def __init__(self, prompt: str, should_stop: ShouldStop):
        self.prompt = prompt
        self.should_stop = should_stop
        sleep = _SLEEP.search(prompt)
        self.sleep_s = int(sleep.group(1)) / 1000 if sleep else 0.0
        self.polled = False

    def __call__(self) -> bool:
        if not self.polled:
            self.polled = True
            if "[[fault:oom]]" in self.prompt:
                import torch

                raise torch.OutOfMemoryError("simulated out of memory ([[fault:oom]])")
            if "[[fault:crash]]" in self.prompt:
                os._exit(CRASH_STATUS)
            if "[[fault:internal]]" in self.prompt:
                raise RuntimeError("simulated internal error ([[fault:internal]])")
        if self.sleep_s:
            time.sleep(self.sleep_s)
        return self.should_stop()


def with_faults(prompt: str, should_stop: ShouldStop) -> ShouldStop:
    return PromptFaults(prompt, should_stop) if MARKER in prompt else should_stop


class FaultInjectingEngine:
    """`engine`, with each job's should_stop replaced by its prompt's faults."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.max_batch = engine.max_batch

    def facts(self):
        return self.engine.facts()

    def warm_up(self) -> float:
        return self.engine.warm_up()

    def generate(self, req: GenerateRequest, on_step: OnStep, should_stop: ShouldStop) -> GenerateResult:
        return self.engine.generate(req, on_step, with_faults(req.prompt, should_stop))

    def generate_batch(self, jobs: Sequence[BatchJob], on_done: Optional[OnDone] = None) -> list:
        faulty = [dataclasses.replace(job, should_stop=with_faults(job.req.prompt, job.should_stop)) for job in jobs]
        return self.engine.generate_batch(faulty, on_done)


def inject_faults(engine: Engine) -> FaultInjectingEngine:
    """Wraps a loaded engine, after waiting KLEIN_ENGINE_FAULT_LOAD_DELAY_MS."""
    delay_ms = int(os.environ.get("KLEIN_ENGINE_FAULT_LOAD_DELAY_MS", "0") or 0)
    if delay_ms > 0:
        time.sleep(delay_ms / 1000)
    return FaultInjectingEngine(engine)


def main(argv: list[str] | None = None) -> int:
    """`python -m klein_engine serve`, serving through the fault-injecting wrapper."""
    from ..server import main as serve

    return serve(argv, wrap=inject_faults)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
