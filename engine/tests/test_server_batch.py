"""The protocol server with KLEIN_MAX_BATCH=3 on `tiny`: compatible go_fast jobs waiting in the
queue run as one batch, a go_fast false job runs alone, a cancel drops one job of the batch."""

import re

import numpy as np

from .test_server import Engine, gen


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
        if e.p.poll() is None:
            e.p.stdin.close()
            e.p.wait(timeout=60)
        log = e.p.stderr.read().decode()
        e.p.stderr.close()
        e.p.stdout.close()
    assert "batch of 3: b1, b2, b3" in log, log[-3000:]
    assert not re.search(r"batch of \d+: [^\n]*\b(n1|busy|b1-alone)\b", log), log[-3000:]
