"""The tiny model is small enough to serve the API defaults fast on a 2-core CPU.

Issue requirement: 1024×1024, 20 steps, cfg 5 (20 batch-2 forwards), euler, in at most
3 s on the project's 2-core machine. Measured there at about 2.3 s with a warm prompt
cache (`python -m klein_engine generate --model tiny --prompt "a cat" --out x.png
--repeat 2`). The bound asserted here is looser (6 s) so a busy CI machine does not fail
the suite; the figure is printed for the record.
"""

import time

from .conftest import never, noop_step, request


def test_api_defaults_on_tiny_are_fast(engine):
    req = request(width=1024, height=1024, steps=20, cfg=5.0, negative_prompt="low quality, blurry, less details")
    engine.generate(request(), noop_step, never)  # warm-up (allocator, kernels)
    t0 = time.perf_counter()
    res = engine.generate(req, noop_step, never)
    took = time.perf_counter() - t0
    print(f"tiny, 1024x1024, 20 steps, cfg 5: {took:.2f} s ({res.timings})")
    assert len(res.rgb) == 1024 * 1024 * 3
    assert took < 6.0
