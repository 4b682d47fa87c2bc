"""The engine's start-up options, read from the environment once and validated.

    KLEIN_GO_FAST_ONLY=1      keep only the go_fast (fp8) transformer resident: the bf16
                              reference weights are dropped after quantisation, so
                              transformer + text encoder fit in 12 GiB (a 16 GB card);
                              `go_fast: false` requests are then refused (invalid_input)
    KLEIN_FP8=auto|off|emulate
                              fp8 weights and matmuls for go_fast: `auto` where the GPU
                              has fp8 tensor cores (compute capability >= 8.9), `emulate`
                              runs the same quantisation with float32 matmuls on any
                              device (tests, CPU experiments; never faster)
    KLEIN_FP8_ACT_SCALE=tensor|row
                              activation scale: one per tensor (default) or one per token
    KLEIN_COMPILE=auto|on|off torch.compile the go_fast transformer and VAE decoder;
                              `auto` is on for CUDA, off on CPU (minutes to compile there)
    KLEIN_COMPILE_MODE        torch.compile mode: `default` (cuBLAS/cuDNN for matmuls and
                              convolutions, inductor kernels for the rest; minutes to
                              compile cold), `reduce-overhead` (the same plus CUDA graphs:
                              pays where launch overhead shows, small sizes), `max-autotune*`
                              (also searches GEMM kernels; much longer cold starts)
    KLEIN_WARMUP_SIZES        sizes compiled at start-up, e.g. `1024x1024,512x512`
                              (default 1024x1024); other sizes run the eager fp8 path
    KLEIN_COMPILE_CACHE_DIR   persistent inductor/triton cache (default ~/.cache/klein/compile)
    KLEIN_ATTENTION=auto|<diffusers backend>
                              attention kernel of the go_fast path; `auto` times the
                              available ones once at start-up and keeps the fastest
    KLEIN_MAX_BATCH           compatible queued go_fast requests run as one batch (default 1)
    KLEIN_OFFLOAD=none|model  `model`: the text encoder lives on the CPU and visits the GPU
                              only to encode a prompt the cache does not hold
    KLEIN_LORA_CACHE_ADAPTERS loaded LoRA adapters kept in memory, least recently used
                              out first (default 8)

A bad value is a LoadError naming the variable, so the engine fails at start, not later.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Tuple

from .job import LoadError

FP8_MODES = ("auto", "off", "emulate")
ACT_SCALES = ("tensor", "row")
COMPILE_SWITCH = ("auto", "on", "off")
OFFLOAD_MODES = ("none", "model")
DEFAULT_COMPILE_MODE = "default"
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
DEFAULT_WARMUP_SIZES: Tuple[Tuple[int, int], ...] = ((1024, 1024),)
MAX_BATCH_LIMIT = 16
_SIZE = re.compile(r"^\s*(\d{2,5})\s*[xX×]\s*(\d{2,5})\s*$")


def default_compile_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "klein" / "compile"


@dataclass(frozen=True)
class EngineOptions:
    go_fast_only: bool = False
    fp8: str = "auto"
    fp8_act_scale: str = "tensor"
    compile: str = "auto"
    compile_mode: str = DEFAULT_COMPILE_MODE
    warmup_sizes: Tuple[Tuple[int, int], ...] = DEFAULT_WARMUP_SIZES
    compile_cache_dir: Path = field(default_factory=default_compile_cache)
    attention: str = "auto"
    max_batch: int = 1
    offload: str = "none"
    lora_cache_adapters: int = 8
    # Not from the environment: tests pass dynamo's "eager" backend (graph capture without
    # code generation, seconds on a CPU instead of minutes of C++ compilation).
    compile_backend: str = "inductor"

    def __post_init__(self) -> None:
        _one_of("KLEIN_FP8", self.fp8, FP8_MODES)
        _one_of("KLEIN_FP8_ACT_SCALE", self.fp8_act_scale, ACT_SCALES)
        _one_of("KLEIN_COMPILE", self.compile, COMPILE_SWITCH)
        _one_of("KLEIN_COMPILE_MODE", self.compile_mode, COMPILE_MODES)
        _one_of("KLEIN_OFFLOAD", self.offload, OFFLOAD_MODES)
        if not isinstance(self.max_batch, int) or not 1 <= self.max_batch <= MAX_BATCH_LIMIT:
            raise LoadError(f"KLEIN_MAX_BATCH must be an integer from 1 to {MAX_BATCH_LIMIT}, got {self.max_batch!r}")
        if not isinstance(self.lora_cache_adapters, int) or self.lora_cache_adapters < 1:
            raise LoadError(f"KLEIN_LORA_CACHE_ADAPTERS must be an integer of at least 1, got {self.lora_cache_adapters!r}")
        if self.go_fast_only and self.fp8 == "off":
            raise LoadError("KLEIN_GO_FAST_ONLY=1 needs fp8 (it keeps only the fp8 transformer): unset KLEIN_FP8=off")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "EngineOptions":
        source = os.environ if env is None else env

        def get(name: str, default: str) -> str:
            value = source.get(name, "")
            return value.strip() if value.strip() else default

        cache = get("KLEIN_COMPILE_CACHE_DIR", "")
        return cls(
            go_fast_only=_flag("KLEIN_GO_FAST_ONLY", get("KLEIN_GO_FAST_ONLY", "0")),
            fp8=get("KLEIN_FP8", "auto").lower(),
            fp8_act_scale=get("KLEIN_FP8_ACT_SCALE", "tensor").lower(),
            compile=get("KLEIN_COMPILE", "auto").lower(),
            compile_mode=get("KLEIN_COMPILE_MODE", DEFAULT_COMPILE_MODE),
            warmup_sizes=parse_sizes(get("KLEIN_WARMUP_SIZES", "1024x1024")),
            compile_cache_dir=Path(cache).expanduser() if cache else default_compile_cache(),
            attention=get("KLEIN_ATTENTION", "auto"),
            max_batch=_int("KLEIN_MAX_BATCH", get("KLEIN_MAX_BATCH", "1")),
            offload=get("KLEIN_OFFLOAD", "none").lower(),
            lora_cache_adapters=_int("KLEIN_LORA_CACHE_ADAPTERS", get("KLEIN_LORA_CACHE_ADAPTERS", "8")),
        )


def parse_sizes(text: str) -> Tuple[Tuple[int, int], ...]:
    """`1024x1024,512x512` → ((1024, 1024), (512, 512)); `none` or empty → ()."""
    if text.strip().lower() in ("", "none"):
        return ()
    sizes = []
    for part in text.split(","):
        m = _SIZE.match(part)
        if not m:
            raise LoadError(f"KLEIN_WARMUP_SIZES: {part.strip()!r} is not WIDTHxHEIGHT (e.g. 1024x1024,512x512)")
        sizes.append((int(m.group(1)), int(m.group(2))))
    return tuple(dict.fromkeys(sizes))


def _one_of(name: str, value: str, allowed) -> None:
    if value not in allowed:
        raise LoadError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")


def _flag(name: str, value: str) -> bool:
    v = value.lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise LoadError(f"{name} must be 1 or 0, got {value!r}")


def _int(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise LoadError(f"{name} must be an integer, got {value!r}") from None
