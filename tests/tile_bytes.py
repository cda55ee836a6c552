"""Helpers for tests that write 3D Tiles content by hand: padding, GLB containers, a unit box volume."""

from __future__ import annotations

import json
import struct

BOX = {"box": [0, 0, 0, 10, 0, 0, 0, 10, 0, 0, 0, 10]}


def pad(b: bytes, n: int = 8, fill: bytes = b" ") -> bytes:
    """`b` padded with `fill` to a multiple of `n` bytes."""
    return b + fill * (-len(b) % n)


def glb(j: dict, binary: bytes = b"") -> bytes:
    """A GLB container with JSON chunk `j` and an optional binary chunk."""
    js = pad(json.dumps(j).encode(), 4)
    body = struct.pack("<I4s", len(js), b"JSON") + js
    if binary:
        binary = pad(binary, 4, b"\0")
        body += struct.pack("<I4s", len(binary), b"BIN\0") + binary
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body
