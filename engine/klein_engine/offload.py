"""KLEIN_OFFLOAD=model: the text encoder visits the GPU only while it encodes.

For cards too small to hold everything: the text encoder (6.2 GB in bf16) lives on the CPU
and is moved to the GPU for a prompt the embedding cache does not hold, then moved back and
its memory returned, while the transformer and the VAE stay resident. A cache hit moves
nothing. Plain `.to()` moves (simpler than accelerate's offload hooks, and enough here); a move of the
4B model's encoder costs roughly 0.2–0.5 s each way over PCIe 4, paid only on cache misses.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Optional

import torch
from torch import nn

Move = Callable[[nn.Module, torch.device], None]


def _move(module: nn.Module, device: torch.device) -> None:
    module.to(device)


class Placement:
    """Where a module runs (`compute`) and, with mode "model", where it waits (`offload`)."""

    def __init__(self, module: nn.Module, compute: torch.device | str, mode: str = "none",
                 offload: torch.device | str = "cpu", move: Optional[Move] = None):
        if mode not in ("none", "model"):
            raise ValueError(f"offload mode must be 'none' or 'model', got {mode!r}")
        self.module = module
        self.compute = torch.device(compute)
        self.offload = torch.device(offload)
        self.mode = mode
        self._move = move or _move
        if mode == "model":
            self._move(module, self.offload)

    @contextlib.contextmanager
    def on_device(self) -> Iterator[torch.device]:
        """The module on its compute device for the duration; back to the offload device after,
        also when the body raises."""
        if self.mode == "none":
            yield self.compute
            return
        self._move(self.module, self.compute)
        try:
            yield self.compute
        finally:
            self._move(self.module, self.offload)
            if self.compute.type == "cuda":
                torch.cuda.empty_cache()
