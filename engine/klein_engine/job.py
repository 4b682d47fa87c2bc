"""Typed jobs and results: what the protocol server hands an engine and gets back, and the
interface every engine offers the server.

The server parses frames into these types at the edge; the pipeline never sees JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional, Protocol, Sequence, Tuple, TypedDict

if TYPE_CHECKING:
    from .batch import BatchJob
    from .messages import EngineFacts


@dataclass(frozen=True)
class ReferenceImage:
    """One reference image, already resized by the worker: packed 8-bit RGB, row-major."""

    width: int
    height: int
    rgb: bytes


@dataclass(frozen=True)
class LoraSpec:
    """One adapter of a request (contract §7): the file the worker downloaded, named by the
    sha256 of its bytes, and the request's scale for it."""

    key: str  # sha256 hex of the file, 64 characters
    path: str  # absolute local path of the .safetensors file
    scale: float = 1.0


@dataclass(frozen=True)
class GenerateRequest:
    prompt: str
    negative_prompt: str
    seed: int
    cfg: float
    sampler: str
    steps: int
    width: int
    height: int
    go_fast: bool = True
    preview: bool = False
    images: Tuple[ReferenceImage, ...] = ()
    loras: Tuple[LoraSpec, ...] = ()


@dataclass(frozen=True)
class Preview:
    """A small RGB preview of the current estimate, sent with a progress frame."""

    width: int
    height: int
    rgb: bytes


class Timings(TypedDict):
    """Milliseconds of each stage of one request."""

    text_ms: float
    denoise_ms: float
    decode_ms: float
    total_ms: float


@dataclass
class GenerateResult:
    width: int
    height: int
    seed: int
    rgb: bytes
    timings: Timings


# Called after every sampler step with (step, total, preview or None).
OnStep = Callable[[int, int, Optional[Preview]], None]
# Polled before every sampler step; True means stop with `Cancelled`.
ShouldStop = Callable[[], bool]
# Called as each job of a batch finishes, with its index and its result or error.
OnDone = Callable[[int, object], None]


class Engine(Protocol):
    """What the protocol server drives: KleinEngine, the simulated engine, or a wrapper of
    either (testing/faults.py)."""

    # Jobs the server may hand generate_batch at once. With 1 it never calls generate_batch,
    # which an engine that cannot batch (the simulated one) therefore need not have.
    max_batch: int

    def facts(self) -> EngineFacts: ...

    def warm_up(self) -> float:
        """Compiles what the engine compiles before `ready`; returns the seconds it took."""

    def generate(self, req: GenerateRequest, on_step: OnStep, should_stop: ShouldStop) -> GenerateResult: ...

    def generate_batch(self, jobs: Sequence[BatchJob], on_done: Optional[OnDone] = None) -> list: ...


class EngineError(Exception):
    """Base of errors that map to a protocol error code."""

    code = "internal"


class InvalidInput(EngineError):
    code = "invalid_input"


class InvalidLora(InvalidInput):
    """A LoRA file that cannot be applied to this model; the message says why (a 400
    `invalid_lora`, contract §7)."""

    code = "invalid_lora"


class Cancelled(EngineError):
    code = "cancelled"


class LoadError(EngineError):
    """The model could not be loaded; the message names the fix."""

    code = "internal"
