"""Batched 3D Model (b3dm): header, feature table (BATCH_LENGTH, RTC_CENTER), batch table, glTF.

The two legacy header layouts written before 3D Tiles 1.0 are recognised the way CesiumJS does
(a JSON byte length that is really the start of the batch table JSON).
"""

from __future__ import annotations

from twin.errors import DataError
from twin.tiles.binary import require_int, unpack
from twin.tiles.content import Content, ParseContext, content_matrix, gltf_content
from twin.tiles.tables import split_tables

HEADER_LEN = 28
# A "byte length" at least this large is really '{"' text of an old-layout batch table.
_LEGACY_THRESHOLD = 570425344


def parse_b3dm(data: memoryview, ctx: ParseContext) -> Content:
    """Parse a b3dm tile."""
    name = ctx.name
    magic, version, byte_length = unpack("<4sII", data, 0, name, "b3dm header")
    if version != 1:
        raise DataError(f"{name}: b3dm header version must be 1, got {version}")
    _check_length(byte_length, data, name, "b3dm")
    ftj, ftb, btj, btb = unpack("<4I", data, 12, name, "b3dm header")
    header_len = HEADER_LEN
    batch_length = None
    if btj >= _LEGACY_THRESHOLD:  # [batchLength, batchTableByteLength] layout
        header_len, batch_length = 20, ftj
        ftj, ftb, btj, btb = 0, 0, ftb, 0
    elif (
        btb >= _LEGACY_THRESHOLD
    ):  # [batchTableJsonByteLength, batchTableBinaryByteLength, batchLength]
        header_len, batch_length = 24, btj
        ftj, ftb, btj, btb = 0, 0, ftj, ftb
    ft, bt, body = split_tables(data[:byte_length], header_len, (ftj, ftb, btj, btb), name)
    if batch_length is None:
        if "BATCH_LENGTH" not in ft:
            raise DataError(f"{name}: b3dm feature table must have BATCH_LENGTH")
        batch_length = require_int(
            ft.global_value("BATCH_LENGTH", 1, "UNSIGNED_INT")[0],
            name,
            "feature table BATCH_LENGTH",
        )
    rtc = ft.global_value("RTC_CENTER", 3, "FLOAT")
    if len(body) == 0:
        raise DataError(f"{name}: b3dm has no glTF after its tables")
    model = gltf_content("b3dm", body, ctx)
    return Content(
        "b3dm",
        name,
        byte_length,
        feature_table=ft,
        batch_table=bt,
        gltf=model,
        local_matrix=content_matrix(model, ctx.up_axis, rtc),
        features=batch_length,
        header={"BATCH_LENGTH": batch_length, "RTC_CENTER": None if rtc is None else rtc.tolist()},
    )


def _check_length(byte_length: int, data: memoryview, name: str, what: str) -> None:
    """The header byteLength must be the real size of the tile."""
    if byte_length != len(data):
        raise DataError(
            f"{name}: {what} header byteLength says {byte_length} bytes, but the tile has "
            f"{len(data)} bytes" + (" (truncated)" if byte_length > len(data) else "")
        )
