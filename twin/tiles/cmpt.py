"""Composite tiles (cmpt): a header and a list of inner tiles, each parsed by its own magic."""

from __future__ import annotations

from dataclasses import replace

from twin.errors import DataError
from twin.tiles.b3dm import _check_length
from twin.tiles.binary import unpack
from twin.tiles.content import MAX_CMPT_NESTING, Content, ParseContext, parse_content

HEADER_LEN = 16
INNER_HEADER_LEN = 12


def parse_cmpt(data: memoryview, ctx: ParseContext) -> Content:
    """Parse a cmpt tile and its inner tiles (nested composites allowed, to a fixed depth)."""
    name = ctx.name
    magic, version, byte_length, tiles_length = unpack("<4sIII", data, 0, name, "cmpt header")
    if version != 1:
        raise DataError(f"{name}: cmpt header version must be 1, got {version}")
    _check_length(byte_length, data, name, "cmpt")
    if ctx.depth >= MAX_CMPT_NESTING:
        raise DataError(f"{name}: composite tiles nested more than {MAX_CMPT_NESTING} deep")
    inner = []
    offset = HEADER_LEN
    for i in range(tiles_length):
        if offset + INNER_HEADER_LEN > byte_length:
            raise DataError(
                f"{name}: cmpt header tilesLength says {tiles_length} inner tiles, but the data ends "
                f"after {i}"
            )
        (inner_len,) = unpack("<I", data, offset + 8, name, f"inner tile {i} byteLength")
        if inner_len < INNER_HEADER_LEN or offset + inner_len > byte_length:
            raise DataError(
                f"{name}: inner tile {i} at offset {offset} has byteLength {inner_len}, which runs "
                f"past the end of the composite ({byte_length} bytes)"
            )
        sub = replace(ctx, name=f"{name}[inner {i}]", depth=ctx.depth + 1)
        inner.append(parse_content(data[offset : offset + inner_len], sub))
        offset += inner_len
    return Content("cmpt", name, byte_length, inner=inner, header={"tilesLength": tiles_length})
