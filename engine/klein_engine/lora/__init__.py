"""LoRA adapters at request time (issue 18, contract §7): a file converted to the
transformer's module names with diffusers' own converters (formats.py), checked against the
model (adapter.py), cached by content hash (store.py), and applied per batch as unfused
low-rank deltas on the untouched base weights (apply.py)."""

from .adapter import LoraAdapter, check_fits, place
from .apply import applied
from .formats import FORMATS, Factors, convert, detect_format
from .store import LoraStore, sha256_of

__all__ = ["FORMATS", "Factors", "LoraAdapter", "LoraStore", "applied", "check_fits", "convert", "detect_format", "place",
           "sha256_of"]
