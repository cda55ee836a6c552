"""Instanced 3D Model (i3dm): one glTF drawn at many positions with orientation and scale.

Instance matrices follow CesiumJS / 3d-tiles-tools: T(position + RTC) * R * S, where R has the
columns [right, up, right x up] (NORMAL_UP/NORMAL_RIGHT, oct-encoded or not) or is the
east-north-up frame at the position (EAST_NORTH_UP); the glTF is turned y-up to z-up first.
"""

from __future__ import annotations

import numpy as np

from twin.errors import DataError
from twin.tiles.b3dm import _check_length
from twin.tiles.binary import require_int, unpack
from twin.tiles.content import Content, ParseContext, content_matrix
from twin.tiles.gltf import MAX_GPU_INSTANCES, parse_gltf
from twin.tiles.tables import BinaryTable, split_tables

HEADER_LEN = 32


def oct_decode(v: np.ndarray, range_max: float) -> np.ndarray:
    """Oct-encoded unit vectors (n, 2) in [0, range_max] to (n, 3) unit vectors."""
    f = v.astype(np.float64) / range_max * 2.0 - 1.0
    x, y = f[:, 0], f[:, 1]
    z = 1.0 - np.abs(x) - np.abs(y)
    neg = z < 0
    x2 = np.where(neg, (1.0 - np.abs(y)) * np.sign(x), x)
    y2 = np.where(neg, (1.0 - np.abs(x)) * np.sign(y), y)
    out = np.stack([x2, y2, z], axis=1)
    n = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(n == 0, 1.0, n)


def _enu_rotations(positions: np.ndarray) -> np.ndarray:
    """East-north-up rotation matrices (n, 3, 3) (columns east, north, up) at ECEF positions."""
    from twin.geo import ecef_to_wgs84
    from twin.tiles.bounds import geo_call

    lon, lat, _ = geo_call(ecef_to_wgs84, positions[:, 0], positions[:, 1], positions[:, 2])
    lam, phi = np.radians(lon), np.radians(lat)
    sl, cl, sp, cp = np.sin(lam), np.cos(lam), np.sin(phi), np.cos(phi)
    east = np.stack([-sl, cl, np.zeros_like(sl)], axis=1)
    north = np.stack([-sp * cl, -sp * sl, cp], axis=1)
    up = np.stack([cp * cl, cp * sl, sp], axis=1)
    rot = np.stack([east, north, up], axis=2)
    near_center = np.linalg.norm(positions, axis=1) < 1.0
    rot[near_center] = np.eye(3)
    return rot


def _positions(ft: BinaryTable, n: int, name: str) -> np.ndarray:
    """Instance/point positions (n, 3) float64 from POSITION or POSITION_QUANTIZED."""
    pos = ft.per_item("POSITION", n, 3, "FLOAT")
    if pos is not None:
        return pos.astype(np.float64)
    q = ft.per_item("POSITION_QUANTIZED", n, 3, "UNSIGNED_SHORT")
    if q is None:
        raise DataError(f"{name}: feature table must have POSITION or POSITION_QUANTIZED")
    offset = ft.global_value("QUANTIZED_VOLUME_OFFSET", 3)
    scale = ft.global_value("QUANTIZED_VOLUME_SCALE", 3)
    if offset is None or scale is None:
        raise DataError(
            f"{name}: POSITION_QUANTIZED needs QUANTIZED_VOLUME_OFFSET and QUANTIZED_VOLUME_SCALE"
        )
    return q.astype(np.float64) / 65535.0 * scale + offset


def batch_id_array(ft: BinaryTable, n: int) -> np.ndarray | None:
    """BATCH_ID per instance/point (UNSIGNED_SHORT unless the table says otherwise), or None."""
    ref = ft.json.get("BATCH_ID")
    component = ref.get("componentType", "UNSIGNED_SHORT") if isinstance(ref, dict) else None
    if component not in (None, "UNSIGNED_BYTE", "UNSIGNED_SHORT", "UNSIGNED_INT"):
        raise DataError(
            f"{ft.name}: feature table BATCH_ID.componentType must be unsigned, got {component!r}"
        )
    batch = ft.per_item("BATCH_ID", n, 1, component or "UNSIGNED_SHORT")
    return None if batch is None else batch[:, 0].astype(np.int64)


def parse_i3dm(data: memoryview, ctx: ParseContext) -> Content:
    """Parse an i3dm tile."""
    name = ctx.name
    magic, version, byte_length = unpack("<4sII", data, 0, name, "i3dm header")
    if version != 1:
        raise DataError(f"{name}: i3dm header version must be 1, got {version}")
    _check_length(byte_length, data, name, "i3dm")
    ftj, ftb, btj, btb, gltf_format = unpack("<5I", data, 12, name, "i3dm header")
    ft, bt, body = split_tables(data, HEADER_LEN, (ftj, ftb, btj, btb), name)
    if "INSTANCES_LENGTH" not in ft:
        raise DataError(f"{name}: i3dm feature table must have INSTANCES_LENGTH")
    n = require_int(
        ft.global_value("INSTANCES_LENGTH", 1)[0], name, "feature table INSTANCES_LENGTH"
    )
    if n > MAX_GPU_INSTANCES:  # each instance becomes a 4x4 float64 matrix
        raise DataError(
            f"{name}: feature table INSTANCES_LENGTH {n} is more than {MAX_GPU_INSTANCES}; refused"
        )
    rtc = ft.global_value("RTC_CENTER", 3)
    pos = _positions(ft, n, name)
    if rtc is not None:
        pos = pos + rtc
    up = ft.per_item("NORMAL_UP", n, 3, "FLOAT")
    right = ft.per_item("NORMAL_RIGHT", n, 3, "FLOAT")
    if up is None and "NORMAL_UP_OCT32P" in ft:
        up = oct_decode(ft.per_item("NORMAL_UP_OCT32P", n, 2, "UNSIGNED_SHORT"), 65535.0)
    if right is None and "NORMAL_RIGHT_OCT32P" in ft:
        right = oct_decode(ft.per_item("NORMAL_RIGHT_OCT32P", n, 2, "UNSIGNED_SHORT"), 65535.0)
    mats = np.tile(np.eye(4), (n, 1, 1))
    if up is not None and right is not None:
        up, right = up.astype(np.float64), right.astype(np.float64)
        fwd = np.cross(right, up)
        norm = np.linalg.norm(fwd, axis=1, keepdims=True)
        fwd = fwd / np.where(norm == 0, 1.0, norm)
        mats[:, :3, :3] = np.stack([right, up, fwd], axis=2)
    elif ft.json.get("EAST_NORTH_UP") is True and n:
        mats[:, :3, :3] = _enu_rotations(pos)
    scale = ft.per_item("SCALE", n, 1, "FLOAT")
    if scale is not None:
        mats[:, :3, :3] *= scale.astype(np.float64)[:, :, None]
    else:
        s3 = ft.per_item("SCALE_NON_UNIFORM", n, 3, "FLOAT")
        if s3 is not None:
            mats[:, :3, :3] *= s3.astype(np.float64)[:, None, :]
    mats[:, :3, 3] = pos
    batch_ids = batch_id_array(ft, n)
    features = n if batch_ids is None else (int(batch_ids.max()) + 1 if batch_ids.size else 0)
    if gltf_format == 1:
        glb = body
    elif gltf_format == 0:
        uri = bytes(body).rstrip(b" \x00").decode("utf-8", "replace")
        if ctx.resolve is None:
            raise DataError(
                f"{name}: i3dm refers to external glTF {uri!r}, which cannot be read here"
            )
        glb = memoryview(ctx.resolve(uri))
    else:
        raise DataError(
            f"{name}: i3dm header gltfFormat must be 0 (uri) or 1 (embedded), got {gltf_format}"
        )
    if len(glb) == 0:
        raise DataError(f"{name}: i3dm has no glTF after its tables")
    model = parse_gltf(glb, name, ctx.resolve)
    return Content(
        "i3dm",
        name,
        byte_length,
        feature_table=ft,
        batch_table=bt,
        gltf=model,
        local_matrix=content_matrix(model, ctx.up_axis, None),
        instance_matrices=mats,
        instance_feature_ids=batch_ids if batch_ids is not None else np.arange(n),
        features=features,
        header={"INSTANCES_LENGTH": n, "gltfFormat": gltf_format},
    )
