"""The headers of protocol v1's messages as typed dicts (protocol/PROTOCOL.md): what the
engine sends (ready, progress, result, error) and what the worker sends it (generate,
cancel, shutdown), with one builder per message the engine sends.

protocol/messages.schema.json defines every message once for both sides (written from the
worker's TypeBox definitions, src/worker/protocol-messages.ts). tests/test_protocol_schema.py
fails when a typed dict here and the schema name different fields, and the server tests check
every frame the real server sends against the schema.

Optional fields are declared on a `total=False` subclass, the form Python 3.10 reads.
"""

from __future__ import annotations

from typing import List, Literal, Optional, TypedDict

from .job import GenerateResult, Preview, Timings

# The protocol's version: every header carries it as "v", and `ready` as "protocol".
VERSION: Literal[1] = 1

# invalid_lora: a request's LoRA file cannot be applied to this model (the worker's 400 invalid_lora).
ErrorCode = Literal["invalid_input", "invalid_lora", "out_of_memory", "cancelled", "internal"]
ERROR_CODES: tuple[ErrorCode, ...] = ("invalid_input", "invalid_lora", "out_of_memory", "cancelled", "internal")


# ------------------------------------------------------------------ engine → worker
class LinearDims(TypedDict):
    inputs: List[int]
    outputs: List[int]


class _LoraCapabilities(TypedDict):
    max: int  # adapters per request
    formats: List[str]  # the file layouts the engine converts (lora/formats.py)


class LoraCapabilities(_LoraCapabilities, total=False):
    dims: LinearDims  # the transformer's linear in/out features, which a LoRA file must fit


class _Capabilities(TypedDict):
    samplers: List[str]
    max_reference_images: int
    go_fast: bool  # the fast path really changes something on this device
    preview: bool
    max_batch: int  # compatible go_fast jobs the engine runs together (1: one at a time)


class Capabilities(_Capabilities, total=False):
    loras: LoraCapabilities  # absent: the engine takes no adapters (the simulated one)


class Geometry(TypedDict):
    pixel_multiple: int
    min_side: int
    max_side: int


class FastFacts(TypedDict):
    """What the go_fast path uses on this device (fast/path.py), informational."""

    fp8: Optional[str]  # rowwise | tensorwise | emulated
    fp8_note: str
    act_scale: Optional[str]  # tensor | row
    attention: Optional[str]
    compile: Optional[str]  # the torch.compile mode
    warmup_sizes: List[str]  # "1024x1024", … compiled at start-up
    reference_path: bool  # False: `go_fast: false` is refused (KLEIN_GO_FAST_ONLY=1)
    offload: str  # none | model


class _EngineFacts(TypedDict):
    model: str
    variant: str  # distilled | base (the simulated engine: simulated)
    device: str
    dtype: str
    capabilities: Capabilities
    geometry: Geometry


class EngineFacts(_EngineFacts, total=False):
    """What an engine says about itself in `ready`; the simulated engine has no fast path."""

    fast: FastFacts


class ReadyMessage(EngineFacts):
    v: Literal[1]
    type: Literal["ready"]
    protocol: int
    engine_version: str


class PreviewSize(TypedDict):
    width: int
    height: int


class _ProgressMessage(TypedDict):
    v: Literal[1]
    type: Literal["progress"]
    id: str
    step: int  # 1-based sampler step
    total: int


class ProgressMessage(_ProgressMessage, total=False):
    preview: PreviewSize  # present when the payload holds a preview's RGB


class ResultMessage(TypedDict):
    v: Literal[1]
    type: Literal["result"]
    id: str
    width: int
    height: int
    seed: int
    timings: Timings


class ErrorMessage(TypedDict):
    v: Literal[1]
    type: Literal["error"]
    id: Optional[str]  # None: not tied to a job (the model could not be loaded)
    code: ErrorCode
    message: str


def ready(facts: EngineFacts, engine_version: str) -> ReadyMessage:
    message: ReadyMessage = {"v": VERSION, "type": "ready", "protocol": VERSION, "engine_version": engine_version, **facts}
    return message


def progress(job_id: str, step: int, total: int, preview: Optional[Preview]) -> ProgressMessage:
    message: ProgressMessage = {"v": VERSION, "type": "progress", "id": job_id, "step": step, "total": total}
    if preview is not None:
        message["preview"] = {"width": preview.width, "height": preview.height}
    return message


def result(job_id: str, res: GenerateResult) -> ResultMessage:
    return {"v": VERSION, "type": "result", "id": job_id, "width": res.width, "height": res.height, "seed": res.seed,
            "timings": res.timings}


def error(job_id: Optional[str], code: ErrorCode, message: str) -> ErrorMessage:
    return {"v": VERSION, "type": "error", "id": job_id, "code": code, "message": message}


# ------------------------------------------------------------------ worker → engine
class GenerateParams(TypedDict):
    prompt: str
    negative_prompt: str
    seed: int  # 0 … 2^53 − 1, already resolved
    cfg: float
    sampler: str
    steps: int
    width: int
    height: int
    go_fast: bool
    preview: bool  # send preview frames with progress


class ImageSize(TypedDict):
    width: int
    height: int


class LoraRef(TypedDict):
    key: str  # sha256 hex of the file, 64 characters
    path: str  # absolute local path of the .safetensors file the worker downloaded
    scale: float  # -4 … 4


class BatchMember(TypedDict):
    id: str  # the batch's id, chosen by the worker
    size: int  # how many generate frames, sent back to back, make the batch


class _GenerateMessage(TypedDict):
    v: Literal[1]
    type: Literal["generate"]
    id: str
    params: GenerateParams
    images: List[ImageSize]  # the reference images in the payload, in order


class GenerateMessage(_GenerateMessage, total=False):
    batch: BatchMember  # the job is one of a batch the worker formed (server.py gathers it)
    loras: List[LoraRef]  # 0 to 3 adapters; absent or empty: none


class CancelMessage(TypedDict):
    v: Literal[1]
    type: Literal["cancel"]
    id: str


class ShutdownMessage(TypedDict):
    v: Literal[1]
    type: Literal["shutdown"]


# Every message by its `type`, for the schema tests.
MESSAGES = {
    "ready": ReadyMessage,
    "progress": ProgressMessage,
    "result": ResultMessage,
    "error": ErrorMessage,
    "generate": GenerateMessage,
    "cancel": CancelMessage,
    "shutdown": ShutdownMessage,
}
