"""Compose an AR station's scene from the built city: the 3D Tiles clipped around the anchor, the
redesigned street cross-section laid along the real street axis, optional vehicles of a traffic run
moving along their FCD trajectories, and an optional raster draped on the ground with a legend.

Everything is in the station's east-north-up frame: origin at the anchor on the ground (DHHN2016
height of the station file), +y true north. `export` writes <name>.glb, <name>.usdz, a 3D Tiles 1.1
tileset (tiles/tileset.json), the web viewer's vehicles.json (with traffic), before/after PNG
previews and manifest.json into <out>/<name>/.
"""

from __future__ import annotations

import gzip
import json
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import shapely
import trimesh
from PIL import Image, ImageDraw
from shapely.geometry import LineString, Point

from twin.city.boulevards import Band, Section, _offset, band_offsets, oriented, street_centre_lines
from twin.errors import DataError
from twin.geo import GEOID_HEIGHT_M, LocalFrame, wgs84_to_utm
from twin.runs import finished_run, run_folder_of
from twin.scenes.budget import MOBILE_AR, Budget, fit
from twin.scenes.export_glb import write_glb
from twin.scenes.export_tiles import write_tileset, write_vehicles
from twin.scenes.export_usdz import write_usdz
from twin.scenes.manifest import write_manifest
from twin.scenes.render import layer_of
from twin.scenes.scene import Anchor, ExportInfo, Material, MeshNode, Scene, Track
from twin.scenes.station import Station

TILESET = "tiles/tileset.json"
SCENE_TILES = "tiles"  # the exported scene's tileset folder
VEHICLES_JSON = "vehicles.json"
REDESIGN_LIFT_M = 0.05  # strips this far above the terrain, so they win the depth test
OVERLAY_LIFT_M = 0.15  # the draped raster above the strips
SAMPLE_STEP_M = 2.0  # along-axis step of the strips' edges
TRAFFIC_SECONDS = 60.0
TRAFFIC_STEP_S = 1.0
MAX_VEHICLES = 150

# band kind -> colour (linear RGB) of its strip
BAND_COLOURS: dict[str, tuple[float, float, float]] = {
    "sidewalk": (0.55, 0.53, 0.50),
    "bike_path": (0.55, 0.16, 0.12),
    "parking": (0.30, 0.30, 0.33),
    "carriageway": (0.12, 0.12, 0.13),
    "tram": (0.42, 0.38, 0.32),
    "promenade": (0.66, 0.58, 0.42),
    "tree_row": (0.22, 0.40, 0.16),
    "median": (0.26, 0.50, 0.20),
}
BENCH_KINDS = ("sidewalk", "promenade")


@dataclass(frozen=True)
class Placement:
    """The station's anchor in EPSG:25832 (x, y, DHHN2016 height) and its ENU frame."""

    x: float
    y: float
    height: float
    frame: LocalFrame

    @classmethod
    def of(cls, st: Station) -> Placement:
        x, y = (float(v) for v in wgs84_to_utm(st.lon, st.lat))
        return cls(x, y, st.height, LocalFrame(st.lon, st.lat, st.height + GEOID_HEIGHT_M))

    def enu(self, x: np.ndarray, y: np.ndarray, h: np.ndarray) -> np.ndarray:
        return self.frame.utm_to_enu(np.asarray(x), np.asarray(y), np.asarray(h))


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise DataError(f"{path}: no {what} there; build the city with `twin data build`")
    return path


# -- terrain ----------------------------------------------------------------------------------------


class Terrain:
    """Bilinear heights (m a.s.l.) of terrain.tif at EPSG:25832 points (the edge cell outside)."""

    def __init__(self, path: Path) -> None:
        import rasterio

        try:
            with rasterio.open(_need(path, "terrain")) as src:
                self.z = src.read(1).astype(np.float64)
                if src.nodata is not None:
                    self.z[self.z == src.nodata] = np.nan
                self.inv = ~src.transform
        except rasterio.errors.RasterioIOError as exc:
            raise DataError(f"{path}: cannot read the terrain: {exc}") from exc
        fill = np.nanmean(self.z) if np.isfinite(self.z).any() else 0.0
        self.z = np.where(np.isfinite(self.z), self.z, fill)

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        x, y, t = np.asarray(x, float), np.asarray(y, float), self.inv
        c = t.a * x + t.b * y + t.c - 0.5  # from cell centres
        r = t.d * x + t.e * y + t.f - 0.5
        h, w = self.z.shape
        c0 = np.clip(np.floor(c).astype(int), 0, w - 2)
        r0 = np.clip(np.floor(r).astype(int), 0, h - 2)
        fc, fr = np.clip(c - c0, 0, 1), np.clip(r - r0, 0, 1)
        z = self.z
        top = z[r0, c0] * (1 - fc) + z[r0, c0 + 1] * fc
        bottom = z[r0 + 1, c0] * (1 - fc) + z[r0 + 1, c0 + 1] * fc
        return top * (1 - fr) + bottom * fr


# -- city from the tiles ----------------------------------------------------------------------------


def _compact(v: np.ndarray, faces: np.ndarray, uv: np.ndarray | None):
    used, inverse = np.unique(faces.reshape(-1), return_inverse=True)
    return v[used], inverse.reshape(-1, 3), None if uv is None else uv[used]


def _tile_material(mesh: Any, name: str) -> tuple[Material, np.ndarray | None]:
    """The scene material of a tile mesh (its texture as RGB, or its colour) and its uv."""
    visual = mesh.visual
    material = getattr(visual, "material", None)
    image = getattr(material, "baseColorTexture", None)
    if image is not None and getattr(visual, "uv", None) is not None:
        base = getattr(material, "baseColorFactor", None)
        color = (1.0, 1.0, 1.0, 1.0)
        if base is not None:
            color = (*(float(c) / 255.0 for c in np.asarray(base)[:3]), 1.0)
        tex = np.asarray(image.convert("RGB"), dtype=np.uint8)
        return Material(name, color, texture=tex), np.asarray(visual.uv, dtype=np.float64)
    if visual.kind == "vertex":
        rgb = np.asarray(visual.vertex_colors)[:, :3].mean(axis=0) / 255.0
    else:
        rgb = np.asarray(visual.face_colors)[:, :3].mean(axis=0) / 255.0
    return Material(name, (*(float(c) for c in rgb), 1.0)), None


def clip_city(
    tileset: Path,
    place: Placement,
    radius: float,
    layers: tuple[str, ...] = ("ground", "buildings", "trees"),
    exclude: Any = None,
) -> list[MeshNode]:
    """The finest tiles around the anchor as scene nodes in its ENU frame: ground triangles wholly
    inside the radius, buildings and trees whose vertex centroid is inside (kept whole); trees whose
    centroid falls in `exclude` (a shapely polygon in ENU metres) are left out."""
    from twin.tiles import open_tileset, select_by_region, tile_meshes

    ts = open_tileset(_need(tileset, "tileset"))
    chosen = select_by_region(ts, ((place.x, place.y), float(radius)))
    meshes = [m for m in tile_meshes(ts, chosen, place.frame) if hasattr(m, "faces")]
    nodes: list[MeshNode] = []
    if exclude is not None:
        shapely.prepare(exclude)
    for k, m in enumerate(meshes):
        layer = layer_of(m)
        if layer not in layers or not len(m.faces):
            continue
        v, f = np.asarray(m.vertices, dtype=np.float64), np.asarray(m.faces)
        if layer == "ground":
            keep = (np.hypot(v[:, 0], v[:, 1]) <= radius)[f].all(axis=1)
        else:
            fid = np.asarray(m.metadata.get("feature_ids"))
            ids, inv = np.unique(fid, return_inverse=True)
            cx = np.bincount(inv, weights=v[:, 0]) / np.bincount(inv)
            cy = np.bincount(inv, weights=v[:, 1]) / np.bincount(inv)
            inside = np.hypot(cx, cy) <= radius
            if layer == "trees" and exclude is not None:
                inside &= ~shapely.contains_xy(exclude, cx, cy)
            keep = inside[inv[f[:, 0]]]
        if not keep.any():
            continue
        kind = {"ground": "ground", "buildings": "building", "trees": "tree"}[layer]
        mat_name = f"{kind}_{m.metadata.get('material') or 'mesh'}_{k:02d}"
        material, uv = _tile_material(m, mat_name)
        vv, ff, uu = _compact(v, f[keep], uv)
        nodes.append(MeshNode(f"city_{mat_name}", vv, ff, material, kind=kind, uv=uu))
    return nodes


# -- the street axis and the redesign ---------------------------------------------------------------


def street_axis(streets: Path, street: str, place: Placement, radius: float) -> LineString:
    """The centre line of `street` (streets.gpkg) inside the radius around the anchor: the merged
    way nearest the anchor, clipped to the circle (the piece through or nearest the anchor)."""
    meta, _, wkb, values = pyogrio.raw.read(_need(streets, "streets"), layer="streets")
    cols = dict(zip(meta["fields"], values, strict=True))
    table = {
        "name": np.asarray(cols["name"], dtype=object),
        "highway": np.asarray(cols["highway"], dtype=object),
        "geometry": shapely.from_wkb(wkb),
    }
    table["name"] = np.where(table["name"] == None, "", table["name"])  # noqa: E711
    table["highway"] = np.where(table["highway"] == None, "", table["highway"])  # noqa: E711
    lines = street_centre_lines(table, street)
    if not lines:
        raise DataError(f"{streets}: no street named {street!r} (station 'street')")
    anchor = Point(place.x, place.y)
    line = min(lines, key=anchor.distance)
    if line.distance(anchor) > radius:
        raise DataError(
            f"{streets}: street {street!r} is {line.distance(anchor):.0f} m from the station's "
            f"anchor, outside its radius of {radius:g} m"
        )
    inside = line.intersection(anchor.buffer(radius, quad_segs=64))
    parts = [p for p in shapely.get_parts(shapely.line_merge(inside)) if p.length > 0]
    return min(parts, key=anchor.distance)


def section_for(st: Station, bands_gpkg: Path, axis: LineString) -> Section:
    """The station's cross-section: its own bands, else the pack's section of its street as the
    boulevards product holds it; compass order from the axis' course (north-south: west first)."""
    (x0, y0), (x1, y1) = axis.coords[0], axis.coords[-1]
    order = "west_to_east" if abs(y1 - y0) >= abs(x1 - x0) else "south_to_north"
    if st.bands is not None:
        bands = tuple(Band(k, w) for k, w in st.bands)
        return Section(st.street, order, bands, "illustrative", st.redesign_source)
    meta, _, _, values = pyogrio.raw.read(_need(bands_gpkg, "boulevards"), layer="boulevards")
    cols = dict(zip(meta["fields"], values, strict=True))
    sel = (np.asarray(cols["street"], dtype=object) == st.street) & (np.asarray(cols["band"]) >= 0)
    if not sel.any():
        raise DataError(
            f"{bands_gpkg}: no cross-section for {st.street!r}; give 'redesign.bands' in {st.path}"
        )
    rows = sorted(
        zip(
            np.asarray(cols["band"])[sel],
            np.asarray(cols["kind"], dtype=object)[sel],
            np.asarray(cols["width"])[sel],
            strict=True,
        )  # fmt: skip
    )
    bands = tuple(Band(str(k), float(w)) for _, k, w in rows)
    return Section(st.street, order, bands, "pack", f"{bands_gpkg.name}: {st.street}")


def _along(line: LineString, step: float) -> np.ndarray:
    """Normalised positions 0..1 every ~step metres along a line, both ends included."""
    n = max(2, math.ceil(line.length / step) + 1)
    return np.linspace(0.0, 1.0, n)


def _points(line: LineString, fractions: np.ndarray) -> np.ndarray:
    return shapely.get_coordinates(shapely.line_interpolate_point(line, fractions, normalized=True))


def band_lines(
    axis: LineString, section: Section
) -> list[tuple[str, LineString, LineString, float]]:
    """(kind, left edge, right edge, centre offset) per band: offset curves of the oriented axis
    (shapely offset_curve, mitred), so each band follows the street's bends."""
    line = oriented(axis, section)
    return [
        (kind, _offset(line, left), _offset(line, right), (left + right) / 2)
        for kind, left, right in band_offsets(section)
    ]


def _strip(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (L0, R0, L1, R1, ...) and up-facing triangles of a strip between two edges."""
    n = len(left)
    v = np.empty((2 * n, left.shape[1]))
    v[0::2], v[1::2] = left, right
    i = 2 * np.arange(n - 1)
    faces = np.concatenate(
        [np.column_stack([i, i + 1, i + 2]), np.column_stack([i + 1, i + 3, i + 2])]
    )
    return v, faces


def _stations_along(
    line: LineString, spacing: float, phase: float
) -> tuple[np.ndarray, np.ndarray]:
    """Points every `spacing` m along a line (starting at phase * spacing) and unit directions."""
    d = np.arange(phase * spacing, line.length, spacing)
    if not len(d):
        return np.zeros((0, 2)), np.zeros((0, 2))
    p = shapely.get_coordinates(shapely.line_interpolate_point(line, d))
    a = shapely.get_coordinates(shapely.line_interpolate_point(line, np.maximum(d - 0.5, 0)))
    b = shapely.get_coordinates(shapely.line_interpolate_point(line, d + 0.5))
    t = b - a
    return p, t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-9)


def _merged(parts: list[trimesh.Trimesh]) -> tuple[np.ndarray, np.ndarray]:
    m = trimesh.util.concatenate(parts)
    return np.asarray(m.vertices, dtype=np.float64), np.asarray(m.faces)


def redesign_nodes(
    st: Station, section: Section, axis: LineString, place: Placement, terrain: Terrain
) -> list[MeshNode]:
    """Flat strips per band 5 cm above the terrain, trees on tree rows, benches on sidewalks and
    promenades, all along the real axis (EPSG:25832 in, station ENU out)."""
    fractions = _along(axis, SAMPLE_STEP_M)
    nodes: list[MeshNode] = []
    trunks: list[trimesh.Trimesh] = []
    crowns: list[trimesh.Trimesh] = []
    benches: list[trimesh.Trimesh] = []
    materials: dict[str, Material] = {}
    for i, (kind, left, right, centre) in enumerate(band_lines(axis, section)):
        edges = np.concatenate([_points(left, fractions), _points(right, fractions)])
        h = terrain(edges[:, 0], edges[:, 1]) + REDESIGN_LIFT_M
        enu = place.enu(edges[:, 0], edges[:, 1], h)
        n = len(fractions)
        v, f = _strip(enu[:n], enu[n:])
        colour = (*BAND_COLOURS.get(kind, (0.5, 0.5, 0.5)), 1.0)
        mat = materials.setdefault(kind, Material(f"redesign_{kind}", colour, roughness=0.95))
        nodes.append(MeshNode(f"redesign_{i:02d}_{kind}", v, f, mat, kind="redesign"))
        mid = _offset(oriented(axis, section), centre)
        if kind == "tree_row":
            pts, _ = _stations_along(mid, st.tree_spacing, 0.5)
            for (x, y), z in zip(pts, terrain(pts[:, 0], pts[:, 1]), strict=True):
                (e, nn, u) = place.enu(x, y, z)
                trunk = trimesh.creation.box(extents=(0.35, 0.35, 2.6))
                trunk.apply_translation((e, nn, u + 1.3))
                crown = trimesh.creation.icosphere(subdivisions=1, radius=2.4)
                crown.apply_translation((e, nn, u + 4.8))
                trunks.append(trunk)
                crowns.append(crown)
        elif kind in BENCH_KINDS and st.bench_spacing > 0:
            pts, dirs = _stations_along(mid, st.bench_spacing, 0.25)
            for (x, y), (dx, dy), z in zip(pts, dirs, terrain(pts[:, 0], pts[:, 1]), strict=True):
                (e, nn, u) = place.enu(x, y, z)
                bench = trimesh.creation.box(extents=(1.8, 0.5, 0.45))
                bench.apply_transform(
                    trimesh.transformations.rotation_matrix(math.atan2(dy, dx), (0, 0, 1))
                )
                bench.apply_translation((e, nn, u + 0.225))
                benches.append(bench)
    extra = [
        (
            "redesign_tree_trunks",
            trunks,
            Material("redesign_trunk", (0.30, 0.20, 0.12, 1.0)),
            "tree",
        ),
        (
            "redesign_tree_crowns",
            crowns,
            Material("redesign_crown", (0.18, 0.42, 0.15, 1.0)),
            "tree",
        ),
        (
            "redesign_benches",
            benches,
            Material("redesign_bench", (0.45, 0.30, 0.18, 1.0)),
            "furniture",
        ),
    ]
    for name, parts, mat, kind in extra:
        if parts:
            v, f = _merged(parts)
            nodes.append(MeshNode(name, v, f, mat, kind=kind))
    return nodes


# -- traffic ----------------------------------------------------------------------------------------


def _yaw_quaternion(angle_deg: np.ndarray) -> np.ndarray:
    """x, y, z, w of a turn about up that points +y (north) along SUMO's angle (clockwise)."""
    half = -np.radians(np.asarray(angle_deg, float)) / 2
    return np.column_stack([np.zeros_like(half), np.zeros_like(half), np.sin(half), np.cos(half)])


def traffic_nodes(
    traffic: Path,
    place: Placement,
    radius: float,
    terrain: Terrain,
    *,
    start_s: float | None = None,
    seconds: float = TRAFFIC_SECONDS,
    step_s: float = TRAFFIC_STEP_S,
) -> tuple[list[MeshNode], list[Track], str]:
    """Boxes by class for the vehicles of a finished traffic run inside the radius, each with a track
    of its FCD positions (front bumper, on the terrain) every `step_s` for `seconds` from `start_s`
    (default: the first time step); returns nodes, tracks and the run's folder."""
    from twin.scenes.vehicles import _DEFAULT, FCD, SHAPES, _to_utm, run_folder_fcd

    folder = run_folder_fcd(traffic)
    try:
        net = Path(json.loads((folder.parent.parent / "plan.json").read_text("utf-8"))["net"])
        types = json.loads((folder / "vtypes.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{folder}: needs ../../plan.json (net) and vtypes.json: {exc}") from exc
    rows: list[tuple[float, str, str, float, float, float]] = []
    t0 = next_t = None
    try:
        with gzip.open(folder / FCD, "rb") as fh:
            for _, el in ET.iterparse(fh, events=("end",)):
                if el.tag != "timestep":
                    continue
                t = float(el.get("time", "nan"))
                if t0 is None and (start_s is None or t >= start_s - 1e-6):
                    t0 = next_t = t
                if t0 is not None and t > t0 + seconds + 1e-6:
                    break
                if next_t is not None and t >= next_t - 1e-6:
                    next_t = t + step_s
                    for v in el.iter("vehicle"):
                        a = v.attrib
                        rows.append((t, a["id"], a.get("type", ""), float(a["x"]),
                                     float(a["y"]), float(a.get("angle", 0.0))))  # fmt: skip
                el.clear()
    except (OSError, ET.ParseError, EOFError, ValueError, KeyError) as exc:
        raise DataError(f"{folder / FCD}: cannot read the FCD output: {exc}") from exc
    if not rows:
        return [], [], str(folder)
    t, ids, vt, x, y, ang = (np.asarray(c) for c in zip(*rows, strict=True))
    ux, uy = _to_utm(net)(x.astype(float), y.astype(float))
    inside = np.hypot(ux - place.x, uy - place.y) <= radius
    nodes, tracks = [], []
    materials: dict[str, Material] = {}
    for vid in sorted(set(ids[inside].tolist()))[:MAX_VEHICLES]:
        sel = (ids == vid) & inside
        vclass = types.get(str(vt[sel][0]), {}).get("vClass", "passenger")
        length, width, height, colour = SHAPES.get(vclass, _DEFAULT)
        mat = materials.setdefault(vclass, Material(f"vehicle_{vclass}", (*colour, 1.0), 0.3, 0.5))
        box = trimesh.creation.box(extents=(width, length, height))
        box.apply_translation((0.0, -length / 2, height / 2))  # the origin at the front bumper
        name = f"vehicle_{vid}"
        nodes.append(
            MeshNode(name, np.asarray(box.vertices), np.asarray(box.faces), mat, "vehicle")
        )
        px, py = ux[sel], uy[sel]
        pos = place.enu(px, py, terrain(px, py))
        tracks.append(
            Track(name, t[sel].astype(float) - float(t[0]), pos, _yaw_quaternion(ang[sel]))
        )
    return nodes, tracks, str(folder)


# -- overlay ----------------------------------------------------------------------------------------


def _colour_map(values: np.ndarray, vmin: float, vmax: float, cmap: str) -> np.ndarray:
    """RGBA uint8 of values through a matplotlib colour map; NaN transparent."""
    from matplotlib import colormaps

    span = vmax - vmin if vmax > vmin else 1.0
    rgba = colormaps[cmap](np.clip((values - vmin) / span, 0, 1))
    rgba[..., 3] = np.where(np.isfinite(values), 0.75, 0.0)
    return np.clip(np.rint(rgba * 255), 0, 255).astype(np.uint8)


def legend_image(title: str, vmin: float, vmax: float, cmap: str, units: str = "") -> np.ndarray:
    """A 256 x 128 legend: title, a colour bar and its end values."""
    img = Image.new("RGB", (256, 128), (250, 250, 250))
    draw = ImageDraw.Draw(img)
    bar = _colour_map(np.linspace(vmin, vmax, 216)[None, :].repeat(36, 0), vmin, vmax, cmap)
    img.paste(Image.fromarray(bar[..., :3]), (20, 44))
    draw.text((20, 12), title[:38], fill=(20, 20, 20))
    draw.text((20, 90), f"{vmin:.3g} {units}".strip(), fill=(20, 20, 20))
    right = f"{vmax:.3g} {units}".strip()
    draw.text((236 - 6 * len(right), 90), right, fill=(20, 20, 20))
    return np.asarray(img)


def overlay_nodes(
    raster: Path,
    place: Placement,
    radius: float,
    terrain: Terrain,
    *,
    cmap: str = "inferno",
    cell_m: float = 4.0,
) -> tuple[list[MeshNode], str]:
    """A raster (GeoTIFF in EPSG:25832, band 1) draped 15 cm above the terrain inside the radius as a
    textured grid, and a legend billboard (two-sided, 3 m above the anchor); returns the nodes and a
    line for the scene's sources naming the raster, its range and colour map."""
    import rasterio

    from twin.city.raster import values_at

    try:
        with rasterio.open(raster) as src:
            crs = src.crs.to_string() if src.crs else ""
            units = (src.units or ("",))[0] or ""
    except rasterio.errors.RasterioIOError as exc:
        raise DataError(f"{raster}: cannot read the overlay raster: {exc}") from exc
    if crs != "EPSG:25832":
        raise DataError(f"{raster}: overlay CRS is {crs or 'unset'}, expected EPSG:25832")
    n = max(2, math.ceil(2 * radius / cell_m))
    edge = np.linspace(-radius, radius, n + 1)
    gx, gy = np.meshgrid(edge, edge)  # grid corners, row 0 at the south
    cx = (edge[:-1] + edge[1:]) / 2
    ccx, ccy = np.meshgrid(cx, cx)
    vals = values_at(raster, place.x + ccx.ravel(), place.y + ccy.ravel()).reshape(n, n)
    finite = vals[np.isfinite(vals)]
    if not finite.size:
        raise DataError(f"{raster}: no values within {radius:g} m of the station")
    vmin, vmax = float(finite.min()), float(finite.max())
    texture = _colour_map(vals[::-1], vmin, vmax, cmap)  # image row 0 at the north
    x, y = place.x + gx.ravel(), place.y + gy.ravel()
    verts = place.enu(x, y, terrain(x, y) + OVERLAY_LIFT_M)
    uv = np.column_stack(
        [(gx.ravel() + radius) / (2 * radius), (gy.ravel() + radius) / (2 * radius)]
    )
    j, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    a = (j * (n + 1) + i).ravel()
    quads = np.column_stack([a, a + 1, a + n + 2, a + n + 1])
    inside = (np.hypot(gx.ravel(), gy.ravel()) <= radius)[quads].all(axis=1)
    quads = quads[inside & np.isfinite(vals.ravel())]
    if not len(quads):
        raise DataError(f"{raster}: no values within {radius:g} m of the station")
    faces = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    v, f, u = _compact(verts, faces, uv)
    mat = Material(f"overlay_{raster.stem}", texture=texture, roughness=1.0)
    nodes = [MeshNode(f"overlay_{raster.stem}", v, f, mat, kind="overlay", uv=u)]
    legend = Material("overlay_legend", texture=legend_image(raster.stem, vmin, vmax, cmap, units))
    w, h, z0 = 6.0, 3.0, 3.0
    quad = np.array([[-w / 2, 0, z0], [w / 2, 0, z0], [w / 2, 0, z0 + h], [-w / 2, 0, z0 + h]])
    back = quad[[1, 0, 3, 2]]
    lv = np.concatenate([quad, back])
    lf = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    luv = np.tile([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]], (2, 1))
    nodes.append(MeshNode("overlay_legend", lv, lf, legend, kind="legend", uv=luv))
    line = f"overlay: {raster} band 1, {vmin:.4g}..{vmax:.4g} {units}".rstrip() + f", {cmap}"
    return nodes, line


# -- the scene --------------------------------------------------------------------------------------


def street_space(axis: LineString, section: Section, place: Placement):
    """The redesigned street's footprint in station ENU metres (to leave the old trees out)."""
    edges = band_lines(axis, section)
    ring = np.concatenate([np.asarray(edges[0][1].coords), np.asarray(edges[-1][2].coords)[::-1]])
    enu = place.enu(ring[:, 0], ring[:, 1], np.zeros(len(ring)))
    return shapely.make_valid(shapely.Polygon(enu[:, :2]))


def compose(
    station: Station,
    products_dir: Path,
    *,
    traffic: Path | None = None,
    overlay: Path | None = None,
    redesign: bool = True,
) -> Scene:
    """The station's scene from a city build (`products_dir`: tiles/, streets.gpkg, boulevards.gpkg,
    terrain.tif): city clip, the redesign along the real axis (unless `redesign` is False: the city
    as it is), vehicles of a finished traffic run and a draped raster with its legend."""
    products_dir = Path(products_dir)
    place = Placement.of(station)
    terrain = Terrain(products_dir / "terrain.tif")
    sources = [
        f"anchor: WGS84 {station.lat:.5f}, {station.lon:.5f}, {station.height:.2f} m above sea "
        "level (DHHN2016), at ground level; scene frame ENU metres, +y true north",
        f"station: {Path(station.path).name}",
        f"city: {products_dir.name}/{TILESET} (finest tiles within {station.radius:g} m)",
    ]
    city_layers = tuple(x for x in station.layers if x in ("ground", "buildings", "trees"))
    nodes: list[MeshNode] = []
    exclude = None
    if redesign and "redesign" in station.layers:
        axis = street_axis(products_dir / "streets.gpkg", station.street, place, station.radius)
        section = section_for(station, products_dir / "boulevards.gpkg", axis)
        exclude = street_space(axis, section, place)
        nodes += redesign_nodes(station, section, axis, place, terrain)
        widths = ", ".join(f"{b.kind} {b.width:g}" for b in section.bands)
        sources.append(
            f"redesign: {station.redesign_title or 'cross-section'} ({section.source or 'station file'};"
            f" {widths} m) along {products_dir.name}/streets.gpkg {station.street!r}"
        )
    nodes = clip_city(products_dir / TILESET, place, station.radius, city_layers, exclude) + nodes
    tracks: list[Track] = []
    runs: list[str] = []
    if traffic is not None:
        vnodes, tracks, run = traffic_nodes(Path(traffic), place, station.radius, terrain)
        nodes += vnodes
        runs.append(run)
    if overlay is not None:
        run = run_folder_of(Path(overlay))
        if run is not None:  # a run's raster: only a finished run's, as for the traffic
            finished_run(run)
            runs.append(str(run))
        onodes, line = overlay_nodes(Path(overlay), place, station.radius, terrain)
        nodes += onodes
        sources.append(line)
    anchor = Anchor(station.lat, station.lon, station.height, 0.0)
    return Scene(station.name, anchor, nodes, tracks, sources=sources, runs=runs)


def _preview(
    station: Station, scene: Scene, tileset: Path, path: Path, size: tuple[int, int]
) -> ExportInfo:
    """A PNG of the city from the station's camera with the scene's redesign/overlay meshes drawn."""
    from twin.scenes.render import render_tileset
    from twin.scenes.station import station_camera

    camera = station_camera(station)
    overlays = scene_overlays(scene, camera.frame())
    render_tileset(tileset, camera, size, out=path, overlays=overlays)
    return ExportInfo(str(path), "png", path.stat().st_size, 0, 0, [])


def scene_overlays(scene: Scene, frame: LocalFrame) -> list[tuple[Any, tuple[float, float, float]]]:
    """The scene's redesign, overlay and legend meshes as (pyvista mesh, colour) in `frame` (ENU)."""
    import pyvista as pv

    st_frame = LocalFrame(scene.anchor.lon, scene.anchor.lat, scene.anchor.height + GEOID_HEIGHT_M)
    out = []
    for n in scene.nodes:
        if not n.name.startswith(("redesign_", "overlay_")):
            continue
        pts = frame.ecef_to_enu(st_frame.enu_to_ecef(n.vertices))
        cells = np.hstack([np.full((len(n.faces), 1), 3), n.faces]).ravel()
        colour = n.material.base_color[:3]
        if n.material.texture is not None:
            colour = tuple(np.asarray(n.material.texture)[..., :3].reshape(-1, 3).mean(0) / 255)
        out.append((pv.PolyData(pts, cells), tuple(float(c) for c in colour)))
    return out


def export(
    station: Station,
    products_dir: Path,
    out_dir: Path,
    *,
    traffic: Path | None = None,
    overlay: Path | None = None,
    redesign: bool = True,
    preview: tuple[int, int] | None = (960, 540),
    budget: Budget = MOBILE_AR,
) -> Path:
    """Compose and write the station's package into <out_dir>/<name>/: <name>.glb, <name>.usdz,
    the 3D Tiles 1.1 tileset tiles/tileset.json, vehicles.json for the web viewer (when the scene
    has vehicle tracks), before/after PNG previews (when `preview` gives a size) and manifest.json
    (last); returns the folder."""
    scene = compose(station, products_dir, traffic=traffic, overlay=overlay, redesign=redesign)
    scene, actions = fit(scene, budget)
    folder = Path(out_dir) / station.name
    folder.mkdir(parents=True, exist_ok=True)
    glb = write_glb(scene, folder / f"{station.name}.glb", budget)
    infos = [
        glb,
        write_usdz(scene, folder / f"{station.name}.usdz", budget),
        write_tileset(scene, folder / SCENE_TILES, glb),
    ]
    vehicles = folder / VEHICLES_JSON
    if any(n.kind == "vehicle" for n in scene.nodes) and scene.animations:
        infos.append(write_vehicles(scene, vehicles))
    else:
        vehicles.unlink(missing_ok=True)  # not one of an earlier export with traffic
    if preview is not None:
        tileset = Path(products_dir) / TILESET
        before = Scene(scene.name, scene.anchor, [], [])
        infos.append(
            _preview(station, before, tileset, folder / f"{station.name}-before.png", preview)
        )
        infos.append(
            _preview(station, scene, tileset, folder / f"{station.name}-after.png", preview)
        )
    write_manifest(folder, scene, infos, actions, budget)
    return folder
