"""A station scene as a one-tile OGC 3D Tiles 1.1 tileset for Cesium-based and VR viewers, and its
vehicle tracks as the web viewer's vehicles JSON (twin/viewer/README.md), both placed on the globe.

The tile's content is the scene's own GLB (twin.scenes.export_glb.encode_scene: y-up, as 3D Tiles
expects of glTF), so the tileset shows exactly what the AR package shows. The root tile's `transform`
takes the scene frame (ENU metres at the anchor, +y turned `heading_deg` clockwise from north) to
EPSG:4978; the anchor's height is DHHN2016 as the composer gives it, made ellipsoidal with
twin.geo.GEOID_HEIGHT_M. Its bounding volume is a box in that frame holding every vertex, vehicles
along their whole tracks included.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from twin.geo import CRS_ECEF, GEOID_HEIGHT_M, LocalFrame
from twin.scenes.export_glb import encode_scene
from twin.scenes.scene import Anchor, ExportInfo, Scene, Track, validate

TILESET_JSON = "tileset.json"
CONTENT_DIR = "content"
FORMAT = "3dtiles"
VEHICLES_FORMAT = "vehicles-json"
GENERATOR = "krefeld-twin scene exporter"
BOX_PAD_M = 0.5  # the bounding box beyond the outermost vertex


def anchor_frame(anchor: Anchor) -> LocalFrame:
    """The ENU frame at the anchor (its DHHN2016 height made ellipsoidal)."""
    return LocalFrame(anchor.lon, anchor.lat, anchor.height + GEOID_HEIGHT_M)


def scene_to_enu(anchor: Anchor) -> np.ndarray:
    """3x3 rotation from the scene frame (+y at `heading_deg` clockwise from north) to true ENU."""
    a = math.radians(anchor.heading_deg)
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]])


def scene_to_ecef_matrix(anchor: Anchor) -> np.ndarray:
    """4x4 row-major matrix M with ECEF = M @ [x, y, z, 1] for scene-frame points."""
    m = anchor_frame(anchor).enu_to_ecef_matrix()
    m[:3, :3] = m[:3, :3] @ scene_to_enu(anchor)
    return m


def scene_to_ecef(anchor: Anchor, points: np.ndarray) -> np.ndarray:
    """Scene-frame points (N, 3) to EPSG:4978 (N, 3), metres."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    m = scene_to_ecef_matrix(anchor)
    return p @ m[:3, :3].T + m[:3, 3]


def _rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vector v (3,) rotated by each unit quaternion of q (K, 4: x, y, z, w) -> (K, 3)."""
    u, w = q[:, :3], q[:, 3:4]
    t = 2.0 * np.cross(u, np.broadcast_to(v, u.shape))
    return v + w * t + np.cross(u, t)


def scene_extent(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Min and max corner (scene frame) of every vertex, animated nodes over all their keyframes."""
    tracks = {t.node: t for t in scene.animations}
    lo, hi = [], []
    for n in scene.nodes:
        v = np.asarray(n.vertices, dtype=np.float64)
        t = tracks.get(n.name)
        if t is not None:  # the node around its own origin: any turn, anywhere on its track
            r = float(np.linalg.norm(v, axis=1).max())
            tr = np.asarray(t.translations, dtype=np.float64)
            lo.append(tr.min(axis=0) - r)
            hi.append(tr.max(axis=0) + r)
        else:
            lo.append(v.min(axis=0))
            hi.append(v.max(axis=0))
    return np.min(lo, axis=0) - BOX_PAD_M, np.max(hi, axis=0) + BOX_PAD_M


def tileset_dict(scene: Scene, content_uri: str) -> dict[str, Any]:
    """tileset.json of the one-tile tileset whose content (the scene's GLB) is at `content_uri`."""
    lo, hi = scene_extent(scene)
    centre, half = (lo + hi) / 2, (hi - lo) / 2
    box = [*map(float, centre), float(half[0]), 0.0, 0.0, 0.0, float(half[1]), 0.0]
    box += [0.0, 0.0, float(half[2])]
    frame = anchor_frame(scene.anchor)
    return {
        "asset": {"version": "1.1", "generator": GENERATOR},
        "geometricError": float(np.linalg.norm(half)),  # not drawn at all: the scene's radius
        "root": {
            "transform": [float(v) for v in scene_to_ecef_matrix(scene.anchor).flatten(order="F")],
            "boundingVolume": {"box": box},
            "geometricError": 0.0,  # a leaf: the scene in full
            "refine": "REPLACE",
            "content": {"uri": content_uri},
        },
        "extras": {
            "scene": scene.name,
            "anchor": {
                **scene.anchor.as_dict(),
                "height_reference": "DHHN2016",
                "h_ellipsoidal": frame.h,
                "geoid_height_m": GEOID_HEIGHT_M,
                "ecef": [float(v) for v in frame.origin_ecef],
            },
            "frame": "root transform: scene ENU metres (+y at heading_deg from north) -> EPSG:4978",
            "sources": list(scene.sources),
            "runs": list(scene.runs),
        },
    }


def _swap_in(tmp: Path, folder: Path) -> None:
    """Rename a finished temporary folder into place, replacing an older one."""
    old = folder.parent / f".{folder.name}.old-{os.getpid()}"
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def write_tileset(scene: Scene, folder: Path, glb: ExportInfo | None = None) -> ExportInfo:
    """Write the scene as a 3D Tiles 1.1 tileset: <folder>/tileset.json and content/<name>.glb,
    atomically (a temporary folder beside it, renamed when complete). `glb`, the info of this
    scene's GLB already written, gives the content as it is; else the scene is encoded. The info's
    path is the tileset.json; its bytes are the whole folder's."""
    folder = Path(folder)
    validate(scene)
    if glb is not None and glb.format == "glb":
        data, textures = Path(glb.path).read_bytes(), list(glb.textures)
    else:
        data, textures = encode_scene(scene)
    uri = f"{CONTENT_DIR}/{scene.name}.glb"
    tileset = tileset_dict(scene, uri)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (tmp / CONTENT_DIR).mkdir(parents=True)
        (tmp / uri).write_bytes(data)
        text = json.dumps(tileset, indent=1, ensure_ascii=False) + "\n"
        (tmp / TILESET_JSON).write_text(text, encoding="utf-8")
        _swap_in(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportInfo(
        path=str(folder / TILESET_JSON),
        format=FORMAT,
        bytes=folder_bytes(folder),
        triangles=scene.triangles,
        vertices=sum(len(n.vertices) for n in scene.nodes),
        textures=textures,
    )


def folder_bytes(folder: Path) -> int:
    """Total size of the files under a folder."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


# -- vehicles JSON ----------------------------------------------------------------------------------


def _vehicle_class(scene: Scene, node: str) -> str:
    """The SUMO class of a vehicle node, from its material (`vehicle_<class>`), else passenger."""
    n = next(n for n in scene.nodes if n.name == node)
    return (
        n.material.name.removeprefix("vehicle_")
        if n.material.name.startswith("vehicle_")
        else "passenger"
    )


def vehicle_entry(scene: Scene, track: Track) -> dict[str, Any]:
    """One vehicle of the viewer's JSON: id, class, times, EPSG:4978 positions of the middle of its
    footprint (the node's box bottom centre carried along the track) and headings."""
    node = next(n for n in scene.nodes if n.name == track.node)
    v = np.asarray(node.vertices, dtype=np.float64)
    lo, hi = v.min(axis=0), v.max(axis=0)
    foot = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    q = np.asarray(track.rotations, dtype=np.float64)
    pos = np.asarray(track.translations, dtype=np.float64) + _rotate(q, foot)
    ahead = _rotate(q, np.array([0.0, 1.0, 0.0])) @ scene_to_enu(scene.anchor).T
    heading = np.degrees(np.arctan2(ahead[:, 0], ahead[:, 1])) % 360.0
    ecef = scene_to_ecef(scene.anchor, pos)
    return {
        "id": track.node.removeprefix("vehicle_"),
        "class": _vehicle_class(scene, track.node),
        "t": [round(float(t), 6) for t in track.times],
        "p": [[round(float(c), 3) for c in p] for p in ecef],
        "heading_deg": [round(float(h), 3) for h in heading],
    }


def vehicles_dict(scene: Scene) -> dict[str, Any]:
    """The viewer's vehicles JSON of the scene's vehicle tracks (twin/viewer/README.md)."""
    kinds = {n.name: n.kind for n in scene.nodes}
    tracks = [t for t in scene.animations if kinds.get(t.node) == "vehicle"]
    return {"frame": CRS_ECEF, "vehicles": [vehicle_entry(scene, t) for t in tracks]}


def write_vehicles(scene: Scene, path: Path) -> ExportInfo:
    """Write the scene's vehicle tracks as the viewer's vehicles JSON, atomically."""
    path = Path(path)
    validate(scene)
    text = json.dumps(vehicles_dict(scene), separators=(",", ":")) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return ExportInfo(str(path), VEHICLES_FORMAT, path.stat().st_size, 0, 0, [])
