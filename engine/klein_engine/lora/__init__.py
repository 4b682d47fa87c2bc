"""LoRA adapters at request time (issue 18, contract §7): a file converted to the
transformer's module names with diffusers' own converters (formats.py), checked against the
model (adapter.py), cached by content hash (store.py), and applied per batch as unfused
low-rank deltas on the untouched base weights (apply.py).

go_fast: on the fp8 copy the deltas run in the transformer's dtype (bf16 on a GPU) beside the
fp8 base matmuls, within 5e-3 relative error on tiny's final latents of the bf16 reference
path with the same adapter (tests/test_lora.py; 2.2e-3 to 2.6e-3 without adapters). Compiled
graphs (fast/compile.py) are not used for a batch with adapters: dynamo guards on a module's
forward hooks, so hooking the compiled module would recompile (minutes with inductor) for
every adapter set; such a batch runs the same fp8 module eagerly instead, which costs it the
compile speedup (not measured: no GPU in the session that wrote this), and leaves the graphs
compiled at warm-up untouched for requests without adapters."""

from .adapter import LoraAdapter, check_fits, linear_dims, place
from .apply import applied
from .formats import FORMATS, Factors, convert, detect_format
from .store import LoraStore, sha256_of

__all__ = ["FORMATS", "Factors", "LoraAdapter", "LoraStore", "applied", "check_fits", "convert", "detect_format", "linear_dims", "place",
           "sha256_of"]
