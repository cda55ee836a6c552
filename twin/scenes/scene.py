"""The in-memory scene an AR/VR station gets: meshes in a local east-north-up frame around a geo-anchor,
PBR materials, vehicle animation tracks, and what the scene was made from (sources, runs).

Plain numpy arrays in dataclasses, so the composer fills them and the exporters (GLB, USDZ) read them
without either knowing the other. Both export formats are y-up; the one ENU -> y-up conversion is here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from twin.errors import DataError
from twin.geo import GEOID_HEIGHT_M
from twin.tiles.write_glb import ENU_TO_GLTF, enu_to_gltf

ANCHOR_FRAME = "ENU metres, glTF Y-up"


@dataclass(frozen=True)
class Anchor:
    """Where the scene's origin is on Earth: WGS84 degrees, ``height`` in metres above sea level
    (DHHN2016, as the city's heights), and the heading (degrees clockwise from north) of its +north
    axis. Its dict also gives the height above the WGS84 ellipsoid, which a globe viewer needs."""

    lat: float
    lon: float
    height: float
    heading_deg: float = 0.0

    def as_dict(self) -> dict[str, float | str]:
        return {
            "lat": float(self.lat),
            "lon": float(self.lon),
            "height": float(self.height),
            "height_datum": "DHHN2016 (above sea level)",
            "height_ellipsoid": float(self.height) + GEOID_HEIGHT_M,
            "heading_deg": float(self.heading_deg),
            "frame": ANCHOR_FRAME,
        }


@dataclass
class Material:
    """Metallic-roughness PBR material; `texture` (H, W, 3|4 uint8, row 0 at the top) multiplies
    `base_color` (linear RGBA 0..1). Materials with the same name must be the same object."""

    name: str
    base_color: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    metallic: float = 0.0
    roughness: float = 0.9
    texture: np.ndarray | None = None


@dataclass
class MeshNode:
    """Triangles in metres, east-north-up around the anchor (an animated node: around its own origin,
    which its track places). `uv` (N, 2) per vertex, u to the right and v up from the image's bottom
    row (USD's st; the GLB writer flips v for glTF), needed when the material has a texture."""

    name: str
    vertices: np.ndarray  # (N, 3) float64 ENU metres
    faces: np.ndarray  # (M, 3) int
    material: Material
    kind: str = "building"  # "building", "street", "tree", "vehicle", ...
    uv: np.ndarray | None = None  # (N, 2) float

    @property
    def triangles(self) -> int:
        return int(len(self.faces))


@dataclass
class Track:
    """Keyframes of one node: times (K,) seconds, strictly increasing; translations (K, 3) ENU metres;
    rotations (K, 4) unit quaternions x, y, z, w in the ENU frame."""

    node: str
    times: np.ndarray
    translations: np.ndarray
    rotations: np.ndarray


@dataclass
class Scene:
    """One station's scene: anchor, meshes, animations and provenance (data sources, run folders)."""

    name: str
    anchor: Anchor
    nodes: list[MeshNode]
    animations: list[Track] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)

    @property
    def triangles(self) -> int:
        return sum(n.triangles for n in self.nodes)

    def materials(self) -> list[Material]:
        """Distinct materials in node order."""
        seen: dict[str, Material] = {}
        for n in self.nodes:
            seen.setdefault(n.material.name, n.material)
        return list(seen.values())


@dataclass
class ExportInfo:
    """What one exporter wrote: the file, its format and size, and its content counts."""

    path: str
    format: str  # "glb" or "usdz"
    bytes: int
    triangles: int
    vertices: int
    textures: list[dict[str, int | str]]  # {"material", "width", "height"}


def enu_to_yup(points: np.ndarray) -> np.ndarray:
    """ENU (x east, y north, z up) vectors to the y-up frame of glTF and the USDZ stage (x east, y up,
    z south): (e, n, u) -> (e, u, -n). A vertex 10 m north ends at z = -10."""
    return enu_to_gltf(np.asarray(points, dtype=np.float64))


def enu_quat_to_yup(q: np.ndarray) -> np.ndarray:
    """Quaternions (K, 4) x, y, z, w of ENU rotations to the same rotations in the y-up frame: the
    axis turns like a vector (the change of frame is a proper rotation), the angle stays."""
    q = np.asarray(q, dtype=np.float64).reshape(-1, 4)
    return np.column_stack([q[:, :3] @ ENU_TO_GLTF.T, q[:, 3]])


def validate(scene: Scene) -> None:
    """Shapes, indices, names and tracks consistent; raises DataError naming the node and field."""
    names = [n.name for n in scene.nodes]
    if len(set(names)) != len(names):
        raise DataError(f"scene {scene.name!r}: node names must be unique, got {names}")
    mats: dict[str, Material] = {}
    for n in scene.nodes:
        where = f"scene {scene.name!r}, node {n.name!r}"
        v, f = np.asarray(n.vertices), np.asarray(n.faces)
        if v.ndim != 2 or v.shape[1] != 3 or not len(v):
            raise DataError(f"{where}: vertices must be (N, 3), got {v.shape}")
        if not np.isfinite(v).all():
            raise DataError(f"{where}: vertices must be finite")
        if f.ndim != 2 or f.shape[1] != 3 or not len(f):
            raise DataError(f"{where}: faces must be (M, 3), got {f.shape}")
        if f.min() < 0 or f.max() >= len(v):
            raise DataError(f"{where}: faces must index 0..{len(v) - 1}")
        m = n.material
        if mats.setdefault(m.name, m) is not m:
            raise DataError(f"{where}: two different materials are named {m.name!r}")
        if m.texture is not None:
            t = np.asarray(m.texture)
            if t.dtype != np.uint8 or t.ndim != 3 or t.shape[2] not in (3, 4):
                raise DataError(f"{where}: material texture must be (H, W, 3|4) uint8")
            if n.uv is None or np.asarray(n.uv).shape != (len(v), 2):
                raise DataError(f"{where}: a textured material needs uv of shape ({len(v)}, 2)")
    for t in scene.animations:
        where = f"scene {scene.name!r}, track of {t.node!r}"
        if t.node not in names:
            raise DataError(f"{where}: no node of that name")
        k = len(t.times)
        if k < 1 or np.asarray(t.translations).shape != (k, 3):
            raise DataError(f"{where}: translations must be ({k}, 3)")
        if np.asarray(t.rotations).shape != (k, 4):
            raise DataError(f"{where}: rotations must be ({k}, 4) quaternions x, y, z, w")
        if k > 1 and not (np.diff(t.times) > 0).all():
            raise DataError(f"{where}: times must increase strictly")
        if not np.allclose(np.linalg.norm(t.rotations, axis=1), 1.0, atol=1e-6):
            raise DataError(f"{where}: rotations must be unit quaternions")
