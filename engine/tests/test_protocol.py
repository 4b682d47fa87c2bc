"""Frames: the shared fixtures decode and round-trip; malformed frames are refused."""

import io
import json
import struct
from pathlib import Path

import pytest

from klein_engine.protocol import BadMessage, Frame, ProtocolError, encode_frame, parse_generate, read_frame

FIXTURES = Path(__file__).resolve().parents[2] / "protocol" / "fixtures"


def fixtures():
    names = sorted(p.stem for p in FIXTURES.glob("*.bin"))
    assert len(names) >= 14
    return names


@pytest.mark.parametrize("name", fixtures())
def test_fixture_decodes_and_round_trips(name):
    desc = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    frame = read_frame(io.BytesIO((FIXTURES / f"{name}.bin").read_bytes()))
    assert frame.header == desc["header"]
    assert frame.payload.hex() == desc["payload_hex"]
    again = read_frame(io.BytesIO(encode_frame(desc["header"], bytes.fromhex(desc["payload_hex"]))))
    assert again.header == desc["header"] and again.payload == frame.payload


def test_generate_fixtures_parse_into_typed_requests():
    f = read_frame(io.BytesIO((FIXTURES / "generate_two_images.bin").read_bytes()))
    job_id, req = parse_generate(f)
    assert job_id == "req-2" and req.sampler == "res_2s" and isinstance(req.cfg, float)
    assert [(i.width, i.height, len(i.rgb)) for i in req.images] == [(2, 2, 12), (1, 2, 6)]


def frame_bytes(header_raw: bytes, payload: bytes = b"", hlen=None, plen=None):
    return struct.pack(">II", len(header_raw) if hlen is None else hlen, len(payload) if plen is None else plen) + header_raw + payload


@pytest.mark.parametrize("data", [
    frame_bytes(b'{"v":1,"type":"x"}', hlen=1),
    frame_bytes(b'{"v":1,"type":"x"}', hlen=(1 << 20) + 1),
    frame_bytes(b'[1,2]'),
    frame_bytes(b'{"v":2,"type":"x"}'),
    frame_bytes(b'{"v":1}'),
    frame_bytes(b'not json'),
    frame_bytes(b'{"v":1,"type":"x"}', payload=b"abc", plen=10),
    b"\x00\x00",
])
def test_malformed_frames_are_refused(data):
    with pytest.raises(ProtocolError):
        read_frame(io.BytesIO(data))


def test_clean_eof_is_none():
    assert read_frame(io.BytesIO(b"")) is None


@pytest.mark.parametrize("params,payload,images", [
    ({"prompt": 1}, b"", []),
    ({"prompt": "x", "seed": "1", "cfg": 1, "sampler": "euler", "steps": 1, "width": 64, "height": 64}, b"", []),
    ({"prompt": "x", "seed": 1, "cfg": 1, "sampler": "euler", "steps": True, "width": 64, "height": 64}, b"", []),
    ({"prompt": "x", "seed": 1, "cfg": 1, "sampler": "euler", "steps": 1, "width": 64, "height": 64}, b"abc", []),
    ({"prompt": "x", "seed": 1, "cfg": 1, "sampler": "euler", "steps": 1, "width": 64, "height": 64}, b"", [{"width": 2, "height": 2}]),
])
def test_bad_generate_fields_are_bad_messages(params, payload, images):
    with pytest.raises(BadMessage):
        parse_generate(Frame({"v": 1, "type": "generate", "id": "j", "params": params, "images": images}, payload))
