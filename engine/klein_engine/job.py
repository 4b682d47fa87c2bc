"""Typed jobs and results: what the protocol server hands the pipeline and gets back.

The server parses frames into these types at the edge; the pipeline never sees JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Tuple

SAMPLERS = ("euler", "res_2s")


@dataclass(frozen=True)
class ReferenceImage:
    """One reference image, already resized by the worker: packed 8-bit RGB, row-major."""

    width: int
    height: int
    rgb: bytes


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


@dataclass(frozen=True)
class Preview:
    """A small RGB preview of the current estimate, sent with a progress frame."""

    width: int
    height: int
    rgb: bytes


@dataclass
class GenerateResult:
    width: int
    height: int
    seed: int
    rgb: bytes
    # Milliseconds: text_ms, denoise_ms, decode_ms, total_ms.
    timings: dict = field(default_factory=dict)


# Called after every sampler step with (step, total, preview or None).
OnStep = Callable[[int, int, Optional[Preview]], None]
# Polled before every sampler step; True means stop with `Cancelled`.
ShouldStop = Callable[[], bool]


class EngineError(Exception):
    """Base of errors that map to a protocol error code."""

    code = "internal"


class InvalidInput(EngineError):
    code = "invalid_input"


class Cancelled(EngineError):
    code = "cancelled"


class LoadError(EngineError):
    """The model could not be loaded; the message names the fix."""

    code = "internal"
