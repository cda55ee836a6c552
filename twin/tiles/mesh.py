"""Tile contents as trimesh meshes and point clouds in a chosen frame, with textures and feature ids.

Frames: "ecef" (EPSG:4978), "EPSG:25832" (x, y and DHHN2016 height), or "enu" / a
`twin.geo.LocalFrame` (small local coordinates for engines and AR; the anchor is kept in
`mesh.metadata["origin"]`). Each mesh carries `metadata["feature_ids"]` (per vertex),
`metadata["face_feature_ids"]` (per face) and `metadata["properties"]` (per feature). A textured
mesh also keeps its glTF sampler's `metadata["texture_wrap"]` (wrapS, wrapT) and its COLOR_0 tints
in `visual.vertex_attributes["color"]`, where trimesh's own glTF reader keeps them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from twin.errors import DataError
from twin.tiles.binary import malformed
from twin.tiles.content import Content, Geometry
from twin.tiles.tileset import Tile, Tileset
from twin.tiles.write_glb import CLAMP_TO_EDGE, REPEAT

FRAMES = ("ecef", "EPSG:4978", "EPSG:25832", "enu")
MIRRORED_REPEAT = 33648
WRAP_MODES = (REPEAT, CLAMP_TO_EDGE, MIRRORED_REPEAT)


def _resolve_frame(frame: Any, tiles: list[Tile]):
    """(name, 4x4 ECEF->frame matrix or None for UTM, LocalFrame or None)."""
    from twin.geo import LocalFrame, ecef_to_wgs84

    if isinstance(frame, LocalFrame):
        return "enu", _enu_matrix(frame), frame
    if frame in ("ecef", "EPSG:4978"):
        return "ecef", np.eye(4), None
    if frame == "EPSG:25832":
        return "EPSG:25832", None, None
    if frame == "enu":
        if not tiles:
            raise DataError("mesh frame 'enu' needs at least one tile to place its origin")
        centre = np.mean([t.sphere[0] for t in tiles], axis=0)
        lon, lat, h = (float(v) for v in ecef_to_wgs84(*centre))
        lf = LocalFrame(lon, lat, h)
        return "enu", _enu_matrix(lf), lf
    raise DataError(f"mesh frame must be one of {FRAMES} or a twin.geo.LocalFrame, got {frame!r}")


def _enu_matrix(frame) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = frame.rotation
    m[:3, 3] = -frame.rotation @ frame.origin_ecef
    return m


def _texture_wraps(content: Content) -> dict[int, tuple[int, int]]:
    """(wrapS, wrapT) of the glTF samplers, keyed by id() of the TextureImage they sample.

    trimesh materials carry no sampler, yet a renderer must know whether a texture repeats (facade
    atlases do, ground images do not). An image sampled by several textures takes the first one's.
    """
    wraps: dict[int, tuple[int, int]] = {}
    for leaf in content.leaves():
        model = leaf.gltf
        if model is None:
            continue
        textures = model.json.get("textures") or []
        samplers = model.json.get("samplers") or []
        for t, tex in enumerate(textures):
            image = model.texture_image(t)
            if image is None or not isinstance(tex, dict):
                continue
            s = tex.get("sampler")
            ok = isinstance(s, int) and 0 <= s < len(samplers) and isinstance(samplers[s], dict)
            sampler = samplers[s] if ok else {}  # glTF 2.0: no sampler or no wrap means repeat
            wrap = tuple(
                w if w in WRAP_MODES else REPEAT
                for w in (sampler.get("wrapS", REPEAT), sampler.get("wrapT", REPEAT))
            )
            wraps.setdefault(id(model.images[image]), wrap)
    return wraps


def _to_trimesh(g: Geometry, positions: np.ndarray, meta: dict, images: dict, wraps: dict):
    import trimesh

    fid = g.feature_ids
    material = g.material.name if g.material is not None else ""
    meta = {**meta, "feature_ids": fid, "source": g.source, "material": material}
    if g.kind == "points":
        colors = g.colors if g.colors is not None else None
        pc = trimesh.PointCloud(positions, colors=colors)
        pc.metadata.update(meta)
        return pc
    faces = g.faces
    meta["face_feature_ids"] = None if fid is None else fid[faces[:, 0]]
    mesh = trimesh.Trimesh(vertices=positions, faces=faces, process=False, validate=False)
    mat = g.material
    base = np.ones(4) if mat is None else mat.base_color
    if g.image is not None and g.uv is not None:
        key = id(g.image)
        if key not in images:
            images[key] = g.image.pil()
        img = images[key]
        if img is not None:
            uv = g.uv.copy()
            uv[:, 1] = 1.0 - uv[:, 1]  # glTF v runs down the image, trimesh's up
            material = trimesh.visual.material.PBRMaterial(
                baseColorTexture=img,
                baseColorFactor=np.clip(np.rint(base * 255), 0, 255).astype(np.uint8),
                doubleSided=bool(mat.double_sided) if mat else False,
            )
            visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
            if g.colors is not None:
                visual.vertex_attributes["color"] = g.colors
            mesh.visual = visual
            meta["texture_wrap"] = wraps.get(id(g.image), (REPEAT, REPEAT))
        else:
            meta["texture_skipped"] = f"{g.image.format} texture not decoded"
    elif g.colors is not None:
        mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=g.colors)
    else:
        color = np.clip(np.rint(base * 255), 0, 255).astype(np.uint8)
        mesh.visual = trimesh.visual.ColorVisuals(mesh, face_colors=np.tile(color, (len(faces), 1)))
    mesh.metadata.update(meta)
    return mesh


def content_meshes(
    tileset: Tileset,
    tile: Tile,
    content: Content,
    frame: Any = "ecef",
    *,
    _resolved=None,
    uri: str = "",
) -> list:
    """Meshes/point clouds of one parsed content of `tile`, in `frame`."""
    name, m_frame, lf = _resolved or _resolve_frame(frame, [tile])
    world = tile.transform
    m = world if m_frame is None else m_frame @ world
    # the property tables are decoded once: the first is the content's properties (unless a batch
    # table gives them), each primitive's feature ids may name another (e.g. trees beside buildings)
    with malformed(content.name, "feature properties"):
        tables = content.gltf.property_tables() if content.gltf is not None else []
    props = tables[0] if tables and content.batch_table is None else content.properties()
    meta: dict[str, Any] = {
        "tile": tile.address,
        "content": uri or content.name,
        "frame": name,
        "properties": props,
        "n_features": content.n_features,
    }
    if lf is not None:
        meta["origin"] = {"lon": lf.lon, "lat": lf.lat, "h_ellipsoidal": lf.h}
    images: dict = {}
    wraps = _texture_wraps(content)
    out = []
    for g in content.geometry(m):
        g_meta = meta
        if 0 < g.property_table < len(tables):
            g_meta = {**meta, "properties": tables[g.property_table]}
        pos = g.positions
        if m_frame is None:
            from twin.geo import ecef_to_utm
            from twin.tiles.bounds import geo_call

            x, y, h = geo_call(ecef_to_utm, pos[:, 0], pos[:, 1], pos[:, 2])
            pos = np.stack([x, y, h], axis=1)
        out.append(_to_trimesh(g, pos, g_meta, images, wraps))
    return out


def tile_meshes(tileset: Tileset, tiles: Iterable[Tile] | None = None, frame: Any = "ecef") -> list:
    """Meshes and point clouds of the given tiles' contents (default: every tile), in `frame`.

    `tiles` may be a traversal Selection. Unreadable contents raise DataError.
    """
    tiles = tileset.tiles() if tiles is None else list(tiles)
    resolved = _resolve_frame(frame, tiles)
    out = []
    for t in tiles:
        if t.is_external:
            continue
        for ref in t.contents:
            content = tileset.read_content(ref)
            out.extend(content_meshes(tileset, t, content, frame, _resolved=resolved, uri=ref.uri))
    return out


def to_scene(meshes: list):
    """A trimesh.Scene holding the meshes (e.g. to export GLB)."""
    import trimesh

    scene = trimesh.Scene()
    for k, m in enumerate(meshes):
        scene.add_geometry(m, geom_name=f"{k}")
    return scene


def to_pyvista(meshes: list):
    """A pyvista.MultiBlock with one block per mesh or point cloud (feature ids as point data)."""
    import pyvista as pv

    blocks = pv.MultiBlock()
    for k, m in enumerate(meshes):
        if hasattr(m, "faces"):
            poly = pv.PolyData.from_regular_faces(np.asarray(m.vertices), np.asarray(m.faces))
            uv = getattr(m.visual, "uv", None)
            if uv is not None:
                poly.active_texture_coordinates = np.asarray(uv)
        else:
            poly = pv.PolyData(np.asarray(m.vertices))
        fid = m.metadata.get("feature_ids")
        if fid is not None and len(fid) == poly.n_points:
            poly.point_data["feature_id"] = fid
        blocks.append(poly, f"{k}")
    return blocks
