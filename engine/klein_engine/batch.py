"""Batching queued requests: which ones may share a forward, and how a batch is taken.

Requests share one batched transformer forward per step when everything that shapes the
forward and the schedule is equal: width, height, steps, sampler, whether CFG is on
(cfg > 1; the scale itself is applied per request), the number and sizes of reference
images, and go_fast (which transformer runs). Prompts, seeds, cfg scales, references'
pixels and previews may differ. LoRA adapters (keys and scales, in order) must be equal too:
they are hooked onto the transformer for the whole batch (lora/apply.py), so requests with
different adapters are split into different batches, never mixed.

Only go_fast requests are batched. A batch changes the GEMM shapes, and with them (on a
GPU) the last bits of each image, so a `go_fast: false` request, whose bytes must depend
on its own parameters only, always runs alone. The server batches only when
KLEIN_MAX_BATCH > 1, which is therefore also the operator's consent that go_fast images may
differ in their last bits with the company they were computed in (within the go_fast
tolerance, far below it in practice; equal within 1e-5 on `tiny` in float32).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable, Hashable, Optional

from .job import GenerateRequest, OnStep, ShouldStop


def _noop_step(step: int, total: int, preview) -> None:
    pass


def _never() -> bool:
    return False


@dataclass
class BatchJob:
    req: GenerateRequest
    on_step: OnStep = _noop_step
    should_stop: ShouldStop = _never


def shape_key(req: GenerateRequest) -> tuple:
    """What requests in one batch must share."""
    return (req.width, req.height, req.steps, req.sampler, req.cfg > 1.0, tuple((im.width, im.height) for im in req.images),
            req.go_fast, tuple((lora.key, lora.scale) for lora in req.loras))


def batch_key(req: GenerateRequest, max_batch: int) -> Optional[Hashable]:
    """The key under which `req` may be batched with others, or None when it runs alone."""
    if max_batch <= 1 or not req.go_fast:
        return None
    return shape_key(req)


def take_batch(backlog: deque, max_batch: int, key_of: Callable[[object], Optional[Hashable]],
               is_barrier: Callable[[object], bool]) -> list:
    """Removes and returns the head of `backlog` and up to max_batch − 1 later items with the
    same key, in arrival order; the items left keep their order. A barrier item (shutdown)
    ends the search: nothing behind it joins a batch. The head is always taken, so every item
    runs after at most as many batches as there are items ahead of it."""
    head = backlog.popleft()
    batch = [head]
    key = key_of(head)
    if key is None or max_batch <= 1:
        return batch
    kept = deque()
    while backlog and len(batch) < max_batch:
        item = backlog.popleft()
        if is_barrier(item):
            kept.append(item)
            break
        if key_of(item) == key:
            batch.append(item)
        else:
            kept.append(item)
    kept.extend(backlog)
    backlog.clear()
    backlog.extend(kept)
    return batch
