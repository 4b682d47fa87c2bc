"""The go_fast variant of the transformer and the VAE decoder, beside the reference ones.

What go_fast changes, where the device supports it:
1. fp8 (e4m3) weights and matmuls in the transformer's blocks (fp8.py), on GPUs with fp8
   tensor cores (compute capability >= 8.9);
2. the fastest attention kernel (attention.py), set on the go_fast copy only;
3. torch.compile with static shapes of the transformer and the VAE decoder (compile.py),
   compiled at start-up for KLEIN_WARMUP_SIZES, with a persistent cache.
Batching of queued requests (KLEIN_MAX_BATCH) also applies to go_fast requests only, since
a batch's GEMM shapes change the last bits of each image (batch.py).
Where none of these applies (a CPU), the go_fast path *is* the reference path.

Residency. By default both transformers are resident: the bf16 reference (7.75 GB for 4B)
and an fp8 copy that shares every weight it does not quantise (+3.7 GB); `go_fast: false`
runs the untouched bf16 module, exactly as before. With KLEIN_GO_FAST_ONLY=1 the bf16
weights are quantised layer by layer on their way from the CPU to the GPU and never held
there whole, so transformer (4.1 GB) + text encoder (6.2 GB bf16, 27 of 36 layers) fit in
12 GiB on a 16 GB card; `go_fast: false` is then refused, because the exact reference path
needs the bf16 weights. The text encoder stays bf16 in both modes: it is shared by both
paths, so an fp8 copy would need its own 2.7 GB, and 12 GiB is met without it.

Not done, and why:
- Precomputed RoPE per (size, references): the rotary tables are a function of the
  position ids that the forward computes itself (`pos_embed(ids)`); under torch.compile
  that is one fused elementwise kernel over (tokens × 128) values, microseconds against a
  ~40 ms forward at 1024², and caching it outside the graph would need a patched forward.
- Per-σ modulation: the modulation layers read one row per image (M = batch), ~0.3 GB of
  bf16 weights, about 0.1 ms of bandwidth per forward on an H100 (0.2 %); a cache keyed by
  σ would have to sit inside diffusers' forward (or break the compiled graph at every
  call) for that.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import logging
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

import torch
from torch import nn

from ..job import InvalidInput, LoadError
from ..options import EngineOptions
from ..text import MAX_SEQUENCE_LENGTH
from .attention import pick_backend, set_backend
from .compile import StaticCompiled, use_cache_dir
from .fp8 import fp8_support, swap_linears

log = logging.getLogger("klein_engine")


def shared_copy(model: nn.Module) -> nn.Module:
    """A structural copy of `model` whose parameters and buffers are the original's own
    tensors (no memory): only what is later replaced in the copy (its linear layers) differs."""
    memo = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    return copy.deepcopy(model, memo)


@dataclass
class FastPath:
    reference: Optional[nn.Module]  # the bf16 transformer; None with KLEIN_GO_FAST_ONLY=1
    transformer: Callable  # the go_fast transformer (module or StaticCompiled)
    decode_reference: Callable
    decode: Callable  # the go_fast VAE decode
    active: bool  # go_fast really changes something on this device
    fp8: Optional[str] = None  # rowwise | tensorwise | emulated
    fp8_note: str = ""
    act_scale: Optional[str] = None
    attention: Optional[str] = None
    attention_timings: dict = field(default_factory=dict)
    compile_mode: Optional[str] = None
    swapped: list = field(default_factory=list)

    # ---------------------------------------------------------------- build
    @classmethod
    def build(cls, transformer: nn.Module, vae: nn.Module, device: torch.device, options: EngineOptions,
              warm_tokens: int = 4096 + MAX_SEQUENCE_LENGTH) -> "FastPath":
        """`transformer` is on `device`, or on the CPU when options.go_fast_only (it is then
        quantised onto `device` layer by layer and becomes the only transformer)."""
        device = torch.device(device)

        def decode_reference(z: torch.Tensor) -> torch.Tensor:
            return vae.decode(z, return_dict=False)[0]

        # 1. fp8: forced off, emulated (tests), or what this GPU supports.
        if options.fp8 == "off":
            kernel, note = None, "off (KLEIN_FP8=off)"
        elif options.fp8 == "emulate":
            kernel, note = "emulated", "emulated with float32 matmuls (KLEIN_FP8=emulate: same numerics, never faster)"
        else:
            support = fp8_support(device)
            kernel, note = support.kernel, support.reason
        if options.go_fast_only and kernel is None:
            raise LoadError(f"KLEIN_GO_FAST_ONLY=1 keeps only the fp8 transformer, but fp8 is unavailable: {note}")

        # 2. Attention kernel and 3. compilation: CUDA only (CPU compiles take minutes).
        compile_on = options.compile == "on" or (options.compile == "auto" and device.type == "cuda")
        attention, timings = None, {}
        if device.type == "cuda":
            cfg = transformer.config
            attention, timings = pick_backend(device, cfg.num_attention_heads, cfg.attention_head_dim, warm_tokens,
                                              forced=options.attention)

        active = kernel is not None or compile_on or attention is not None
        if not active:
            return cls(reference=transformer, transformer=transformer, decode_reference=decode_reference,
                       decode=decode_reference, active=False, fp8_note=note)

        if options.go_fast_only:
            fast, reference = transformer, None
        else:
            fast, reference = shared_copy(transformer), transformer
        # The quantised weights are made on `device` (go_fast_only: from CPU weights, one layer
        # at a time); the source tensors are never moved, since in a shared copy they are the
        # reference's own.
        swapped = swap_linears(fast, kernel, options.fp8_act_scale, device=device) if kernel else []
        if options.go_fast_only:
            fast.to(device)  # the layers that stay in bf16, norms, embedders
            if device.type == "cuda":
                torch.cuda.empty_cache()
        if set_backend(fast, attention) and reference is not None:
            ref_procs = {id(getattr(m, "processor", None)) for m in reference.modules()} - {id(None)}
            assert not ref_procs & {id(getattr(m, "processor", None)) for m in fast.modules()}, "processors must not be shared"
        log.info("go_fast: fp8 %s (%d linear layers), attention %s, compile %s", kernel or "off", len(swapped), attention,
                 options.compile_mode if compile_on else "off")

        fast_call: Callable = fast
        decode = decode_reference
        if compile_on:
            use_cache_dir(options.compile_cache_dir)
            fast_call = StaticCompiled(fast, "transformer", options.compile_mode, options.compile_backend)
            decode = StaticCompiled(decode_reference, "vae decode", options.compile_mode, options.compile_backend)
        return cls(reference=reference, transformer=fast_call, decode_reference=decode_reference, decode=decode,
                   active=True, fp8=kernel, fp8_note=note, act_scale=options.fp8_act_scale if kernel else None,
                   attention=attention, attention_timings=timings, compile_mode=options.compile_mode if compile_on else None,
                   swapped=swapped)

    # ---------------------------------------------------------------- use
    def transformer_for(self, go_fast: bool) -> Callable:
        if go_fast:
            return self.transformer
        if self.reference is None:
            raise InvalidInput(
                "go_fast: false needs the bf16 reference weights, which this engine does not hold "
                "(started with KLEIN_GO_FAST_ONLY=1 to fit a small GPU): send go_fast: true, or serve from an engine without it"
            )
        return self.reference

    def decoder_for(self, go_fast: bool) -> Callable:
        return self.decode if go_fast else self.decode_reference

    @property
    def compiled(self) -> list[StaticCompiled]:
        return [f for f in (self.transformer, self.decode) if isinstance(f, StaticCompiled)]

    @contextlib.contextmanager
    def compiling(self) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for f in self.compiled:
                stack.enter_context(f.compiling())
            yield

    def facts(self) -> dict:
        return {
            "fp8": self.fp8,
            "fp8_note": self.fp8_note,
            "act_scale": self.act_scale,
            "attention": self.attention,
            "compile": self.compile_mode,
            "reference_path": self.reference is not None,
        }
