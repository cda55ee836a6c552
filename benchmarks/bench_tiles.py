"""Benchmark the 3D Tiles reader against py3dtiles, and camera traversal of 100 000 tiles.

Usage: .venv/bin/python benchmarks/bench_tiles.py [TILESET] [--repeat N] [--tiles N]
       [--contents N] [--short]

1. Reads every content of TILESET (default: the largest sample tileset in ../shared/data) with
   twin.tiles (parse + geometry in the tile frame) and, for the formats it reads (b3dm, pnts, glb),
   with py3dtiles (parse + vertex positions), in the same run; prints MB/s, triangles/s, the ratio.
2. Builds a synthetic quadtree tileset of N tiles (default 100 000) over Krefeld and times
   select_by_camera from a few viewpoints (after a first, loading traversal); printed only, as
   there is no anchor to compare with.

``--short`` (what `make bench` runs): the first 250 contents of each tileset, 3 repeats (the fastest
counts), a 20 000-tile synthetic tileset.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import Row, add_arguments, finish, skipped  # noqa: E402

from twin.geo import LocalFrame  # noqa: E402
from twin.tiles import Camera, Tileset, select_by_camera  # noqa: E402

SAMPLES = REPO.parent / "shared" / "data" / "3dtiles-samples"
KREFELD_TILES = REPO / "build" / "krefeld" / "tiles"
BENCH = "tiles"
ANCHOR = "py3dtiles (parse + vertex positions, b3dm/pnts/glb)"


def largest_sample() -> Path:
    """The sample tileset folder with the most bytes."""
    sizes = {
        d: sum(f.stat().st_size for f in d.rglob("*") if f.is_file())
        for d in SAMPLES.iterdir()
        if (d / "tileset.json").exists()
    }
    return max(sizes, key=sizes.get)


def content_refs(ts: Tileset) -> list:
    ts.expand_all([])
    refs = []
    for t in ts.tiles():
        if not t.is_external:
            refs += [(t, r) for r in t.contents]
    return refs


def read_ours(ts: Tileset, refs: list) -> tuple[int, int, int, float]:
    """Parse every content and build its geometry; returns bytes, triangles, points, seconds."""
    nbytes = tris = pts = 0
    t0 = time.perf_counter()
    for tile, ref in refs:
        try:
            c = ts.read_content(ref)
        except Exception as exc:  # a broken sample content is skipped, as py3dtiles' would be
            print(f"  (twin.tiles skips {ref.uri}: {exc})")
            continue
        geoms = c.geometry(tile.transform)
        nbytes += c.byte_length
        tris += sum(len(g.faces) for g in geoms if g.faces is not None)
        pts += sum(len(g.positions) for g in geoms if g.kind == "points")
    return nbytes, tris, pts, time.perf_counter() - t0


def read_py3dtiles(ts: Tileset, refs: list) -> tuple[int, int, int, float] | None:
    """The same contents through py3dtiles (where it reads the format), positions decoded."""
    try:
        from py3dtiles.tileset.content import gltf_utils, read_binary_tile_content
    except ImportError:
        return None
    nbytes = tris = pts = 0
    t0 = time.perf_counter()
    for _tile, ref in refs:
        path = Path(ts.source.display(ref.key))
        if ref.kind_hint not in ("b3dm", "pnts", "glb") or not path.exists():
            continue
        try:
            c = read_binary_tile_content(path)
            gltf = getattr(getattr(c, "body", None), "gltf", None) or getattr(c, "_gltf", None)
            if gltf is not None:
                pos = gltf_utils.get_attribute(gltf, "POSITION")
                tris += 0 if pos is None else len(pos) // 3  # de-indexed vertices, 3 per triangle
            else:
                pts += len(c.get_points(None).positions)
        except Exception as exc:  # py3dtiles rejects some valid files; report and go on
            print(f"  (py3dtiles skips {ref.uri}: {type(exc).__name__}: {str(exc)[:80]})")
            continue
        nbytes += path.stat().st_size
    return nbytes, tris, pts, time.perf_counter() - t0


def synthetic_tileset(folder: Path, n_tiles: int) -> Path:
    """A quadtree tileset (REPLACE, boxes) of about n_tiles tiles over 10 km x 10 km of Krefeld."""
    frame = LocalFrame.from_utm(332_000.0, 5_688_000.0, 40.0)
    half = 5000.0
    levels = []
    count, level = 0, 0
    while count < n_tiles:
        k = min(4**level, n_tiles - count)
        levels.append(k)
        count += k
        level += 1

    def node(level: int, x: int, y: int) -> dict:
        size = 2 * half / 2**level
        cx = -half + (x + 0.5) * size
        cy = -half + (y + 0.5) * size
        t = {
            "boundingVolume": {"box": [cx, cy, 20, size / 2, 0, 0, 0, size / 2, 0, 0, 0, 20]},
            "geometricError": 0.0 if level == len(levels) - 1 else 2.0 * size / 64,
            "content": {"uri": f"c/{level}/{x}_{y}.b3dm"},
        }
        return t

    # build level by level: the first levels[l] tiles (in row order of their parents) exist
    nodes = [[node(0, 0, 0)]]
    coords = [[(0, 0)]]
    for lv in range(1, len(levels)):
        lv_nodes, lv_coords = [], []
        for parent, (px, py) in zip(nodes[-1], coords[-1], strict=True):
            kids = []
            for dx in (0, 1):
                for dy in (0, 1):
                    if len(lv_nodes) >= levels[lv]:
                        break
                    c = node(lv, 2 * px + dx, 2 * py + dy)
                    kids.append(c)
                    lv_nodes.append(c)
                    lv_coords.append((2 * px + dx, 2 * py + dy))
            if kids:
                parent["children"] = kids
        nodes.append(lv_nodes)
        coords.append(lv_coords)
    root = nodes[0][0]
    root["transform"] = frame.tileset_transform()
    root["refine"] = "REPLACE"
    doc = {"asset": {"version": "1.1"}, "geometricError": 500.0, "root": root}
    path = folder / "tileset.json"
    path.write_text(json.dumps(doc))
    return path


def bench_traversal(n_tiles: int, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = synthetic_tileset(Path(tmp), n_tiles)
        print(f"built synthetic tileset in {time.perf_counter() - t0:.2f} s", flush=True)
        t0 = time.perf_counter()
        ts = Tileset(path)
        print(f"opened {len(ts):,} tiles in {time.perf_counter() - t0:.2f} s", flush=True)
    views = [
        (
            "roof level (80 m a.s.l.), looking north",
            Camera.from_lonlat(6.56, 51.33, 80, 0, -5),
            16.0,
        ),
        ("roof level, max_sse 1", Camera.from_lonlat(6.56, 51.33, 80, 0, -5), 1.0),
        ("300 m up, 45 deg down", Camera.from_lonlat(6.56, 51.33, 340, 30, -45), 16.0),
        ("8 km up, straight down", Camera.from_lonlat(6.565, 51.333, 8000, 0, -90), 16.0),
        (
            "20 km up, max_sse 1e-3 (nearly all tiles)",
            Camera.from_lonlat(6.565, 51.333, 20000, 0, -90),
            1e-3,
        ),
    ]
    for label, cam, max_sse in views:
        select_by_camera(ts, cam, max_sse=max_sse)  # first run may load
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            sel = select_by_camera(ts, cam, max_sse=max_sse)
            times.append(time.perf_counter() - t0)
        print(
            f"  {label:44s}: {len(sel):7,} selected, {sel.visited:7,} visited, "
            f"median {1000 * np.median(times):7.2f} ms",
            flush=True,
        )


def bench_reader(target: Path, repeat: int, limit: int | None = None) -> tuple | None:
    """Read every content of `target` (the first `limit`) with twin.tiles and py3dtiles; print
    rates and the ratio; return both results (py3dtiles' None where it is not installed)."""
    print(f"reading every content of {target}", flush=True)
    ts = Tileset(target)
    refs = content_refs(ts)
    print(f"  {len(ts):,} tiles, {len(refs):,} contents", flush=True)
    if limit is not None and len(refs) > limit:
        refs = refs[:limit]
        print(f"  timing the first {limit:,} contents", flush=True)
    ours = min((read_ours(ts, refs) for _ in range(repeat)), key=lambda r: r[3])
    print("  twin.tiles done", flush=True)
    theirs = read_py3dtiles(ts, refs)
    print("  py3dtiles done", flush=True)
    for name, r in (("twin.tiles", ours), ("py3dtiles", theirs)):
        if r is None:
            print(f"  {name:10s}: not available")
            continue
        nbytes, tris, pts, sec = r
        print(
            f"  {name:10s}: {nbytes / 1e6:8.2f} MB in {sec:7.3f} s = {nbytes / 1e6 / sec:8.1f} MB/s, "
            f"{tris / sec:12,.0f} triangles/s, {pts / sec:12,.0f} points/s"
        )
    if theirs is not None and theirs[0] > 0 and ours[0] > 0:
        ratio = (ours[0] / ours[3]) / (theirs[0] / theirs[3])
        print(
            f"  ratio (MB/s twin.tiles / py3dtiles): {ratio:.1f}x  (py3dtiles reads only b3dm/pnts/glb)"
        )
    return ours, theirs


def reader_row(measure: str, target: Path, repeat: int, limit: int | None) -> Row:
    """The table row of one tileset: twin.tiles MB/s against py3dtiles' on the same contents."""
    ours, theirs = bench_reader(target, repeat, limit)
    if theirs is None:
        return skipped(BENCH, measure, ANCHOR, "py3dtiles is not installed")
    if ours[0] == 0 or theirs[0] == 0:
        return skipped(BENCH, measure, ANCHOR, f"no content of {target.name} read by both")
    return Row(BENCH, measure, "MB/s", ours[0] / 1e6 / ours[3], theirs[0] / 1e6 / theirs[3],
               ANCHOR)  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "tileset", nargs="?", help="tileset.json, folder or .3tz (default: largest sample)"
    )
    ap.add_argument("--repeat", type=int, help="timed repetitions (default 5, short 3)")
    ap.add_argument(
        "--tiles", type=int, help="synthetic tileset size (default 100000, short 20000)"
    )
    ap.add_argument("--contents", type=int,
                    help="time at most this many contents per tileset (default all, short 250)")  # fmt: skip
    add_arguments(ap)
    args = ap.parse_args()
    repeat = args.repeat or (3 if args.short else 5)
    limit = args.contents or (250 if args.short else None)
    n_tiles = args.tiles or (20_000 if args.short else 100_000)

    rows = []
    if args.tileset:
        rows.append(reader_row("read_given", Path(args.tileset), repeat, limit))
    else:  # the largest sample and the Krefeld tileset, when built
        if SAMPLES.exists():
            rows.append(reader_row("read_sample", largest_sample(), repeat, limit))
        else:
            why = f"no 3D Tiles samples at ../{SAMPLES.relative_to(REPO.parent)}"
            print(why)
            rows.append(skipped(BENCH, "read_sample", ANCHOR, why))
        if KREFELD_TILES.exists():
            rows.append(reader_row("read_krefeld", KREFELD_TILES, repeat, limit))
        else:
            why = "no build/krefeld/tiles (run `twin data build`)"
            print(why)
            rows.append(skipped(BENCH, "read_krefeld", ANCHOR, why))
    # no anchor for the traversal: its times are printed, not checked
    print(f"camera traversal of a synthetic {n_tiles:,}-tile tileset", flush=True)
    bench_traversal(n_tiles, repeat)
    return finish(rows, args)


if __name__ == "__main__":
    sys.exit(main())
