"""An adapter checked against the transformer it will be applied to, its factors on the
transformer's device and in its dtype."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
from torch import nn

from ..fast.fp8 import Fp8Linear
from ..job import InvalidLora
from .formats import Factors


@dataclass(frozen=True)
class LoraAdapter:
    key: str  # the file's sha256
    format: str
    layers: Mapping[str, Factors]  # transformer module name → factors

    @property
    def nbytes(self) -> int:
        seen = {}
        for f in self.layers.values():
            for t in (f.A, f.B):
                seen[id(t)] = t.numel() * t.element_size()
        return sum(seen.values())


def check_fits(layers: Mapping[str, Factors], transformer: nn.Module) -> None:
    """Every target is a linear layer of `transformer` (nn.Linear, or its fp8 stand-in on the
    go_fast copy) and the factors fit it: lora_A (rank, in_features), lora_B (out_features,
    rank). InvalidLora names the first module that does not, in the file's order, and why."""
    modules = dict(transformer.named_modules())
    for name, f in layers.items():
        mod = modules.get(name)
        where = f"transformer.{name}"
        if mod is None:
            raise InvalidLora(f"{where}: this model has no such layer (a LoRA for another model?)")
        if not isinstance(mod, (nn.Linear, Fp8Linear)):
            raise InvalidLora(f"{where}: is a {type(mod).__name__}, not a linear layer")
        rank, a_in = f.A.shape
        b_out, b_rank = f.B.shape
        if a_in != mod.in_features:
            raise InvalidLora(f"{where}: lora_A is {rank}×{a_in} but the layer takes {mod.in_features} inputs")
        if b_out != mod.out_features:
            raise InvalidLora(f"{where}: lora_B is {b_out}×{b_rank} but the layer gives {mod.out_features} outputs")
        if b_rank != rank:
            raise InvalidLora(f"{where}: lora_A has rank {rank} but lora_B has rank {b_rank}")


def place(key: str, fmt: str, layers: Mapping[str, Factors], transformer: nn.Module, device: torch.device,
          dtype: torch.dtype) -> LoraAdapter:
    """Checks `layers` against `transformer`, then moves them to `device` in `dtype` (a factor
    shared by several modules, as kohya's fused qkv lora_down is, stays one tensor)."""
    check_fits(layers, transformer)
    moved: dict[int, torch.Tensor] = {}

    def to(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in moved:
            moved[id(t)] = t.detach().to(device=device, dtype=dtype).contiguous()
        return moved[id(t)]

    return LoraAdapter(key, fmt, {name: Factors(to(f.A), to(f.B), f.scaling) for name, f in layers.items()})


def linear_dims(transformer) -> dict:
    """The in and out features of the transformer's linear layers (fp8 ones included: they
    keep `in_features`/`out_features`), sorted: what the gateway checks a LoRA file's shapes
    against before anything is charged (ready's capabilities.loras.dims)."""
    inputs, outputs = set(), set()
    for m in transformer.modules():
        i, o = getattr(m, "in_features", None), getattr(m, "out_features", None)
        if isinstance(i, int) and isinstance(o, int):
            inputs.add(i)
            outputs.add(o)
    return {"inputs": sorted(inputs), "outputs": sorted(outputs)}
