"""The protocol server with KLEIN_MAX_BATCH=3 on `tiny`: compatible go_fast jobs waiting in the
queue run as one batch, a go_fast false job runs alone, a cancel drops one job of the batch."""

import re

import pytest

import numpy as np

from .test_server import Engine, gen


def closed_log(e: Engine) -> str:
    """Ends the engine (end of input) and returns what it logged, where the batches are named."""
    if e.p.poll() is None:
        e.p.stdin.close()
        e.p.wait(timeout=60)
    log = e.p.stderr.read().decode()
    e.p.stderr.close()
    e.p.stdout.close()
    return log


def test_queued_compatible_jobs_run_as_one_batch_and_a_cancel_leaves_the_rest(tiny_path):
    e = Engine(extra_env={"KLEIN_MAX_BATCH": "3"})
    try:
        ready = e.read().header
        assert ready["type"] == "ready" and ready["capabilities"]["max_batch"] == 3
        slow = "a cat [[fault:sleep:120]]"
        e.send(gen("busy", width=80, steps=4, prompt=slow))  # runs first; the others queue behind it
        e.send(gen("b1", steps=4, prompt=slow, seed=11))
        e.send(gen("n1", steps=4, prompt=slow, seed=12, go_fast=False))
        e.send(gen("b2", steps=4, prompt=slow, seed=13))
        e.send(gen("b3", steps=4, prompt=slow, seed=14))
        terminal, progress = {}, {}
        while len(terminal) < 5:
            f = e.read()
            assert f is not None, e.p.stderr.read().decode()[-3000:]
            h = f.header
            if h["type"] == "progress":
                progress.setdefault(h["id"], []).append(h["step"])
                if h["id"] == "b2" and h["step"] == 1:
                    e.send({"type": "cancel", "id": "b2"})
            elif h["type"] in ("result", "error"):
                terminal[h["id"]] = f
        assert {k: f.header["type"] for k, f in terminal.items()} == {"busy": "result", "b1": "result", "n1": "result", "b2": "error", "b3": "result"}
        assert terminal["b2"].header["code"] == "cancelled"
        assert progress["b1"] == progress["b3"] == [1, 2, 3, 4] and progress["b2"][0] == 1 and len(progress["b2"]) < 4
        # The same request alone gives the same image (within 8-bit rounding of 1e-5 differences).
        e.send(gen("b1-alone", steps=4, prompt=slow, seed=11))
        alone = e.until_terminal("b1-alone")[-1]
        a = np.frombuffer(terminal["b1"].payload, np.uint8).astype(int)
        assert np.abs(a - np.frombuffer(alone.payload, np.uint8).astype(int)).max() <= 1
    finally:
        log = closed_log(e)
    assert "batch of 3: b1, b2, b3" in log, log[-3000:]
    assert not re.search(r"batch of \d+: [^\n]*\b(n1|busy|b1-alone)\b", log), log[-3000:]


def test_a_batch_the_worker_formed_runs_together_however_its_frames_are_read():
    """Frames naming one `batch` are gathered until all have arrived, so the batch does not
    depend on how fast the reader reads them; a go_fast false member runs alone, and a batch
    that arrives while another runs waits for it."""
    e = Engine(model="simulated:0", extra_env={"KLEIN_MAX_BATCH": "4"})
    try:
        assert e.read().header["capabilities"]["max_batch"] == 4
        group = {"id": "g", "size": 3}
        e.send({**gen("a1", steps=2), "batch": group})
        e.send({**gen("a2", steps=2, seed=2), "batch": group})
        e.send({**gen("a3", steps=2, seed=3), "batch": group})
        e.send({**gen("solo", steps=2)})  # no batch: runs after the group, alone
        other = {"id": "h", "size": 3}
        e.send({**gen("c1", steps=2), "batch": other})
        e.send({**gen("c2", steps=2, go_fast=False), "batch": other})
        e.send({**gen("c3", steps=2, width=80), "batch": other})
        e.send({**gen("bad", steps="two"), "batch": {"id": "k", "size": 2}})  # refused, still one of its batch
        e.send({**gen("k2", steps=2), "batch": {"id": "k", "size": 2}})
        ends = {}
        while len(ends) < 9:
            f = e.read()
            assert f is not None, e.p.stderr.read().decode()[-3000:]
            if f.header["type"] in ("result", "error"):
                ends[f.header["id"]] = f.header["type"]
        assert ends == {**{k: "result" for k in ("a1", "a2", "a3", "solo", "c1", "c2", "c3", "k2")}, "bad": "error"}
    finally:
        log = closed_log(e)
    assert "batch of 3: a1, a2, a3" in log, log[-3000:]
    # c1, c2 (go_fast false) and c3 (another size) cannot share a forward: each runs alone.
    assert not re.search(r"batch of \d+: [^\n]*\b(solo|c1|c2|c3|k2)\b", log), log[-3000:]


def test_simulated_batches_cost_a_plus_b_n_per_evaluation():
    from klein_engine.batch import BatchJob
    from klein_engine.job import Cancelled, InvalidInput
    from klein_engine.simulated import SimulatedEngine

    from .conftest import request

    assert (SimulatedEngine.load("simulated:100").ms_fixed, SimulatedEngine.load("simulated:100").ms_per_request) == (0.0, 100.0)
    assert SimulatedEngine.load("simulated").evaluation_ms(4) == 0.0
    for bad in ("simulated:fast", "simulated:1+", "simulated:-1"):
        with pytest.raises(InvalidInput):
            SimulatedEngine.load(bad)
    slept = []
    eng = SimulatedEngine.load("simulated:60+40", max_batch=4)
    eng.sleep = slept.append
    assert eng.facts()["capabilities"]["max_batch"] == 4
    polls = {"n": 0}

    def stop_at_second_step():
        polls["n"] += 1
        return polls["n"] > 1

    jobs = [BatchJob(request(seed=1, steps=3)), BatchJob(request(seed=2, steps=3), should_stop=stop_at_second_step),
            BatchJob(request(seed=3, steps=3, sampler="res_2s"))]
    with pytest.raises(ValueError):  # res_2s does not share a forward with euler
        eng.generate_batch(jobs)
    slept.clear()
    polls["n"] = 0
    jobs[2] = BatchJob(request(seed=3, steps=3))
    out = eng.generate_batch(jobs)
    # Three requests for one step, then two: (60 + 40·3) ms, then (60 + 40·2) ms twice.
    assert slept == pytest.approx([0.18, 0.14, 0.14])
    assert isinstance(out[1], Cancelled) and out[0].rgb != out[2].rgb
    slept.clear()
    eng.generate(request(steps=2, sampler="res_2s"), lambda *a: None, lambda: False)
    assert slept == pytest.approx([0.2, 0.2])  # two evaluations per res_2s step, batch of one
