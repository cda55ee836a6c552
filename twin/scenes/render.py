"""Offscreen rendering of a 3D Tiles city with pyvista: tiles chosen by screen-space error from the camera,
GLB (or b3dm) content loaded with its textures, drawn in an east-north-up frame at the camera.

Works without a display (VTK's EGL/OSMesa offscreen windows). The frame at the camera keeps every
coordinate VTK sees small, whatever the tileset's ECEF magnitudes.
"""

from __future__ import annotations

import io
import json
import math
import os
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from twin.errors import DataError
from twin.geo import GEOID_HEIGHT_M, LocalFrame, wgs84_to_ecef

# glTF y-up to 3D Tiles z-up, as 3D Tiles runtimes apply it to every glTF content
Y_UP_TO_Z_UP = np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=float)
_COMPONENTS = {5120: "i1", 5121: "u1", 5122: "<i2", 5123: "<u2", 5125: "<u4", 5126: "<f4"}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}
_NORM = {5120: 127.0, 5121: 255.0, 5122: 32767.0, 5123: 65535.0}


@dataclass(frozen=True)
class Camera:
    """A camera at WGS84 lon/lat (degrees) and height (m above sea level, DHHN2016), looking along
    heading (degrees clockwise from north) and pitch (degrees, negative looks down)."""

    lon: float
    lat: float
    height: float
    heading: float = 0.0
    pitch: float = -30.0
    fov: float = 60.0  # vertical field of view, degrees

    def frame(self) -> LocalFrame:
        """East-north-up frame with its origin at the camera."""
        return LocalFrame(self.lon, self.lat, self.height + GEOID_HEIGHT_M)

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Forward, right and up unit vectors in the camera's ENU frame."""
        hd, p = math.radians(self.heading), math.radians(self.pitch)
        f = np.array([math.sin(hd) * math.cos(p), math.cos(hd) * math.cos(p), math.sin(p)])
        u = np.array([-math.sin(hd) * math.sin(p), -math.cos(hd) * math.sin(p), math.cos(p)])
        return f, np.cross(f, u), u


@dataclass
class RenderMesh:
    """One primitive ready to draw: points in the camera frame, faces, texture and tint."""

    points: np.ndarray  # (N, 3) float64, camera ENU
    tris: np.ndarray  # (M, 3)
    uv: np.ndarray | None
    image: np.ndarray | None
    repeat: bool
    colors: np.ndarray | None  # (N, 3) uint8
    base_color: tuple[float, float, float]
    kind: str  # "ground" or "buildings"


# --- reading content ------------------------------------------------------------------------------


def read_glb(data: bytes, where: str = "GLB") -> tuple[dict[str, Any], bytes]:
    """The JSON and binary chunks of a GLB."""
    if len(data) < 20 or data[:4] != b"glTF":
        raise DataError(f"{where}: not a binary glTF (GLB) file")
    _, version, length = struct.unpack_from("<4sII", data)
    if version != 2:
        raise DataError(f"{where}: glTF version {version}; expected 2")
    pos, doc, blob = 12, None, b""
    while pos + 8 <= min(length, len(data)):
        n, kind = struct.unpack_from("<II", data, pos)
        chunk = data[pos + 8 : pos + 8 + n]
        if kind == 0x4E4F534A:
            doc = json.loads(chunk)
        elif kind == 0x004E4942:
            blob = chunk
        pos += 8 + n
    if doc is None:
        raise DataError(f"{where}: GLB without a JSON chunk")
    return doc, blob


def glb_of_content(path: Path) -> tuple[bytes, np.ndarray | None]:
    """GLB bytes of a .glb or .b3dm content, and the b3dm RTC_CENTER if it has one."""
    data = path.read_bytes()
    if data[:4] == b"b3dm":
        _, _, _, ftj, ftb, btj, btb = struct.unpack_from("<4sIIIIII", data)
        ft = json.loads(data[28 : 28 + ftj] or b"{}")
        rtc = np.array(ft["RTC_CENTER"], dtype=float) if "RTC_CENTER" in ft else None
        return data[28 + ftj + ftb + btj + btb :], rtc
    return data, None


def accessor(doc: dict[str, Any], blob: bytes, index: int) -> np.ndarray:
    """An accessor's values as a float64 or integer array of shape (count, width)."""
    acc = doc["accessors"][index]
    width = _WIDTH[acc["type"]]
    dt = np.dtype(_COMPONENTS[acc["componentType"]])
    count = acc["count"]
    if "bufferView" not in acc:
        return np.zeros((count, width))
    view = doc["bufferViews"][acc["bufferView"]]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    stride = view.get("byteStride", 0) or dt.itemsize * width
    raw = np.frombuffer(
        blob, dtype=np.uint8, count=stride * (count - 1) + dt.itemsize * width, offset=start
    )
    rows = np.lib.stride_tricks.as_strided(
        raw, shape=(count, dt.itemsize * width), strides=(stride, 1)
    )
    out = np.ascontiguousarray(rows).view(dt).reshape(count, width)
    if acc.get("normalized"):
        out = out.astype(np.float64) / _NORM[acc["componentType"]]
    return out


def _node_matrix(node: dict[str, Any]) -> np.ndarray:
    if "matrix" in node:
        return np.array(node["matrix"], dtype=float).reshape(4, 4, order="F")
    m = np.eye(4)
    if "scale" in node:
        m = np.diag([*node["scale"], 1.0]) @ m
    if "rotation" in node:
        x, y, z, w = node["rotation"]
        r = np.array(
            [
                [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
            ]
        )
        rot = np.eye(4)
        rot[:3, :3] = r
        m = rot @ m
    if "translation" in node:
        t = np.eye(4)
        t[:3, 3] = node["translation"]
        m = t @ m
    return m


def _walk_nodes(doc: dict[str, Any]) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
    scene = doc.get("scenes", [{}])[doc.get("scene", 0)] if doc.get("scenes") else {}
    roots = scene.get("nodes", list(range(len(doc.get("nodes", [])))))
    stack = [(i, np.eye(4)) for i in roots]
    while stack:
        i, parent = stack.pop()
        node = doc["nodes"][i]
        m = parent @ _node_matrix(node)
        yield node, m
        stack.extend((c, m) for c in node.get("children", []))


def _image(doc: dict[str, Any], blob: bytes, index: int, base: Path) -> np.ndarray:
    img = doc["images"][index]
    if "bufferView" in img:
        v = doc["bufferViews"][img["bufferView"]]
        o = v.get("byteOffset", 0)
        data = blob[o : o + v["byteLength"]]
    else:
        data = (base / img["uri"]).read_bytes()
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def content_meshes(path: Path, world: np.ndarray, frame: LocalFrame) -> list[RenderMesh]:
    """The triangle primitives of one tile content, moved by its tile's world matrix into `frame`."""
    glb, rtc = glb_of_content(path)
    doc, blob = read_glb(glb, str(path))
    if rtc is not None:
        t = np.eye(4)
        t[:3, 3] = rtc
        world = world @ t
    to_frame = np.eye(4)
    to_frame[:3, :3] = frame.rotation
    to_frame[:3, 3] = -frame.rotation @ frame.origin_ecef
    images: dict[int, np.ndarray] = {}
    out = []
    for node, m in _walk_nodes(doc):
        if "mesh" not in node:
            continue
        full = to_frame @ world @ Y_UP_TO_Z_UP @ m
        for prim in doc["meshes"][node["mesh"]]["primitives"]:
            if prim.get("mode", 4) != 4:
                continue
            attrs = prim["attributes"]
            pos = accessor(doc, blob, attrs["POSITION"]).astype(np.float64)
            pts = pos @ full[:3, :3].T + full[:3, 3]
            if "indices" in prim:
                tris = accessor(doc, blob, prim["indices"]).reshape(-1, 3).astype(np.int64)
            else:
                tris = np.arange(len(pts) - len(pts) % 3).reshape(-1, 3)
            uv = accessor(doc, blob, attrs["TEXCOORD_0"]) if "TEXCOORD_0" in attrs else None
            colors = None
            if "COLOR_0" in attrs:
                c = accessor(doc, blob, attrs["COLOR_0"]).astype(np.float64)[:, :3]
                colors = np.clip(c * 255 if c.max() <= 1.0 else c, 0, 255).astype(np.uint8)
            image, repeat, base_color = None, False, (1.0, 1.0, 1.0)
            mat = doc["materials"][prim["material"]] if "material" in prim else {}
            pbr = mat.get("pbrMetallicRoughness", {})
            base_color = tuple(pbr.get("baseColorFactor", [1.0, 1.0, 1.0, 1.0])[:3])
            tex_info = pbr.get("baseColorTexture")
            if tex_info is not None and uv is not None:
                tex = doc["textures"][tex_info["index"]]
                src = tex.get("source")
                if src is not None:
                    if src not in images:
                        images[src] = _image(doc, blob, src, path.parent)
                    image = images[src]
                    sampler = doc.get("samplers", [{}])[tex["sampler"]] if "sampler" in tex else {}
                    repeat = sampler.get("wrapS", 10497) == 10497
            featured = "_FEATURE_ID_0" in attrs or "_BATCHID" in attrs
            out.append(
                RenderMesh(
                    pts,
                    tris,
                    uv,
                    image,
                    repeat,
                    colors,
                    base_color,
                    "buildings" if featured else "ground",
                )
            )
    return out


# --- choosing tiles -------------------------------------------------------------------------------


def _matrix(values: Sequence[float] | None) -> np.ndarray:
    return np.eye(4) if values is None else np.array(values, dtype=float).reshape(4, 4, order="F")


def _volume_corners(volume: dict[str, Any], world: np.ndarray) -> np.ndarray:
    """Eight ECEF corners enclosing a tile's bounding volume."""
    if "region" in volume:
        w, s, e, n, lo, hi = volume["region"]
        lon = np.degrees([w, e, w, e, w, e, w, e])
        lat = np.degrees([s, s, n, n, s, s, n, n])
        h = np.array([lo, lo, lo, lo, hi, hi, hi, hi], dtype=float)
        return np.column_stack(wgs84_to_ecef(lon, lat, h))
    if "box" in volume:
        b = np.array(volume["box"], dtype=float)
        c, axes = b[:3], b[3:].reshape(3, 3)
        signs = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], float)
        local = c + signs @ axes
    elif "sphere" in volume:
        c, r = np.array(volume["sphere"][:3], float), float(volume["sphere"][3])
        signs = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], float)
        local = c + r * signs
    else:
        raise DataError(f"bounding volume {sorted(volume)} is not a region, box or sphere")
    return local @ world[:3, :3].T + world[:3, 3]


def select_tiles(
    tileset_path: Path,
    camera: Camera,
    size: tuple[int, int],
    max_sse: float = 16.0,
) -> list[tuple[Path, np.ndarray]]:
    """Contents to draw for this camera: REPLACE/ADD refinement by screen-space error, frustum-culled.

    Returns (content path, world matrix) pairs. External tilesets (content that is a .json) are followed.
    """
    frame = camera.frame()
    fwd, right, up = camera.axes()
    width, height = size
    tan_v = math.tan(math.radians(camera.fov) / 2)
    tan_h = tan_v * width / height
    chosen: list[tuple[Path, np.ndarray]] = []

    def visible_and_distance(volume: dict[str, Any], world: np.ndarray) -> tuple[bool, float]:
        q = frame.ecef_to_enu(_volume_corners(volume, world))
        z, x, y = q @ fwd, q @ right, q @ up
        outside = (
            (z < 0.5).all()
            or (x > z * tan_h).all()
            or (x < -z * tan_h).all()
            or (y > z * tan_v).all()
            or (y < -z * tan_v).all()
        )
        lo, hi = q.min(axis=0), q.max(axis=0)
        d = float(np.linalg.norm(np.maximum(0.0, np.maximum(lo, -hi))))
        return not outside, d

    def visit(tile: dict[str, Any], parent_world: np.ndarray, base: Path, refine: str) -> None:
        world = parent_world @ _matrix(tile.get("transform"))
        refine = tile.get("refine", refine).upper()
        seen, d = visible_and_distance(tile["boundingVolume"], world)
        if not seen:
            return
        sse = float(tile.get("geometricError", 0.0)) * height / (2 * max(d, 1e-3) * tan_v)
        children = tile.get("children", [])
        contents = tile.get("contents") or ([tile["content"]] if "content" in tile else [])
        refine_it = children and sse > max_sse
        if not refine_it or refine == "ADD":
            for c in contents:
                p = base / c.get("uri", c.get("url", ""))
                if p.suffix == ".json":
                    sub = _load_json(p)
                    visit(sub["root"], world, p.parent, "REPLACE")
                else:
                    chosen.append((p, world))
        if refine_it:
            for child in children:
                visit(child, world, base, refine)

    ts = _load_json(tileset_path)
    visit(ts["root"], np.eye(4), tileset_path.parent, "REPLACE")
    return chosen


def _load_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: tileset not found; build it with `twin data build`") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable tileset JSON: {exc}") from None


# --- drawing --------------------------------------------------------------------------------------


def render_tileset(
    tileset: str | Path,
    camera: Camera,
    size: tuple[int, int] = (1280, 720),
    *,
    max_sse: float = 16.0,
    show: Sequence[str] = ("ground", "buildings"),
    out: str | Path | None = None,
) -> np.ndarray:
    """Render the tileset as seen from `camera`; returns the (height, width, 3) uint8 image and
    writes it as PNG to `out` when given (atomically)."""
    import pyvista as pv
    from vtkmodules.vtkCommonCore import vtkLogger

    pv.OFF_SCREEN = True
    # without a display VTK first tries X11 and logs a warning before it falls back to EGL/OSMesa
    vtkLogger.SetStderrVerbosity(vtkLogger.VERBOSITY_ERROR)
    tileset = Path(tileset)
    if tileset.is_dir():
        tileset = tileset / "tileset.json"
    frame = camera.frame()
    meshes = []
    for path, world in select_tiles(tileset, camera, size, max_sse):
        meshes.extend(m for m in content_meshes(path, world, frame) if m.kind in show)
    width, height = size
    pl = pv.Plotter(off_screen=True, window_size=(width, height), lighting="none")
    try:
        pl.set_background("#dbe6ee", top="#7fa7cf")
        fwd, _, up = camera.axes()
        sun = np.array([-0.45, -0.55, 0.70])  # from the south-west, 45 degrees up
        pl.add_light(
            pv.Light(
                position=tuple(sun * 1000), focal_point=(0, 0, 0), intensity=0.75, positional=False
            )
        )
        pl.add_light(
            pv.Light(
                position=tuple(-fwd * 1000 + up * 500),
                focal_point=(0, 0, 0),
                intensity=0.25,
                positional=False,
            )
        )
        far = 1.0
        for m in meshes:
            if len(m.tris) == 0:
                continue
            far = max(far, float(np.linalg.norm(m.points, axis=1).max()))
            faces = np.column_stack([np.full(len(m.tris), 3), m.tris]).ravel()
            poly = pv.PolyData(m.points, faces)
            kwargs: dict[str, Any] = {"ambient": 0.45, "diffuse": 0.65, "specular": 0.0}
            if m.image is not None and m.uv is not None:
                poly.active_texture_coordinates = np.column_stack([m.uv[:, 0], 1.0 - m.uv[:, 1]])
                tex = pv.Texture(m.image)
                tex.repeat = m.repeat
                tex.interpolate = True
                tex.mipmap = True
                kwargs["texture"] = tex
            if m.colors is not None:
                poly.point_data["tint"] = m.colors
                kwargs.update(scalars="tint", rgb=True)
            else:
                kwargs["color"] = m.base_color
            if m.kind == "ground":
                kwargs.update(ambient=0.6, diffuse=0.45)
            pl.add_mesh(poly, **kwargs)
        f = fwd * 100.0
        pl.camera.position = (0.0, 0.0, 0.0)
        pl.camera.focal_point = tuple(f)
        pl.camera.up = tuple(up)
        pl.camera.view_angle = camera.fov
        pl.camera.clipping_range = (max(0.5, far * 1e-4), far * 1.05 + 10)
        pl.enable_anti_aliasing("msaa", multi_samples=4)
        img = pl.screenshot(return_img=True)
    finally:
        pl.close()
    img = np.asarray(img)[..., :3].copy()
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        Image.fromarray(img).save(tmp, format="PNG")
        os.replace(tmp, out)
    return img
