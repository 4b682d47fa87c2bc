"""Same inputs give identical pixels, in one process and in a fresh one; seeds differ."""

import hashlib
import subprocess
import sys

from klein_engine.job import Cancelled

from .conftest import never, noop_step, request

SCRIPT = """
import hashlib, sys
from klein_engine.pipeline import KleinEngine
from klein_engine.job import GenerateRequest
e = KleinEngine.load(sys.argv[1], device="cpu")
r = e.generate(GenerateRequest(prompt="a lighthouse at dusk", negative_prompt="low quality", seed=7, cfg=3.0,
    sampler="res_2s", steps=3, width=64, height=64), lambda *a: None, lambda: False)
print(hashlib.sha256(r.rgb).hexdigest())
"""


def test_same_seed_same_pixels_in_process_and_fresh_process(engine, tiny_path):
    req = request(cfg=3.0, sampler="res_2s")
    a = engine.generate(req, noop_step, never).rgb
    b = engine.generate(req, noop_step, never).rgb
    assert a == b
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(tiny_path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == hashlib.sha256(a).hexdigest()


def test_other_seed_other_pixels(engine):
    assert engine.generate(request(seed=1), noop_step, never).rgb != engine.generate(request(seed=2), noop_step, never).rgb


def test_progress_previews_and_cancel(engine):
    seen = []
    engine.generate(request(steps=4, preview=True), lambda s, t, p: seen.append((s, t, p)), never)
    assert [s for s, _, _ in seen] == [1, 2, 3, 4]
    p = seen[-1][2]
    assert p is not None and len(p.rgb) == p.width * p.height * 3
    polls = []

    def stop():
        polls.append(1)
        return len(polls) > 2

    import pytest

    with pytest.raises(Cancelled):
        engine.generate(request(steps=6), noop_step, stop)
    assert len(polls) == 3  # stopped before the third step
