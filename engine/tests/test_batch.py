"""generate_batch: compatible requests as one batched forward per step give what they give
one by one (float32, tiny: equal within 1e-5 on the final latents); a cancelled job leaves
the batch between steps and the others finish unchanged; taking batches from a queue."""

from collections import deque

import numpy as np
import pytest

from klein_engine.batch import BatchJob, batch_key, take_batch
from klein_engine.job import Cancelled, InvalidInput, ReferenceImage

from .conftest import never, noop_step, request

TOL = 1e-5


def ref(seed, w=64, h=64):
    rng = np.random.default_rng(seed)
    return ReferenceImage(w, h, rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8).tobytes())


@pytest.mark.parametrize("cfgs,sampler", [((1.0, 1.0, 1.0), "euler"), ((3.0, 4.0, 5.0), "res_2s")])
def test_batch_equals_one_by_one(engine, cfgs, sampler):
    # Different seeds, prompts (one repeated), cfg scales and reference pixels; same shapes.
    prompts = ("a red fox", "a lighthouse", "a red fox")
    reqs = [request(seed=k + 1, prompt=prompts[k], steps=3, cfg=cfgs[k], sampler=sampler, images=(ref(k),)) for k in range(3)]
    batched = engine.generate_batch([BatchJob(r) for r in reqs], output_type="latent")
    for k, r in enumerate(reqs):
        alone = engine.generate(r, noop_step, never, output_type="latent")
        diff = (batched[k] - alone).abs().max().item()
        assert diff <= TOL, (k, diff)
    # The requests really differ (seeds, prompts, references): a mix-up would show.
    assert (batched[0] - batched[1]).abs().max().item() > 1e-2


def test_generate_batch_images_progress_and_a_cancel_between_steps(engine):
    reqs = [request(seed=10 + k, prompt=f"prompt {k}", steps=4, preview=(k == 0)) for k in range(3)]
    steps = {k: [] for k in range(3)}
    polls = {k: 0 for k in range(3)}

    def stopper(k):
        def stop():
            polls[k] += 1
            return k == 1 and polls[k] > 2  # job 1 is cancelled before its third step

        return stop

    done_order = []
    jobs = [BatchJob(r, (lambda k: lambda s, t, p: steps[k].append((s, t, p is not None)))(k), stopper(k)) for k, r in enumerate(reqs)]
    out = engine.generate_batch(jobs, lambda k, o: done_order.append((k, type(o).__name__)))
    assert isinstance(out[1], Cancelled) and "before step 3" in str(out[1])
    assert done_order[0] == (1, "Cancelled")  # answered at once, not after the batch
    assert steps[1] == [(1, 4, False), (2, 4, False)]
    assert steps[0] == [(s, 4, True) for s in range(1, 5)] and steps[2] == [(s, 4, False) for s in range(1, 5)]
    for k in (0, 2):
        alone = engine.generate(reqs[k], noop_step, never)
        got = np.frombuffer(out[k].rgb, np.uint8).astype(int)
        assert np.abs(got - np.frombuffer(alone.rgb, np.uint8).astype(int)).max() <= 1  # 8-bit rounding of 1e-5 differences
        assert set(out[k].timings) == {"text_ms", "denoise_ms", "decode_ms", "total_ms"}


def test_invalid_job_is_answered_and_the_rest_run(engine):
    out = engine.generate_batch([BatchJob(request(width=70)), BatchJob(request(seed=3))])
    assert isinstance(out[0], InvalidInput) and len(out[1].rgb) == 64 * 64 * 3


def test_incompatible_requests_are_refused(engine):
    with pytest.raises(ValueError):
        engine.generate_batch([BatchJob(request(steps=3)), BatchJob(request(steps=4))])


def test_all_cancelled_returns_only_cancellations(engine):
    out = engine.generate_batch([BatchJob(request(), noop_step, lambda: True) for _ in range(2)])
    assert all(isinstance(o, Cancelled) for o in out)


def test_batch_key_batches_go_fast_only_and_only_like_shapes():
    assert batch_key(request(), 1) is None
    assert batch_key(request(go_fast=False), 4) is None
    assert batch_key(request(seed=1, cfg=2.0, prompt="a"), 4) == batch_key(request(seed=2, cfg=7.0, prompt="b"), 4)
    for other in (dict(width=80), dict(steps=4), dict(sampler="res_2s"), dict(cfg=1.0), dict(images=(ref(1),))):
        assert batch_key(request(**{"cfg": 2.0, **other}), 4) != batch_key(request(cfg=2.0), 4)


def test_take_batch_keeps_order_and_stops_at_a_barrier():
    def key(item):
        return item[0]

    stop = object()
    backlog = deque([("a", 1), ("b", 2), ("a", 3), ("a", 4), stop, ("a", 5)])
    assert take_batch(backlog, 3, key, lambda i: i is stop) == [("a", 1), ("a", 3), ("a", 4)]
    assert list(backlog) == [("b", 2), stop, ("a", 5)]
    backlog = deque([("a", 1), ("a", 2), stop, ("a", 3)])
    assert take_batch(backlog, 8, key, lambda i: i is stop) == [("a", 1), ("a", 2)]
    assert list(backlog) == [stop, ("a", 3)]
    backlog = deque([(None, 1), (None, 2)])
    assert take_batch(backlog, 8, key, lambda i: False) == [(None, 1)]
