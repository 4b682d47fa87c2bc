"""Loaded adapters kept in memory by key (the file's sha256), least recently used first out.

The worker downloads a LoRA, names it by the sha256 of its bytes and sends that key with the
local path; the file is read, hashed (a key that does not match the bytes is refused, so the
cache cannot hand one file's adapter to another's key) and converted on a cache miss only.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from typing import Callable

import torch
from safetensors import SafetensorError, safe_open

from ..job import InvalidLora
from .adapter import LoraAdapter
from .formats import convert

DEFAULT_CAPACITY = 8


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_safetensors(path: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors (on the CPU) and header metadata of a .safetensors file; InvalidLora otherwise."""
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as e:
        raise InvalidLora(f"not a readable .safetensors file: {str(e).splitlines()[0][:200]}") from None


class LoraStore:
    def __init__(self, place: Callable[[str, str, dict], LoraAdapter], capacity: int = DEFAULT_CAPACITY):
        """`place(key, format, layers)` checks converted factors against the model and puts them
        on its device (adapter.place, bound to the engine's transformer)."""
        if capacity < 1:
            raise ValueError(f"the LoRA cache holds at least one adapter, got {capacity}")
        self.place = place
        self.capacity = capacity
        self.adapters: "OrderedDict[str, LoraAdapter]" = OrderedDict()
        self.lock = threading.Lock()
        self.loads = 0  # cache misses, for tests and logs

    def get(self, key: str, path: str) -> LoraAdapter:
        with self.lock:
            if key in self.adapters:
                self.adapters.move_to_end(key)
                return self.adapters[key]
        if not os.path.isabs(path) or not os.path.isfile(path):
            raise InvalidLora(f"{path}: no such file on the engine's machine")
        actual = sha256_of(path)
        if actual != key:
            raise InvalidLora(f"{path}: its sha256 is {actual}, not the key {key}")
        state_dict, metadata = read_safetensors(path)
        fmt, layers = convert(state_dict, metadata)
        adapter = self.place(key, fmt, layers)
        with self.lock:
            self.loads += 1
            self.adapters[key] = adapter
            self.adapters.move_to_end(key)
            while len(self.adapters) > self.capacity:
                self.adapters.popitem(last=False)
        return adapter

    def __contains__(self, key: str) -> bool:
        return key in self.adapters
