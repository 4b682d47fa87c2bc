"""Width and height of a PNG from its IHDR chunk (the clients' venv has no imaging library)."""

import struct


def png_size(data: bytes) -> list:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return list(struct.unpack(">II", data[16:24]))
