"""The attention kernel of the go_fast transformer: the fastest one this GPU and build have.

Candidates are diffusers' attention backends (diffusers.models.attention_dispatch): cuDNN
and FlashAttention through torch's SDPA, FlashAttention-3 and flash-attn when those packages
are installed, and the memory-efficient kernel. `pick_backend` times each once at start-up
on the shape of the largest warm-up size (24 heads × 128, bf16) and keeps the fastest that
runs; `KLEIN_ATTENTION=<name>` forces one.

The backend is set on the go_fast copy's own attention processors only: diffusers'
`set_attention_backend` would also change the process-wide default, and with it the
reference path, which keeps torch's default SDPA dispatch (`go_fast: false` stays exact).
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Optional

import torch
from torch import nn

log = logging.getLogger("klein_engine")

# In order of preference when timings tie; each needs what its name says.
CANDIDATES = ("_flash_3", "_native_cudnn", "_native_flash", "flash", "_native_efficient")
_NEEDS = {"_flash_3": "flash_attn_interface", "flash": "flash_attn"}


def available(name: str) -> bool:
    pkg = _NEEDS.get(name)
    return pkg is None or importlib.util.find_spec(pkg) is not None


def pick_backend(device: torch.device, heads: int, head_dim: int, tokens: int, batch: int = 1,
                 dtype: torch.dtype = torch.bfloat16, forced: str = "auto", repeats: int = 5) -> tuple[Optional[str], dict]:
    """(backend name or None, {name: ms or error}) for this device. None on CPU."""
    if device.type != "cuda":
        return None, {}
    from diffusers.models.attention_dispatch import AttentionBackendName, dispatch_attention_fn

    names = CANDIDATES if forced == "auto" else (forced,)
    g = torch.Generator(device).manual_seed(0)
    q, k, v = (torch.randn(batch, tokens, heads, head_dim, device=device, dtype=dtype, generator=g) for _ in range(3))
    timings: dict = {}
    for name in names:
        if not available(name):
            timings[name] = "not installed"
            continue
        try:
            backend = AttentionBackendName(name)
            ref = torch.nn.functional.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (q, k, v))).transpose(1, 2)
            out = dispatch_attention_fn(q, k, v, backend=backend)
            if not torch.allclose(out.float(), ref.float(), atol=2e-2, rtol=2e-2):
                timings[name] = "wrong result"
                continue
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(repeats):
                dispatch_attention_fn(q, k, v, backend=backend)
            end.record()
            torch.cuda.synchronize(device)
            timings[name] = start.elapsed_time(end) / repeats
        except Exception as e:  # a backend that cannot run here is simply not a candidate
            timings[name] = f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"
    ok = {n: t for n, t in timings.items() if isinstance(t, float)}
    if forced != "auto" and forced not in ok:
        raise RuntimeError(f"KLEIN_ATTENTION={forced} cannot run on this device: {timings.get(forced)}")
    best = min(ok, key=ok.get) if ok else None
    log.info("attention kernels at %d tokens: %s; using %s", tokens, timings, best)
    return best, timings


def set_backend(model: nn.Module, name: Optional[str]) -> int:
    """Sets `name` on each attention processor of `model` (instance attribute, not the
    process-wide default); returns how many were set."""
    if name is None:
        return 0
    from diffusers.models.attention_dispatch import AttentionBackendName

    backend = AttentionBackendName(name)
    n = 0
    for mod in model.modules():
        proc = getattr(mod, "processor", None)
        if proc is not None and hasattr(proc, "_attention_backend"):
            proc._attention_backend = backend
            n += 1
    return n
