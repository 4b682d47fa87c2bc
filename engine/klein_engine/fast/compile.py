"""torch.compile with static shapes, compiled at start-up only, with a persistent cache.

- Static shapes (`dynamic=False`): every (batch, tokens) signature is its own graph, so the
  kernels are specialised and CUDA graphs (mode `reduce-overhead`) can be recorded.
- Compiled at start-up only: the engine runs its warm-up requests inside `compiling()`;
  a later call whose signature was not compiled then runs the eager module (still fp8)
  instead of stalling that request for the minutes a compile takes. The log names the
  size, so the operator can add it to KLEIN_WARMUP_SIZES.
- Persistent cache: inductor's FX-graph cache, its autotuning results and the Triton
  kernels all live under TORCHINDUCTOR_CACHE_DIR (Triton's directory defaults to a
  subdirectory of it), which `use_cache_dir` points at a directory that survives restarts.
  A restart still traces the model with dynamo (seconds) but reuses compiled kernels.
- Outputs are cloned: under CUDA graphs the next replay overwrites the previous output
  buffer, and res_2s still reads its first stage's velocity after the second evaluation.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

log = logging.getLogger("klein_engine")

# Warm-up signatures per compiled function: sizes × batch sizes, well above dynamo's default of 8.
RECOMPILE_LIMIT = 64


def use_cache_dir(path: Path) -> Path:
    """Points inductor's caches (FX graphs, autotuning, Triton kernels) at `path`."""
    path = Path(path).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path)
    import torch._inductor.config as inductor_config

    inductor_config.fx_graph_cache = True
    inductor_config.autotune_local_cache = True
    return path


def signature(args: tuple, kwargs: dict) -> tuple:
    """What a static-shape graph is specialised on: tensor shapes and dtypes, other values."""

    def one(v: Any):
        if isinstance(v, torch.Tensor):
            return ("T", tuple(v.shape), str(v.dtype), v.device.type)
        if isinstance(v, (list, tuple)):
            return tuple(one(x) for x in v)
        return v if isinstance(v, (int, float, str, bool, type(None))) else type(v).__name__

    return tuple(one(a) for a in args) + tuple((k, one(v)) for k, v in sorted(kwargs.items()))


class StaticCompiled:
    """Calls `torch.compile(fn)` for the signatures compiled during `compiling()`, `fn` itself
    for any other. The compiled and eager callables share the same module and weights."""

    def __init__(self, fn: Callable, name: str, mode: str = "default", backend: str = "inductor"):
        import torch._dynamo.config as dynamo_config

        dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, RECOMPILE_LIMIT)
        dynamo_config.accumulated_recompile_limit = max(dynamo_config.accumulated_recompile_limit, 4 * RECOMPILE_LIMIT)
        self.eager = fn
        self.name = name
        self.mode = mode
        self.backend = backend
        kwargs = {"dynamic": False, "backend": backend}
        if backend == "inductor":
            kwargs["mode"] = mode
        self.compiled = torch.compile(fn, **kwargs)
        self.signatures: set[tuple] = set()
        self._compiling = False
        self._warned: set[tuple] = set()
        self.compiled_calls = 0
        self.eager_calls = 0

    @contextlib.contextmanager
    def compiling(self) -> Iterator[None]:
        """Inside, every call goes through the compiled function and its signature is kept."""
        self._compiling = True
        try:
            yield
        finally:
            self._compiling = False

    def __call__(self, *args, **kwargs):
        sig = signature(args, kwargs)
        if self._compiling or sig in self.signatures:
            out = self.compiled(*args, **kwargs)
            self.signatures.add(sig)
            self.compiled_calls += 1
            return _clone(out)
        if sig not in self._warned:
            self._warned.add(sig)
            log.info("%s: shapes %s were not compiled at start-up; running eagerly", self.name, _shapes(sig))
        self.eager_calls += 1
        return self.eager(*args, **kwargs)


def _clone(out):
    if isinstance(out, torch.Tensor):
        return out.clone()
    if isinstance(out, tuple):
        return tuple(_clone(o) for o in out)
    if isinstance(out, list):
        return [_clone(o) for o in out]
    return out


def _shapes(sig: tuple) -> str:
    found = []

    def walk(v):
        if isinstance(v, tuple) and len(v) == 4 and v[0] == "T":
            found.append("x".join(str(d) for d in v[1]))
        elif isinstance(v, tuple):
            for x in v:
                walk(x)

    walk(sig)
    return ", ".join(found)
