"""Same inputs give identical pixels, in one process, in a fresh one and on any number of CPU
threads; seeds differ; the reference path asks a GPU for deterministic kernels."""

import hashlib
import os
import subprocess
import sys

import pytest
import torch

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


THREADS_SCRIPT = """
import hashlib, sys
from klein_engine.pipeline import KleinEngine
from klein_engine.job import GenerateRequest
e = KleinEngine.load(sys.argv[1], device="cpu")
for w, h, cfg, sampler in ((256, 256, 3.0, "res_2s"), (512, 384, 1.0, "euler")):
    r = e.generate(GenerateRequest(prompt="a lighthouse at dusk", negative_prompt="low quality", seed=7, cfg=cfg,
        sampler=sampler, steps=4, width=w, height=h), lambda *a: None, lambda: False)
    print(hashlib.sha256(r.rgb).hexdigest())
"""


def test_same_bytes_on_any_number_of_cpu_threads(tiny_path):
    """A machine with 1, 2 or 3 cores (OMP_NUM_THREADS): without the engine's own thread count
    these sizes differ by 1/255 in some pixels (7 at 256², 27 at 512×384)."""
    digests = set()
    for threads in ("1", "2", "3"):
        env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        out = subprocess.run([sys.executable, "-c", THREADS_SCRIPT, str(tiny_path)], capture_output=True, text=True, check=True, env=env)
        digests.add(tuple(out.stdout.split()[-2:]))
    assert len(digests) == 1, digests


def test_reference_flags_on_a_gpu_and_restored_after():
    from klein_engine.reproducible import reference_flags

    cudnn = torch.backends.cudnn
    before = (cudnn.benchmark, cudnn.deterministic, torch.are_deterministic_algorithms_enabled())
    with reference_flags(torch.device("cuda"), enabled=True):
        assert (cudnn.benchmark, cudnn.deterministic, torch.are_deterministic_algorithms_enabled()) == (False, True, True)
    assert (cudnn.benchmark, cudnn.deterministic, torch.are_deterministic_algorithms_enabled()) == before
    for device, enabled in ((torch.device("cuda"), False), (torch.device("cpu"), True)):
        with reference_flags(device, enabled):
            assert (cudnn.benchmark, cudnn.deterministic, torch.are_deterministic_algorithms_enabled()) == before


def test_only_go_fast_false_takes_the_reference_flags(engine, monkeypatch):
    import contextlib

    from klein_engine import pipeline, reproducible

    seen = []

    @contextlib.contextmanager
    def spy(device, enabled):
        seen.append(enabled)
        yield

    monkeypatch.setattr(reproducible, "reference_flags", spy)
    monkeypatch.setattr(pipeline, "reference_flags", spy)
    engine.generate(request(go_fast=False), noop_step, never)
    assert seen == [True, True]  # the whole generation, and its decode
    seen.clear()
    engine.generate(request(go_fast=True), noop_step, never)
    assert seen == [False, False]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the lent GPU machine)")
def test_reference_path_on_a_gpu_is_deterministic(tiny_path):
    """go_fast: false on CUDA: every transformer forward runs under the deterministic flags, no
    op falls back to a non-deterministic kernel (warn-only mode would warn), and the bytes
    repeat even after something in the process turned cuDNN benchmarking on."""
    import warnings

    from klein_engine.options import EngineOptions
    from klein_engine.pipeline import KleinEngine

    engine = KleinEngine.load(str(tiny_path), device="cuda", options=EngineOptions(compile="off"))
    flags = []
    engine.components.transformer.register_forward_hook(
        lambda m, i, o: flags.append((torch.backends.cudnn.deterministic, torch.are_deterministic_algorithms_enabled())))
    req = request(go_fast=False, cfg=3.0, sampler="res_2s", width=256, height=192, images=())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = engine.generate(req, noop_step, never).rgb
        benchmark = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = True
        try:
            b = engine.generate(req, noop_step, never).rgb
        finally:
            torch.backends.cudnn.benchmark = benchmark
    assert a == b
    assert flags and all(f == (True, True) for f in flags)
    assert not [w for w in caught if "deterministic" in str(w.message).lower()], [str(w.message) for w in caught]
