"""Adapters applied to one forward pass without touching the base weights.

While `applied(...)` is open, each targeted linear layer has a forward hook that adds the
unfused low-rank deltas of the batch's adapters to the layer's own output:

    y = base(x) + Σ_i  B_i(A_i(x)) · (alpha_i / rank_i) · scale_i

which is PEFT's LoRA Linear.forward (peft/tuners/lora/layer.py: `result + lora_B(lora_A(x)) *
scaling`, `scaling = lora_alpha / r` times set_adapters' weight), adapter after adapter in
the request's order. On the go_fast copy the base is the fp8 matmul and the low-rank products
run in the transformer's dtype (bf16 on a GPU) beside it.

Outside `applied` no hook exists: a request without adapters runs exactly the modules it ran
before any adapter was used, so its bytes cannot change (tests/test_lora.py).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .adapter import LoraAdapter, check_fits


def _hook(terms: list[tuple[torch.Tensor, torch.Tensor, float]]):
    def add_deltas(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        x = args[0]
        for A, B, factor in terms:
            output = output + F.linear(F.linear(x.to(A.dtype), A), B) * factor
        return output

    return add_deltas


@contextlib.contextmanager
def applied(transformer: nn.Module, adapters: Sequence[tuple[LoraAdapter, float]]) -> Iterator[None]:
    """`transformer`'s targeted layers add `adapters` (each with its request scale) to their
    outputs until the block ends; the hooks are removed however it ends."""
    per_module: dict[str, list] = {}
    for adapter, scale in adapters:
        check_fits(adapter.layers, transformer)
        for name, f in adapter.layers.items():
            per_module.setdefault(name, []).append((f.A, f.B, f.scaling * scale))
    handles = []
    try:
        for name, terms in per_module.items():
            handles.append(transformer.get_submodule(name).register_forward_hook(_hook(terms)))
        yield
    finally:
        for h in handles:
            h.remove()
