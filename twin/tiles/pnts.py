"""Point cloud (pnts): positions (float or quantized), colours (RGBA, RGB, RGB565, constant),
normals (float or oct-encoded), batch ids, RTC_CENTER, and Draco-compressed point clouds."""

from __future__ import annotations

import numpy as np

from twin.errors import DataError
from twin.tiles.b3dm import _check_length
from twin.tiles.binary import require_int, unpack
from twin.tiles.content import Content, ParseContext, PointData
from twin.tiles.i3dm import _positions, batch_id_array, oct_decode
from twin.tiles.tables import BinaryTable, split_tables

HEADER_LEN = 28
DRACO_EXT = "3DTILES_draco_point_compression"


def _rgb565(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.uint32)
    r = ((v >> 11) & 31) * 255 // 31
    g = ((v >> 5) & 63) * 255 // 63
    b = (v & 31) * 255 // 31
    return np.stack([r, g, b, np.full_like(r, 255)], axis=1).astype(np.uint8)


def _colors(ft: BinaryTable, n: int) -> np.ndarray | None:
    rgba = ft.per_item("RGBA", n, 4, "UNSIGNED_BYTE")
    if rgba is not None:
        return rgba.astype(np.uint8)
    rgb = ft.per_item("RGB", n, 3, "UNSIGNED_BYTE")
    if rgb is not None:
        return np.concatenate([rgb.astype(np.uint8), np.full((n, 1), 255, np.uint8)], axis=1)
    c565 = ft.per_item("RGB565", n, 1, "UNSIGNED_SHORT")
    if c565 is not None:
        return _rgb565(c565[:, 0])
    const = ft.global_value("CONSTANT_RGBA", 4, "UNSIGNED_BYTE")
    if const is not None:
        return np.tile(np.clip(const, 0, 255).astype(np.uint8), (n, 1))
    return None


def _draco_points(ft: BinaryTable, n: int, name: str) -> PointData:
    """Decode a 3DTILES_draco_point_compression feature table into PointData."""
    import DracoPy

    ext = ft.json["extensions"][DRACO_EXT]
    if not isinstance(ext, dict):
        raise DataError(f"{name}: feature table extensions.{DRACO_EXT} must be an object")
    off = require_int(ext.get("byteOffset"), name, f"{DRACO_EXT}.byteOffset")
    length = require_int(ext.get("byteLength"), name, f"{DRACO_EXT}.byteLength")
    if off + length > len(ft.binary):
        raise DataError(f"{name}: {DRACO_EXT} byte range runs past the feature table binary")
    try:
        pc = DracoPy.decode(bytes(ft.binary[off : off + length]))
    except Exception as exc:  # DracoPy raises its own types; any failure means corrupt data
        raise DataError(f"{name}: Draco point data cannot be decoded ({exc})") from exc
    props = ext.get("properties") or {}

    def attr(key: str) -> np.ndarray | None:
        if key not in props:
            return None
        a = pc.get_attribute_by_unique_id(props[key])
        if a is None:
            raise DataError(f"{name}: Draco point data lacks attribute {key}")
        d = np.asarray(a["data"])
        if len(d) != n:
            raise DataError(f"{name}: Draco {key} has {len(d)} points, POINTS_LENGTH is {n}")
        return d.reshape(n, -1)

    pos = attr("POSITION")
    if pos is None:
        pos = attr("POSITION_QUANTIZED")
    if pos is None:
        raise DataError(f"{name}: Draco point data has no POSITION")
    colors = None
    for key in ("RGBA", "RGB"):
        c = attr(key)
        if c is not None:
            c = c.astype(np.uint8)
            colors = (
                c if c.shape[1] == 4 else np.concatenate([c, np.full((n, 1), 255, np.uint8)], 1)
            )
            break
    normals = attr("NORMAL")
    bid = attr("BATCH_ID")
    return PointData(
        pos.astype(np.float64),
        colors,
        None if normals is None else normals.astype(np.float32),
        None if bid is None else bid[:, 0].astype(np.int64),
    )


def parse_pnts(data: memoryview, ctx: ParseContext) -> Content:
    """Parse a pnts tile."""
    name = ctx.name
    magic, version, byte_length = unpack("<4sII", data, 0, name, "pnts header")
    if version != 1:
        raise DataError(f"{name}: pnts header version must be 1, got {version}")
    _check_length(byte_length, data, name, "pnts")
    lengths = unpack("<4I", data, 12, name, "pnts header")
    ft, bt, _ = split_tables(data, HEADER_LEN, lengths, name)
    if "POINTS_LENGTH" not in ft:
        raise DataError(f"{name}: pnts feature table must have POINTS_LENGTH")
    n = require_int(
        ft.global_value("POINTS_LENGTH", 1, "UNSIGNED_INT")[0], name, "feature table POINTS_LENGTH"
    )
    if DRACO_EXT in (ft.json.get("extensions") or {}):
        pts = _draco_points(ft, n, name)
    else:
        normals = ft.per_item("NORMAL", n, 3, "FLOAT")
        if normals is None and "NORMAL_OCT16P" in ft:
            normals = oct_decode(ft.per_item("NORMAL_OCT16P", n, 2, "UNSIGNED_BYTE"), 255.0)
        pts = PointData(_positions(ft, n, name), _colors(ft, n), normals, batch_id_array(ft, n))
    rtc = ft.global_value("RTC_CENTER", 3)
    if rtc is not None:
        pts.positions = pts.positions + rtc
    if pts.batch_ids is not None:
        batch_length = ft.global_value("BATCH_LENGTH", 1, "UNSIGNED_INT")
        features = (
            require_int(batch_length[0], name, "feature table BATCH_LENGTH")
            if batch_length is not None
            else (int(pts.batch_ids.max()) + 1 if n else 0)
        )
    else:
        features = n
    return Content(
        "pnts",
        name,
        byte_length,
        feature_table=ft,
        batch_table=bt,
        points=pts,
        features=features,
        header={"POINTS_LENGTH": n, "RTC_CENTER": None if rtc is None else rtc.tolist()},
    )
