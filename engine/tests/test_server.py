"""The protocol server as a subprocess on `tiny`: every message, cancel, OOM, exits. Every
frame it sends is checked against protocol/messages.schema.json."""

import os
import subprocess
import sys
import time

import pytest

from klein_engine.protocol import encode_frame, read_frame

from .protocol_schema import message_errors

PARAMS = {"prompt": "a cat", "negative_prompt": "", "seed": 1, "cfg": 1, "sampler": "euler", "steps": 3, "width": 64, "height": 64}


class Engine:
    """`python -m klein_engine serve` as the worker starts it; with `faults`, as the TypeScript
    tests start it (KLEIN_ENGINE_FAULTS=1: the fault-injecting wrapper, testing/faults.py)."""

    def __init__(self, model="tiny", faults=True, extra_env=None):
        env = dict(os.environ, KLEIN_MODEL=model)
        if faults:
            env["KLEIN_ENGINE_FAULTS"] = "1"
        env.update(extra_env or {})
        self.p = subprocess.Popen([sys.executable, "-m", "klein_engine", "serve"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)

    def send(self, header, payload=b""):
        self.p.stdin.write(encode_frame(header, payload))
        self.p.stdin.flush()

    def read(self):
        frame = read_frame(self.p.stdout)
        if frame is not None:
            assert message_errors(frame.header) == [], frame.header
        return frame

    def until_terminal(self, job_id):
        frames = []
        while True:
            f = self.read()
            assert f is not None, self.p.stderr.read().decode()[-2000:]
            if f.header.get("id") != job_id:
                continue
            frames.append(f)
            if f.header["type"] in ("result", "error"):
                return frames

    def close(self):
        if self.p.poll() is None:
            self.p.stdin.close()
            self.p.wait(timeout=60)
        self.p.stderr.close()
        self.p.stdout.close()


@pytest.fixture(scope="module")
def eng(tiny_path):
    e = Engine()
    ready = e.read()
    assert ready.header["type"] == "ready", ready.header
    e.ready = ready.header
    yield e
    e.close()


def gen(job_id, **kw):
    return {"type": "generate", "id": job_id, "params": {**PARAMS, **kw}, "images": []}


def test_ready_facts(eng):
    h = eng.ready
    assert h["protocol"] == 1 and h["v"] == 1 and h["variant"] == "distilled" and h["device"] == "cpu"
    assert h["geometry"]["pixel_multiple"] == 16 and "res_2s" in h["capabilities"]["samplers"]
    # On a CPU nothing is fast, and jobs run one at a time unless KLEIN_MAX_BATCH says otherwise.
    assert h["capabilities"]["go_fast"] is False and h["capabilities"]["max_batch"] == 1
    assert h["fast"]["fp8"] is None and h["fast"]["reference_path"] is True


def test_generate_progress_then_result(eng):
    eng.send(gen("a", steps=3))
    frames = eng.until_terminal("a")
    assert [f.header["step"] for f in frames[:-1]] == [1, 2, 3]
    res = frames[-1].header
    assert res["type"] == "result" and (res["width"], res["height"], res["seed"]) == (64, 64, 1)
    assert len(frames[-1].payload) == 64 * 64 * 3
    assert set(res["timings"]) == {"text_ms", "denoise_ms", "decode_ms", "total_ms"}


def test_preview_payloads(eng):
    eng.send(gen("p", steps=2, preview=True))
    frames = eng.until_terminal("p")
    for f in frames[:-1]:
        pv = f.header["preview"]
        assert len(f.payload) == pv["width"] * pv["height"] * 3 > 0


def test_reference_images_in_payload(eng):
    img = bytes(range(256)) * (64 * 64 * 3 // 256)
    eng.send({"type": "generate", "id": "r", "params": PARAMS, "images": [{"width": 64, "height": 64}]}, img)
    assert eng.until_terminal("r")[-1].header["type"] == "result"


def test_cancel_running_job_within_a_step_then_serves(eng):
    eng.send(gen("c", steps=20, prompt="slow [[fault:sleep:200]]"))
    while True:
        f = eng.read()
        if f.header.get("id") == "c" and f.header["type"] == "progress":
            break
    t0 = time.monotonic()
    eng.send({"type": "cancel", "id": "c"})
    frames = eng.until_terminal("c")
    assert frames[-1].header["type"] == "error" and frames[-1].header["code"] == "cancelled"
    assert time.monotonic() - t0 < 1.0  # one step is 200 ms plus compute
    eng.send(gen("after-cancel"))
    assert eng.until_terminal("after-cancel")[-1].header["type"] == "result"


def test_cancel_queued_job_answers_at_once(eng):
    eng.send(gen("busy", steps=6, prompt="slow [[fault:sleep:150]]"))
    eng.send(gen("queued"))
    eng.send({"type": "cancel", "id": "queued"})
    seen = {}
    while len(seen) < 2:
        f = eng.read()
        if f.header["type"] in ("result", "error"):
            seen[f.header["id"]] = f.header
    assert seen["queued"]["code"] == "cancelled"
    assert seen["busy"]["type"] == "result"


@pytest.mark.parametrize("marker,code", [("[[fault:oom]]", "out_of_memory"), ("[[fault:internal]]", "internal")])
def test_errors_leave_the_engine_serving(eng, marker, code):
    eng.send(gen("f", prompt=f"x {marker}"))
    f = eng.until_terminal("f")[-1]
    assert f.header["type"] == "error" and f.header["code"] == code
    eng.send(gen("ok-after"))
    assert eng.until_terminal("ok-after")[-1].header["type"] == "result"


@pytest.mark.parametrize("params,payload", [({"width": 70}, b""), ({"sampler": "dpm"}, b""), ({"steps": "3"}, b""), ({}, b"xyz")])
def test_invalid_input(eng, params, payload):
    eng.send({"type": "generate", "id": "bad", "params": {**PARAMS, **params}, "images": []}, payload)
    f = eng.until_terminal("bad")[-1]
    assert f.header["code"] == "invalid_input", f.header
    eng.send(gen("good"))
    assert eng.until_terminal("good")[-1].header["type"] == "result"


def test_shutdown_and_eof_exit_zero(tiny_path):
    e = Engine()
    assert e.read().header["type"] == "ready"
    e.send({"type": "shutdown"})
    assert e.p.wait(timeout=60) == 0
    e.close()
    e = Engine()
    assert e.read().header["type"] == "ready"
    e.p.stdin.close()
    assert e.p.wait(timeout=60) == 0
    e.close()


def test_crash_fault_exits(tiny_path):
    e = Engine()
    assert e.read().header["type"] == "ready"
    e.send(gen("boom", prompt="[[fault:crash]]"))
    assert e.p.wait(timeout=60) == 70
    e.close()


def test_broken_stream_exits_3(tiny_path):
    e = Engine()
    assert e.read().header["type"] == "ready"
    e.p.stdin.write(b"\x00\x00\x00\x01garbage")
    e.p.stdin.flush()
    assert e.p.wait(timeout=60) == 3
    e.close()


def test_load_failure_is_one_error_frame_and_exit_2():
    e = Engine(model="/nonexistent/model", faults=False)
    f = e.read()
    assert f.header == {"v": 1, "type": "error", "id": None, "code": "internal", "message": f.header["message"]}
    assert "does not exist" in f.header["message"]
    assert e.read() is None
    assert e.p.wait(timeout=60) == 2
    e.close()


def test_markers_are_plain_text_without_the_fault_switch(tiny_path):
    e = Engine(faults=False)
    assert e.read().header["type"] == "ready"
    e.send(gen("plain", prompt="[[fault:crash]]"))
    assert e.until_terminal("plain")[-1].header["type"] == "result"
    e.close()


def test_faults_wrap_the_simulated_engine_and_delay_ready():
    t0 = time.monotonic()
    e = Engine(model="simulated", extra_env={"KLEIN_ENGINE_FAULT_LOAD_DELAY_MS": "600"})
    try:
        assert e.read().header["type"] == "ready"
        assert time.monotonic() - t0 >= 0.6
        e.send(gen("f", prompt="x [[fault:internal]]"))
        assert e.until_terminal("f")[-1].header["code"] == "internal"
        e.send(gen("ok", prompt="x [[fault:sleep:50]]", steps=2))
        assert [f.header["type"] for f in e.until_terminal("ok")] == ["progress", "progress", "result"]
    finally:
        e.close()
