"""Worker ↔ engine frames, version 1 (protocol/PROTOCOL.md).

    u32 BE header length | u32 BE payload length | compact UTF-8 JSON header | payload

Parsing turns frames into typed requests at the edge; nothing past here sees raw JSON.
What the engine sends is typed in messages.py. `python -m klein_engine.protocol
write-fixtures DIR` writes the shared test fixtures.
"""

from __future__ import annotations

import json
import struct
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Mapping, Optional

from .job import GenerateRequest, LoraSpec, ReferenceImage
from .messages import ERROR_CODES, VERSION

MAX_HEADER = 1 << 20
MAX_PAYLOAD = 512 << 20
_LEN = struct.Struct(">II")


class ProtocolError(Exception):
    """The stream is broken: a bad length, a header that is not a v1 JSON object."""


class BadMessage(Exception):
    """A well-framed message whose fields are wrong; answered with invalid_input."""

    def __init__(self, message: str, job_id: Optional[str] = None):
        super().__init__(message)
        self.job_id = job_id


@dataclass
class Frame:
    header: dict
    payload: bytes = b""


def encode_frame(header: Mapping[str, Any], payload: bytes = b"") -> bytes:
    """One frame; `v` is added when the header lacks it."""
    raw = json.dumps({"v": VERSION, **header}, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    if len(raw) > MAX_HEADER or len(payload) > MAX_PAYLOAD:
        raise ProtocolError("frame too large")
    return _LEN.pack(len(raw), len(payload)) + raw + payload


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    chunks = []
    left = n
    while left > 0:
        b = stream.read(left)
        if not b:
            raise ProtocolError(f"stream ended inside a frame ({n - left} of {n} bytes)")
        chunks.append(b)
        left -= len(b)
    return b"".join(chunks)


def read_frame(stream: BinaryIO) -> Optional[Frame]:
    """The next frame, or None at a clean end of stream (between frames)."""
    first = stream.read(_LEN.size)
    if not first:
        return None
    if len(first) < _LEN.size:
        first += _read_exact(stream, _LEN.size - len(first))
    hlen, plen = _LEN.unpack(first)
    if hlen < 2 or hlen > MAX_HEADER:
        raise ProtocolError(f"bad header length {hlen}")
    if plen > MAX_PAYLOAD:
        raise ProtocolError(f"bad payload length {plen}")
    raw = _read_exact(stream, hlen)
    payload = _read_exact(stream, plen) if plen else b""
    return Frame(decode_header(raw), payload)


def decode_header(raw: bytes) -> dict:
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProtocolError(f"header is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise ProtocolError("header is not a JSON object")
    if header.get("v") != VERSION:
        raise ProtocolError(f"unsupported protocol version {header.get('v')!r}")
    if not isinstance(header.get("type"), str):
        raise ProtocolError("header has no type")
    return header


class FrameWriter:
    """Writes whole frames from any thread; flushes each."""

    def __init__(self, stream: BinaryIO):
        self.stream = stream
        self.lock = threading.Lock()

    def send(self, header: Mapping[str, Any], payload: bytes = b"") -> None:
        data = encode_frame(header, payload)
        with self.lock:
            self.stream.write(data)
            self.stream.flush()


# ------------------------------------------------------------- typed parsing
def _field(params: dict, name: str, kind, job_id, *, optional=False, default=None):
    if name not in params:
        if optional:
            return default
        raise BadMessage(f"params.{name} is missing", job_id)
    v = params[name]
    ok = isinstance(v, kind) and not (kind in (int, (int, float)) and isinstance(v, bool))
    if not ok:
        raise BadMessage(f"params.{name} has the wrong type", job_id)
    return v


def _positive_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def parse_loras(header: dict, job_id: str) -> tuple[LoraSpec, ...]:
    """`loras` (messages.LoraRef): types only; the count, the scale's range and the file itself
    are the engine's to check (KleinEngine.check_inputs, lora/)."""
    raw = header.get("loras", [])
    if not isinstance(raw, list):
        raise BadMessage("loras must be a list", job_id)
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise BadMessage(f"loras[{i}] must be an object", job_id)
        key, path, scale = item.get("key"), item.get("path"), item.get("scale")
        if not isinstance(key, str) or not isinstance(path, str) or not path:
            raise BadMessage(f"loras[{i}] needs a string key and a non-empty string path", job_id)
        if not isinstance(scale, (int, float)) or isinstance(scale, bool):
            raise BadMessage(f"loras[{i}].scale must be a number", job_id)
        out.append(LoraSpec(key=key, path=path, scale=float(scale)))
    return tuple(out)


def parse_generate(frame: Frame) -> tuple[str, GenerateRequest]:
    """A `generate` frame (messages.GenerateMessage) → its id and typed request; BadMessage
    names the first field that is wrong. Optional here, though the worker always sends them:
    negative_prompt (""), go_fast (true), preview (false), images ([]); and loras ([])."""
    header = frame.header
    job_id = header.get("id")
    if not isinstance(job_id, str) or not job_id:
        raise BadMessage("generate needs a string id", None)
    params = header.get("params")
    if not isinstance(params, dict):
        raise BadMessage("generate needs params", job_id)
    images_meta = header.get("images", [])
    if not isinstance(images_meta, list):
        raise BadMessage("images must be a list", job_id)
    images = []
    offset = 0
    for i, size in enumerate(images_meta):
        if not isinstance(size, dict) or not all(_positive_int(size.get(k)) for k in ("width", "height")):
            raise BadMessage(f"images[{i}] needs positive integer width and height", job_id)
        n = size["width"] * size["height"] * 3
        if offset + n > len(frame.payload):
            raise BadMessage(f"payload holds {len(frame.payload)} bytes, images need more", job_id)
        images.append(ReferenceImage(size["width"], size["height"], frame.payload[offset : offset + n]))
        offset += n
    if offset != len(frame.payload):
        raise BadMessage(f"payload holds {len(frame.payload)} bytes, images need {offset}", job_id)
    seed = _field(params, "seed", int, job_id)
    if seed < 0 or seed > 2**53 - 1:
        raise BadMessage("params.seed must be from 0 to 2^53-1", job_id)
    req = GenerateRequest(
        prompt=_field(params, "prompt", str, job_id),
        negative_prompt=_field(params, "negative_prompt", str, job_id, optional=True, default=""),
        seed=seed,
        cfg=float(_field(params, "cfg", (int, float), job_id)),
        sampler=_field(params, "sampler", str, job_id),
        steps=_field(params, "steps", int, job_id),
        width=_field(params, "width", int, job_id),
        height=_field(params, "height", int, job_id),
        go_fast=_field(params, "go_fast", bool, job_id, optional=True, default=True),
        preview=_field(params, "preview", bool, job_id, optional=True, default=False),
        images=tuple(images),
        loras=parse_loras(header, job_id),
    )
    return job_id, req


# ------------------------------------------------------------------ fixtures
def _fixtures() -> dict:
    rgb2x2 = bytes([255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255])
    params = {
        "prompt": "a lighthouse at dusk",
        "negative_prompt": "low quality, blurry, less details",
        "seed": 3425234,
        "cfg": 5,
        "sampler": "euler",
        "steps": 20,
        "width": 1024,
        "height": 1024,
        "go_fast": True,
        "preview": False,
    }
    fixtures = {
        "ready": ({"v": 1, "type": "ready", "protocol": 1, "engine_version": "0.1.0", "model": "tiny", "variant": "distilled", "device": "cpu", "dtype": "float32",
                   "capabilities": {"samplers": ["euler", "res_2s"], "max_reference_images": 4, "go_fast": False, "preview": True, "max_batch": 1,
                                    "loras": {"max": 3, "formats": ["diffusers", "peft", "kohya", "ai-toolkit", "comfyui"],
                                              "dims": {"inputs": [16, 48, 128], "outputs": [16, 128, 384]}}},
                   "geometry": {"pixel_multiple": 16, "min_side": 64, "max_side": 2048},
                   "fast": {"fp8": None, "fp8_note": "fp8 matmuls need a CUDA GPU (device is cpu)", "act_scale": None, "attention": None,
                            "compile": None, "reference_path": True, "warmup_sizes": [], "offload": "none"}}, b""),
        "progress": ({"v": 1, "type": "progress", "id": "req-1", "step": 3, "total": 20}, b""),
        "progress_preview": ({"v": 1, "type": "progress", "id": "req-1", "step": 4, "total": 20, "preview": {"width": 2, "height": 2}}, rgb2x2),
        "result": ({"v": 1, "type": "result", "id": "req-1", "width": 2, "height": 2, "seed": 3425234,
                    "timings": {"text_ms": 1.5, "denoise_ms": 120.25, "decode_ms": 30.0, "total_ms": 151.75}}, rgb2x2),
        "error_null_id": ({"v": 1, "type": "error", "id": None, "code": "internal", "message": "model directory /x does not exist: set KLEIN_MODEL"}, b""),
        "generate": ({"v": 1, "type": "generate", "id": "req-1", "params": params, "images": []}, b""),
        "generate_two_images": ({"v": 1, "type": "generate", "id": "req-2", "params": {**params, "cfg": 1, "sampler": "res_2s", "steps": 4, "width": 64, "height": 64},
                                 "images": [{"width": 2, "height": 2}, {"width": 1, "height": 2}]}, rgb2x2 + rgb2x2[:6]),
        "generate_unicode": ({"v": 1, "type": "generate", "id": "req-3", "params": {**params, "prompt": "猫 — «café» 😀 \u2028 line"}, "images": []}, b""),
        "generate_loras": ({"v": 1, "type": "generate", "id": "req-4", "params": params, "images": [],
                            "loras": [{"key": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "path": "/var/cache/klein/loras/9f86d081.safetensors", "scale": 0.8},
                                      {"key": "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752", "path": "/var/cache/klein/loras/60303ae2.safetensors", "scale": -1.5}]}, b""),
        "cancel": ({"v": 1, "type": "cancel", "id": "req-1"}, b""),
        "shutdown": ({"v": 1, "type": "shutdown"}, b""),
    }
    for code in ERROR_CODES:
        fixtures[f"error_{code}"] = ({"v": 1, "type": "error", "id": "req-1", "code": code, "message": f"example {code} message"}, b"")
    return fixtures


def write_fixtures(directory: str) -> None:
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for name, (header, payload) in sorted(_fixtures().items()):
        (out / f"{name}.bin").write_bytes(encode_frame(header, payload))
        desc = {"header": header, "payload_hex": payload.hex()}
        (out / f"{name}.json").write_text(json.dumps(desc, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "write-fixtures":
        write_fixtures(sys.argv[2])
    else:
        print("usage: python -m klein_engine.protocol write-fixtures DIR", file=sys.stderr)
        sys.exit(64)
