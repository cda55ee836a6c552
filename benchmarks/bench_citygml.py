"""Benchmark the LoD2 CityGML conversion (reader + 3D Tiles writer) against a tree-parsing anchor.

Usage: .venv/bin/python benchmarks/bench_citygml.py [--repeat N] [--city N] [--short]

1. Converts the two real Geobasis NRW LoD2 tiles (../shared/data/nrw-lod2, copied to a temporary
   folder first) to triangles and footprints ("read") and on to a 3D Tiles 1.1 tileset ("convert"):
   ours (twin.city.citygml streaming with lxml iterparse, GEOS triangulation batched, then
   twin.citytiles write_buildings_tileset) against an anchor doing the same with maintained
   libraries the textbook way: lxml.etree.parse of the whole file, the boundary surfaces' polygons
   found by ElementPath, each polygon put into its plane and triangulated by trimesh (plane_fit,
   plane_transform, triangulate_polygon with earcut), footprints by shapely, then the same writer.
   Both must find the same buildings and surface areas (within 0.5 %), else the row fails.
   (GDAL's GML driver, the other candidate, exposes one geometry per Building here, the terrain
   intersection lines, and resolves xlinks only by writing a resolved copy beside the input.)
   Printed: buildings/s and MB/s of both, the ratio, and the peak memory (RSS) of ours in a
   process of its own.
2. Without --short: a "whole city" run, ours only: N shifted copies of the two tiles (default 144,
   a 12 x 12 km square of 1 km tiles, gml:ids made unique) written to a temporary folder and
   converted in one go; minutes, buildings/s and the peak RSS against the input size show that the
   reader's memory stays bounded (the output arrays grow with the buildings, the parse does not).

``--short`` (what `make bench` runs): the two tiles only. Ours: the fastest of 3 readings and 2
writings; the anchor (seconds per run) once each; convert = read + write.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import Row, add_arguments, finish, skipped  # noqa: E402

LOD2 = REPO.parent / "shared" / "data" / "nrw-lod2"
BENCH = "citygml"
ANCHOR = "lxml.etree.parse + trimesh (plane_fit, triangulate_polygon/earcut) + same writer"
CRS = "EPSG:25832"
AREA_REL = 0.005
CITY_ORIGIN = (320_000.0, 5_680_000.0)  # south-west corner of the synthetic city's tile grid


# --- ours -------------------------------------------------------------------------------------


def read_ours(folder: Path):
    from twin.city.citygml import read_citygml

    return read_citygml(folder, CRS)


def as_tables(b) -> tuple[dict, dict]:
    """(buildings columns, surfaces) of LoD2Buildings for the writer."""
    table = b.table()
    return table, b.surfaces()


def write_tiles(buildings: dict, surfaces: dict, out: Path) -> None:
    from twin.citytiles.writer import write_buildings_tileset

    write_buildings_tileset(buildings, surfaces, out, CRS)


# --- the anchor -------------------------------------------------------------------------------


def read_anchor(folder: Path) -> tuple[dict, dict, np.ndarray]:
    """The tiles through lxml trees and trimesh: (buildings columns, surfaces, areas by kind)."""
    import shapely
    import trimesh
    from lxml import etree

    from twin.city.buildings import SURFACE_KINDS

    gml = "{http://www.opengis.net/gml}"
    ns = {"bldg": "http://www.opengis.net/citygml/building/1.0"}
    kinds = {"WallSurface": "wall", "RoofSurface": "roof", "GroundSurface": "ground"}
    ids, foot, base, top, areas = [], [], [], [], []
    xyz, tris, bld, knd = [], [], [], []
    n_vert = 0
    for f in sorted(folder.glob("*.gml")):
        tree = etree.parse(str(f))
        for b in tree.iterfind(".//bldg:Building", ns):
            grounds, zs, zg = [], [], []
            area = np.zeros(len(SURFACE_KINDS))
            for surface in b.iterfind(".//bldg:boundedBy/*", ns):
                kind = SURFACE_KINDS[kinds.get(etree.QName(surface).localname, "other")]
                for poly in surface.iter(gml + "Polygon"):
                    rings = [
                        np.array(r.text.split(), dtype=float).reshape(-1, 3)[:-1]
                        for r in poly.iter(gml + "posList")
                    ]
                    centre, normal = trimesh.points.plane_fit(rings[0])
                    to_plane = trimesh.geometry.plane_transform(centre, normal)
                    flat = [trimesh.transform_points(r, to_plane)[:, :2] for r in rings]
                    v2, faces = trimesh.creation.triangulate_polygon(
                        shapely.Polygon(flat[0], flat[1:]), engine="earcut"
                    )
                    v3 = trimesh.transform_points(
                        np.column_stack([v2, np.zeros(len(v2))]), np.linalg.inv(to_plane)
                    )
                    mesh = trimesh.Trimesh(v3, faces, process=False)
                    area[kind] += mesh.area
                    xyz.append(v3)
                    tris.append(faces + n_vert)
                    n_vert += len(v3)
                    bld.append(np.full(len(faces), len(ids)))
                    knd.append(np.full(len(faces), kind, dtype=np.uint8))
                    z = rings[0][:, 2]
                    zs.append(z)
                    if kind == SURFACE_KINDS["ground"]:
                        grounds.append(shapely.Polygon(rings[0][:, :2]))
                        zg.append(z)
            ids.append(b.get(gml + "id"))
            foot.append(shapely.union_all(shapely.make_valid(np.array(grounds))))
            base.append(np.concatenate(zg).min())
            top.append(np.concatenate(zs).max())
            areas.append(area)
    geoms = np.array(foot, dtype=object)
    base, top = np.array(base), np.array(top)
    buildings = {
        "geometry": geoms,
        "id": np.array(ids, dtype=object),
        "height": top - base,
        "use": np.array(["residential"] * len(ids), dtype=object),
        "base": base,
        "area": shapely.area(geoms),
    }
    surfaces = {
        "xyz": np.concatenate(xyz),
        "tris": np.concatenate(tris).astype(np.int64),
        "building": np.concatenate(bld).astype(np.int64),
        "kind": np.concatenate(knd),
    }
    return buildings, surfaces, np.array(areas)


# --- timing -----------------------------------------------------------------------------------


def best(fn, repeat: int) -> tuple[float, object]:
    """The fastest of `repeat` runs of fn() and its result."""
    out, times = None, []
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def peak_rss(folder: Path, out: Path) -> dict:
    """Our conversion of `folder` in a process of its own: its RSS after imports and at peak, MB."""
    cmd = [sys.executable, __file__, "--memory-child", str(folder), str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def _status_mb(key: str) -> float:
    """VmRSS / VmHWM of this process in MB (Linux), else the peak from getrusage."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> None:
    """Start the peak (VmHWM) anew at the current RSS (Linux >= 4.0; elsewhere nothing)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def memory_child(folder: Path, out: Path) -> None:
    """(run by peak_rss) Convert and print the RSS figures as one JSON line: after the imports
    (the peak reset there), at the end of reading and at the end of writing."""
    import twin.citytiles.writer  # noqa: F401  (imports count as the baseline)
    from twin.city.citygml import read_citygml  # noqa: F401

    _reset_peak()
    before = _status_mb("VmRSS")
    t0 = time.perf_counter()
    b = read_ours(folder)
    read_s = time.perf_counter() - t0
    after_read = _status_mb("VmHWM")
    buildings, surfaces = as_tables(b)
    write_tiles(buildings, surfaces, out)
    total_s = time.perf_counter() - t0
    peak = _status_mb("VmHWM")
    print(
        json.dumps(
            {
                "baseline_mb": before,
                "read_peak_mb": after_read,
                "peak_mb": peak,
                "read_s": read_s,
                "total_s": total_s,
                "buildings": len(b),
                "triangles": int(len(b.tris)),
                "problems": len(b.problems),
            }
        )
    )


def compare(ours, anchor_buildings: dict, anchor_areas: np.ndarray) -> str | None:
    """Why the two readings differ (None when they agree)."""
    if sorted(ours.id) != sorted(anchor_buildings["id"]):
        return f"{len(ours)} buildings (ours) vs {len(anchor_buildings['id'])} (anchor)"
    order = {gid: i for i, gid in enumerate(anchor_buildings["id"])}
    a = anchor_areas[[order[g] for g in ours.id]]
    bad = np.abs(ours.areas - a) > AREA_REL * np.maximum(a, 1.0)
    if bad.any():
        i = int(np.flatnonzero(bad.any(axis=1))[0])
        return f"building {ours.id[i]}: areas by kind {ours.areas[i]} vs {a[i]}"
    return None


def bench_tiles(tmp: Path, repeat: int) -> list[Row]:
    """Rows 'read' and 'convert' on the two real tiles."""
    tiles = tmp / "tiles"
    tiles.mkdir()
    for p in sorted(LOD2.glob("*.gml")):  # copies: nothing may write beside the shared data
        shutil.copy(p, tiles / p.name)
    mb = sum(p.stat().st_size for p in tiles.glob("*.gml")) / 1e6
    print(f"two NRW LoD2 tiles, {mb:.1f} MB", flush=True)
    t_read, ours = best(lambda: read_ours(tiles), repeat)
    t_write, _ = best(lambda: write_tiles(*as_tables(ours), tmp / "ours"), max(1, repeat - 1))
    t_aread, (ab, asurf, aareas) = best(lambda: read_anchor(tiles), 1)  # seconds: once
    t_awrite, _ = best(lambda: write_tiles(ab, asurf, tmp / "anchor"), 1)
    why = compare(ours, ab, aareas)
    n = len(ours)
    t_conv, t_aconv = t_read + t_write, t_aread + t_awrite
    mem = peak_rss(tiles, tmp / "memory")
    for name, tr, tc in (("ours", t_read, t_conv), ("anchor", t_aread, t_aconv)):
        print(
            f"  {name:6s}: read {tr:6.3f} s = {n / tr:8,.0f} buildings/s {mb / tr:6.1f} MB/s; "
            f"convert {tc:6.3f} s = {n / tc:8,.0f} buildings/s {mb / tc:6.1f} MB/s"
        )
    print(f"  ratio (ours / anchor): read {t_aread / t_read:.2f}x, convert {t_aconv / t_conv:.2f}x")
    print(
        f"  ours in a process of its own: RSS {mem['baseline_mb']:.0f} MB after the imports, "
        f"peak {mem['read_peak_mb']:.0f} MB reading, {mem['peak_mb']:.0f} MB with the tileset"
    )
    print(
        f"  {n} buildings, {len(ours.tris):,} triangles (ours), "
        f"{len(asurf['tris']):,} (anchor); {'same buildings and areas' if why is None else why}"
    )
    rows = [
        Row(BENCH, "read", "buildings/s", n / t_read, n / t_aread, ANCHOR, failed=why),
        Row(BENCH, "convert", "buildings/s", n / t_conv, n / t_aconv, ANCHOR, failed=why),
    ]
    return rows


# --- the whole city ---------------------------------------------------------------------------

_COORDS = re.compile(r"(<gml:(?:posList|pos|lowerCorner|upperCorner)\b[^>]*>)([^<]*)")
_IDS = re.compile(r'(gml:id="|xlink:href="#)([^"]+)"')


class ShiftedCopies:
    """Copies of a tile moved by whole kilometres, with gml:ids made unique per copy."""

    def __init__(self, path: Path) -> None:
        text = _IDS.sub(r'\1\2@@"', path.read_text(encoding="utf-8"))
        parts = _COORDS.split(text)  # text, tag, numbers, text, tag, numbers, ..., text
        self.text = parts[0::3]
        self.tags = parts[1::3]
        self.numbers = [np.array(p.split(), dtype=float).reshape(-1, 3) for p in parts[2::3]]
        m = re.search(r"<gml:lowerCorner[^>]*>([^<]*)", text)
        self.x0, self.y0 = (float(v) for v in m.group(1).split()[:2])

    def write(self, path: Path, x0: float, y0: float, suffix: str) -> None:
        shift = np.array([x0 - self.x0, y0 - self.y0, 0.0])
        out = [self.text[0]]
        for tag, nums, text in zip(self.tags, self.numbers, self.text[1:], strict=True):
            out += [tag, " ".join(map("{:.3f}".format, (nums + shift).ravel())), text]
        path.write_text("".join(out).replace("@@", suffix), encoding="utf-8")


def bench_city(tmp: Path, n_tiles: int) -> None:
    """Ours on n_tiles shifted copies of the two tiles (a square of 1 km tiles)."""
    city = tmp / "city"
    city.mkdir()
    bases = [ShiftedCopies(p) for p in sorted(LOD2.glob("*.gml"))]
    side = int(np.ceil(np.sqrt(n_tiles)))
    t0 = time.perf_counter()
    for k in range(n_tiles):
        i, j = divmod(k, side)
        x0, y0 = CITY_ORIGIN[0] + 1000.0 * j, CITY_ORIGIN[1] + 1000.0 * i
        bases[k % 2].write(
            city / f"LoD2_32_{int(x0) // 1000}_{int(y0) // 1000}_1_NW.gml", x0, y0, f"_{k}"
        )
    mb = sum(p.stat().st_size for p in city.glob("*.gml")) / 1e6
    print(
        f"whole city: {n_tiles} shifted copies of the two tiles ({side} x {side} km), "
        f"{mb:,.0f} MB, written in {time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    m = peak_rss(city, tmp / "city_tiles")
    n = m["buildings"]
    print(
        f"  ours: {n:,} buildings, {m['triangles']:,} triangles, {m['problems']} problems; "
        f"read {m['read_s']:.1f} s ({n / m['read_s']:,.0f} buildings/s, "
        f"{mb / m['read_s']:.1f} MB/s); with the tileset {m['total_s'] / 60:.1f} min "
        f"({n / m['total_s']:,.0f} buildings/s)"
    )
    print(
        f"  peak RSS {m['read_peak_mb']:.0f} MB reading, {m['peak_mb']:.0f} MB with the "
        f"tileset (after imports {m['baseline_mb']:.0f} MB) for {mb:,.0f} MB of CityGML"
    )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--repeat", type=int, help="timed readings of ours, the fastest counts (default 3)"
    )
    ap.add_argument(
        "--city",
        type=int,
        default=144,
        help="tiles of the whole-city run (default 144; not in --short)",
    )
    ap.add_argument("--memory-child", nargs=2, type=Path, help=argparse.SUPPRESS)
    add_arguments(ap)
    args = ap.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child)
        return 0
    repeat = args.repeat or 3
    if not LOD2.is_dir():
        why = f"no LoD2 tiles at ../{LOD2.relative_to(REPO.parent)}"
        print(why)
        return finish([skipped(BENCH, m, ANCHOR, why) for m in ("read", "convert")], args)
    with tempfile.TemporaryDirectory(prefix="bench-citygml-") as tmp:
        rows = bench_tiles(Path(tmp), repeat)
        if not args.short:
            bench_city(Path(tmp), args.city)
    return finish(rows, args)


if __name__ == "__main__":
    sys.exit(main())
