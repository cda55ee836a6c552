"""Vehicles of a traffic run in the 3D scene: one time step of SUMO's FCD output drawn as boxes sized and
coloured by vehicle class, standing on the terrain.

SUMO writes a vehicle's position as the middle of its front bumper and its angle in degrees clockwise
from north, in the network's projected coordinates (`<location netOffset projParameter>` of the net);
they are brought to EPSG:25832 here, so a run on any geo-referenced SUMO net can be drawn.
"""

from __future__ import annotations

import gzip
import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from twin.errors import DataError
from twin.geo import LocalFrame, to_utm
from twin.runs import STATUS, finished_run, finished_runs

FCD = "fcd.xml.gz"

# vehicle class -> length, width, height (m) and colour (RGB 0..1); unknown classes draw as cars
SHAPES: dict[str, tuple[float, float, float, tuple[float, float, float]]] = {
    "passenger": (4.5, 1.8, 1.5, (0.85, 0.85, 0.88)),
    "taxi": (4.6, 1.8, 1.5, (0.96, 0.85, 0.25)),
    "delivery": (6.5, 2.1, 2.6, (0.95, 0.95, 0.95)),
    "truck": (16.5, 2.55, 3.8, (0.25, 0.45, 0.80)),
    "trailer": (16.5, 2.55, 3.8, (0.25, 0.45, 0.80)),
    "bus": (12.0, 2.55, 3.1, (0.90, 0.20, 0.15)),
    "coach": (12.0, 2.55, 3.6, (0.90, 0.20, 0.15)),
    "tram": (30.0, 2.65, 3.4, (0.95, 0.55, 0.10)),
    "rail_urban": (30.0, 2.65, 3.4, (0.95, 0.55, 0.10)),
    "bicycle": (1.8, 0.65, 1.7, (0.15, 0.70, 0.30)),
    "emergency": (6.0, 2.1, 2.6, (1.00, 1.00, 1.00)),
}
_DEFAULT = SHAPES["passenger"]


@dataclass(frozen=True)
class Vehicle:
    """One vehicle at one instant: EPSG:25832 front position (m), heading (degrees clockwise from
    north) and SUMO vehicle class."""

    id: str
    vclass: str
    x: float
    y: float
    angle: float


def _net_location(net_file: Path) -> tuple[float, float, str]:
    """netOffset (x, y) and projParameter of a SUMO net (read from its first lines)."""
    opener = gzip.open if net_file.suffix == ".gz" else open
    try:
        with opener(net_file, "rb") as fh:
            for _, el in ET.iterparse(fh, events=("start",)):
                if el.tag == "location":
                    dx, dy = (float(v) for v in el.get("netOffset", "0,0").split(","))
                    return dx, dy, el.get("projParameter", "!")
                if el.tag in ("edge", "junction"):
                    break
    except (OSError, ET.ParseError, EOFError, ValueError) as exc:
        raise DataError(f"{net_file}: cannot read the network's location: {exc}") from exc
    raise DataError(f"{net_file}: no <location> element: the network is not geo-referenced")


def _to_utm(net_file: Path) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Network x, y -> EPSG:25832 x, y."""
    dx, dy, proj = _net_location(net_file)
    if proj in ("!", ""):
        raise DataError(f"{net_file}: projParameter '!': the network is not geo-referenced")
    return lambda x, y: to_utm(x - dx, y - dy, proj)


def read_fcd_step(fcd: Path, time_s: float) -> tuple[float, list[dict[str, str]]]:
    """The vehicles of the first FCD time step at or after `time_s` (s): its time and their attributes."""
    opener = gzip.open if fcd.suffix == ".gz" else open
    first = last = None
    try:
        with opener(fcd, "rb") as fh:
            for _, el in ET.iterparse(fh, events=("end",)):
                if el.tag != "timestep":
                    continue
                t = float(el.get("time", "nan"))
                first = t if first is None else first
                last = t
                if t >= time_s - 1e-6:
                    return t, [dict(v.attrib) for v in el.iter("vehicle")]
                el.clear()
    except (OSError, ET.ParseError, EOFError, ValueError) as exc:
        raise DataError(f"{fcd}: cannot read the FCD output: {exc}") from exc
    if first is None:
        raise DataError(f"{fcd}: no time steps in the FCD output")
    raise DataError(
        f"{fcd}: no time step at or after {time_s:g} s (the file has {first:g}..{last:g} s)"
    )


def run_folder_fcd(path: Path) -> Path:
    """The (variant, seed) folder with FCD of a finished traffic run: `path` itself, the first seed
    with FCD of a run folder's baseline, or of the newest finished run in `runs/<scenario>/`.

    Whether a run finished is read from its status.json (twin.runs); any other run is refused."""
    path = Path(path)
    if (path / FCD).is_file():
        finished_run(path.parent.parent)
        return path
    if (path / STATUS).is_file():
        finished_run(path)
        candidates = [path]
    else:
        candidates = finished_runs(path, kind="traffic")
        if not candidates:
            raise DataError(
                f"{path}: no FCD output ({FCD}) here and no finished traffic run under it "
                "(`twin runs list` shows the runs and their state)"
            )
    for run in candidates:
        for seed in sorted((run / "baseline").glob("seed-*")):
            if (seed / FCD).is_file():
                return seed
    raise DataError(f"{path}: no FCD output ({FCD}) in this run folder or the runs under it")


def load_vehicles(folder: Path, time_s: float) -> tuple[float, list[Vehicle]]:
    """Vehicles of a run's (variant, seed) folder at simulation time `time_s` (s), in EPSG:25832."""
    folder = run_folder_fcd(folder)
    plan_file = folder.parent.parent / "plan.json"
    try:
        net = Path(json.loads(plan_file.read_text(encoding="utf-8"))["net"])
        types = json.loads((folder / "vtypes.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{folder}: needs ../../plan.json (net) and vtypes.json: {exc}") from exc
    t, rows = read_fcd_step(folder / FCD, time_s)
    if not rows:
        return t, []
    x = np.array([float(r["x"]) for r in rows])
    y = np.array([float(r["y"]) for r in rows])
    ux, uy = _to_utm(net)(x, y)
    return t, [
        Vehicle(
            r["id"],
            types.get(r.get("type", ""), {}).get("vClass", "passenger"),
            float(a),
            float(b),
            float(r.get("angle", 0.0)),
        )  # fmt: skip
        for r, a, b in zip(rows, np.asarray(ux), np.asarray(uy), strict=True)
    ]


def onto_boulevards(vehicles: list[Vehicle], bands_file: Path) -> list[Vehicle]:
    """Vehicles moved onto the drawn cross-section where a boulevard is one two-way way in the net.

    SUMO puts a two-way street's lanes beside its centre line, where a boulevard's cross-section
    (boulevards.gpkg) may have its central strip; so a vehicle standing in a boulevard but not on a
    band of its kind (carriageway, or tram for trams) goes to the nearest such band on its right-hand
    side, 1.5 m in from the band's edge. Vehicles elsewhere are left as they are.
    """
    import dataclasses

    import pyogrio
    import shapely
    from shapely.ops import nearest_points

    if not vehicles or not bands_file.is_file():
        return vehicles
    meta, _, wkb, values = pyogrio.raw.read(bands_file, layer="boulevards")
    if len(wkb) == 0:
        return vehicles
    cols = dict(zip(meta["fields"], values, strict=True))
    polys, kinds = shapely.from_wkb(wkb), np.asarray(cols["kind"], dtype=object)
    streets = np.asarray(cols["street"], dtype=object)
    tree = shapely.STRtree(polys)
    out = []
    for v in vehicles:
        p = shapely.Point(v.x, v.y)
        inside = tree.query(p, predicate="intersects")
        want = "tram" if v.vclass in ("tram", "rail_urban") else "carriageway"
        if len(inside) == 0 or any(kinds[i] == want for i in inside):
            out.append(v)
            continue
        street = streets[inside[0]]
        a = math.radians(v.angle)
        fwd = np.array([math.sin(a), math.cos(a)])
        best = None
        for i in np.flatnonzero((streets == street) & (kinds == want)):
            q = np.asarray(nearest_points(polys[i], p)[0].coords[0])
            d = q - (v.x, v.y)
            right = fwd[0] * d[1] - fwd[1] * d[0] < 0  # d lies to the right of the heading
            dist = float(np.hypot(*d))
            if right and dist > 0 and (best is None or dist < best[0]):
                best = (dist, q + d / dist * 1.5)
        out.append(v if best is None else dataclasses.replace(v, x=best[1][0], y=best[1][1]))
    return out


_BOX_FACES = np.array(
    [[0, 1, 2, 3], [4, 7, 6, 5], [0, 4, 5, 1], [1, 5, 6, 2], [2, 6, 7, 3], [3, 7, 4, 0]]
)


def box_corners(v: Vehicle, ground_h: float) -> np.ndarray:
    """The 8 corners (EPSG:25832 x, y, DHHN2016 height) of a vehicle's box: bottom ring, then top."""
    length, width, height, _ = SHAPES.get(v.vclass, _DEFAULT)
    a = math.radians(v.angle)
    fwd = np.array([math.sin(a), math.cos(a)])
    right = np.array([fwd[1], -fwd[0]])
    back = np.array([v.x, v.y]) - fwd * length
    ring = [back - right * width / 2, back + right * width / 2]
    ring += [ring[1] + fwd * length, ring[0] + fwd * length]
    bottom = [(*p, ground_h) for p in ring]
    return np.array(bottom + [(px, py, ground_h + height) for px, py, _ in bottom])


def vehicle_meshes(
    vehicles: list[Vehicle],
    frame: LocalFrame,
    ground: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> list[tuple[Any, tuple[float, float, float]]]:
    """One pyvista mesh of boxes per vehicle class, in `frame` (ENU), with its colour; `ground`
    gives the terrain height (m a.s.l.) at EPSG:25832 points (vehicles off the terrain are left out)."""
    import pyvista as pv

    if not vehicles:
        return []
    heights = ground(np.array([v.x for v in vehicles]), np.array([v.y for v in vehicles]))
    placed = [(v, h) for v, h in zip(vehicles, heights, strict=True) if np.isfinite(h)]
    out = []
    for vclass in sorted({v.vclass for v, _ in placed}):
        chosen = [(v, h) for v, h in placed if v.vclass == vclass]
        corners = np.concatenate([box_corners(v, float(h)) for v, h in chosen])
        points = frame.utm_to_enu(corners[:, 0], corners[:, 1], corners[:, 2])
        faces = np.concatenate([_BOX_FACES + 8 * i for i in range(len(chosen))])
        cells = np.hstack([np.full((len(faces), 1), 4), faces]).ravel()
        out.append((pv.PolyData(points, cells), SHAPES.get(vclass, _DEFAULT)[3]))
    return out
