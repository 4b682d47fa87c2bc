"""The static-shape compile wrapper: compiled at warm-up only, eager for other shapes, the
persistent cache directory; and the engine's warm-up through it on `tiny` with dynamo's
`eager` backend (the same graph capture and guards without code generation, seconds on a
CPU; inductor on a CPU takes minutes and is exercised on the GPU: tests/test_gpu_fast.py)."""

import dataclasses
import os

import torch
from torch import nn

from klein_engine.fast.compile import StaticCompiled, use_cache_dir
from klein_engine.options import EngineOptions
from klein_engine.pipeline import KleinEngine

from .conftest import never, noop_step, request


def test_compiles_only_the_warm_up_signatures():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 4)).eval()
    f = StaticCompiled(m, "mlp", backend="aot_eager")
    a, b = torch.randn(3, 8), torch.randn(5, 8)
    with torch.inference_mode():
        with f.compiling():
            f(a)
        assert f.compiled_calls == 1
        out = f(torch.randn(3, 8))  # same shape: compiled
        assert f.compiled_calls == 2 and f.eager_calls == 0
        got = f(b)  # another shape: eager, not compiled mid-service
        assert f.eager_calls == 1 and f.compiled_calls == 2
        assert torch.equal(got, m(b)) and torch.allclose(f(a), m(a), atol=1e-6)
        assert out.shape == (3, 4)


def test_cache_dir_is_where_inductor_looks(tmp_path, monkeypatch):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    use_cache_dir(tmp_path / "compile")
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "compile") == cache_dir()
    assert (tmp_path / "compile").is_dir()


def test_engine_warm_up_compiles_the_shapes_requests_use(tiny_path, tmp_path, monkeypatch, engine):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))  # restored after the test
    opts = EngineOptions(compile="on", compile_backend="eager", warmup_sizes=((64, 64),), compile_cache_dir=tmp_path / "c")
    e = KleinEngine.load(str(tiny_path), device="cpu", options=opts)
    assert e.facts()["capabilities"]["go_fast"] is True and e.facts()["fast"]["compile"] == "default"
    assert e.facts()["fast"]["warmup_sizes"] == ["64x64"]
    assert e.warm_up() > 0
    tr, dec = e.fast.compiled
    assert len(tr.signatures) == 2 and len(dec.signatures) == 1  # batch 1 and 2 (CFG); one decode
    before = (tr.compiled_calls, tr.eager_calls)
    req = request(seed=3, steps=3, cfg=2.0, width=64, height=64)
    fast = e.generate(req, noop_step, never)
    assert tr.compiled_calls == before[0] + 3 and tr.eager_calls == before[1]
    # The eager backend runs the same kernels: same bytes as the reference path here.
    assert fast.rgb == engine.generate(dataclasses.replace(req, go_fast=False), noop_step, never).rgb
    e.generate(request(width=80, height=64, steps=2), noop_step, never)
    assert tr.eager_calls == before[1] + 2  # a size not warmed up runs eagerly
