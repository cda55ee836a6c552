"""Offscreen rendering of a 3D Tiles city with pyvista: `twin.tiles` opens the tileset, picks the
tiles by screen-space error and frustum, and reads them as textured meshes; this module draws them.

Works without a display (VTK's EGL/OSMesa offscreen windows). Meshes come in an east-north-up frame at
the camera, which keeps every coordinate VTK sees small, whatever the tileset's ECEF magnitudes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from twin.errors import DataError
from twin.geo import GEOID_HEIGHT_M, LocalFrame
from twin.tiles import Camera as TilesCamera
from twin.tiles import open_tileset, select_by_camera, tile_meshes, to_pyvista
from twin.tiles.write_glb import CLAMP_TO_EDGE

LAYERS = ("ground", "buildings", "trees")


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

    def ecef(self) -> TilesCamera:
        """The same camera in ECEF, as `twin.tiles` selects tiles with it."""
        return TilesCamera.from_lonlat(self.lon, self.lat, self.height, self.heading, self.pitch)

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Forward, right and up unit vectors in the camera's ENU frame."""
        cam, rot = self.ecef(), self.frame().rotation  # rows of rot: east, north, up in ECEF
        return rot @ cam.direction, rot @ cam.right, rot @ cam.up


def layer_of(mesh: Any) -> str:
    """'trees' for the city tileset's tree crowns (material 'tree'), 'buildings' for other meshes
    whose vertices carry feature ids, else 'ground'."""
    if mesh.metadata.get("feature_ids") is None:
        return "ground"
    return "trees" if mesh.metadata.get("material") == "tree" else "buildings"


def visible_meshes(
    tileset: Path, camera: Camera, size: tuple[int, int], max_sse: float
) -> list[Any]:
    """Triangle meshes (trimesh) of the tiles CesiumJS would draw for this camera and viewport at
    `max_sse` pixels, in the camera's ENU frame."""
    if not tileset.exists():
        raise DataError(f"{tileset}: tileset not found; build it with `twin data build`")
    ts = open_tileset(tileset)
    fov_y = math.radians(camera.fov)
    chosen = select_by_camera(ts, camera.ecef(), max_sse, size, fov_y, near=0.5)
    return [m for m in tile_meshes(ts, chosen, camera.frame()) if hasattr(m, "faces")]


def _style(mesh: Any, poly: Any, textures: dict) -> dict[str, Any]:
    """add_mesh arguments for one mesh: texture (uploaded once per image), tint or colour, light."""
    import pyvista as pv

    kwargs: dict[str, Any] = {"ambient": 0.45, "diffuse": 0.65, "specular": 0.0}
    if layer_of(mesh) == "ground":
        kwargs.update(ambient=0.6, diffuse=0.45)
    visual = mesh.visual
    material = getattr(visual, "material", None)
    image = getattr(material, "baseColorTexture", None)
    tint, color = None, (1.0, 1.0, 1.0)
    if image is not None and poly.active_texture_coordinates is not None:
        # VTK has one switch for both axes: repeat (mirrored too) unless both clamp to the edge
        wrap = mesh.metadata.get("texture_wrap") or ()
        repeat = not wrap or any(w != CLAMP_TO_EDGE for w in wrap)
        key = (id(image), repeat)
        if key not in textures:
            tex = pv.Texture(np.asarray(image.convert("RGB")))
            tex.repeat = repeat
            tex.interpolate = True
            tex.mipmap = True
            textures[key] = tex
        kwargs["texture"] = textures[key]
        tint = visual.vertex_attributes.get("color")
        base = getattr(material, "baseColorFactor", None)
        if base is not None:
            color = tuple(np.asarray(base[:3]) / 255.0)
    elif visual.kind == "vertex":
        tint = visual.vertex_colors
    else:
        color = tuple(np.asarray(visual.face_colors[0, :3]) / 255.0)
    if tint is not None:
        poly.point_data["tint"] = np.asarray(tint)[:, :3]
        kwargs.update(scalars="tint", rgb=True)
    else:
        kwargs["color"] = color
    return kwargs


def render_tileset(
    tileset: str | Path,
    camera: Camera,
    size: tuple[int, int] = (1280, 720),
    *,
    max_sse: float = 16.0,
    show: Sequence[str] = LAYERS,
    out: str | Path | None = None,
    overlays: Sequence[tuple[Any, tuple[float, float, float]]] = (),
) -> np.ndarray:
    """Render the tileset as seen from `camera`; returns the (height, width, 3) uint8 image and
    writes it as PNG to `out` when given (atomically). `overlays` are extra (mesh, colour) pairs in
    the camera's ENU frame (`camera.frame()`), e.g. the vehicles of a traffic run."""
    import pyvista as pv
    from vtkmodules.vtkCommonCore import vtkLogger

    pv.OFF_SCREEN = True
    # without a display VTK first tries X11 and logs a warning before it falls back to EGL/OSMesa
    vtkLogger.SetStderrVerbosity(vtkLogger.VERBOSITY_ERROR)
    tileset = Path(tileset)
    if tileset.is_dir():
        tileset = tileset / "tileset.json"
    meshes = [
        m
        for m in visible_meshes(tileset, camera, size, max_sse)
        if len(m.faces) and layer_of(m) in show
    ]
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
        textures: dict = {}
        for mesh, poly in zip(meshes, to_pyvista(meshes), strict=True):
            far = max(far, float(np.linalg.norm(poly.points, axis=1).max()))
            pl.add_mesh(poly, **_style(mesh, poly, textures))
        for poly, color in overlays:
            pl.add_mesh(poly, color=color, ambient=0.45, diffuse=0.65, specular=0.0)
        pl.camera.position = (0.0, 0.0, 0.0)
        pl.camera.focal_point = tuple(fwd * 100.0)
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
