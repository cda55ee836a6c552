"""Benchmark the AR station export and the web viewer's first frame, each against its floor.

* ``station_export``: one AR station package (``twin.scenes.compose.export`` of the Nordwall
  station: the city clipped from the tiles, the redesign, GLB + USDZ + tileset + manifest, no
  previews) against copying the source tile files that package is clipped from, in the same run:
  the floor no converter can beat (it must at least read them). Prints seconds, sizes and the
  ratio; goal: a package in <= 30 s on 2 cores within the mobile AR budget.
* ``viewer_first_frame``: seconds from navigation to the viewer's first full frame of the city
  (every visible tile loaded and drawn) in headless Chromium with software rendering, against
  fetching the same files (every URL the frame requested, uncached) from the same page: what the
  browser spends on the bytes alone. Goal: first frame <= 5 s.

    python benchmarks/bench_scenes.py [--short]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(1, str(REPO / "tests"))  # the Chromium driver the viewer's tests use

from common import Row, add_arguments, finish, skipped  # noqa: E402

BENCH = "scenes"
PRODUCTS = REPO / "build" / "krefeld"
STATION = REPO / "scenes" / "station-nordwall.toml"


def _source_tiles(station, products: Path) -> list[Path]:
    """The tileset and the content files of the finest tiles the station's clip reads."""
    from twin.scenes.compose import Placement
    from twin.tiles import open_tileset, select_by_region

    tileset = products / "tiles" / "tileset.json"
    place = Placement.of(station)
    chosen = select_by_region(open_tileset(tileset), ((place.x, place.y), float(station.radius)))
    files = [tileset] + [tileset.parent / ref.uri for tile in chosen for ref in tile.contents]
    return [f for f in files if f.is_file()]


def export_rows(repeat: int) -> list[Row]:
    """The station package against copying its source tiles."""
    from twin.scenes.compose import export
    from twin.scenes.station import load_station

    if not (PRODUCTS / "tiles" / "tileset.json").is_file():
        return [skipped(BENCH, "station_export", "copying the source tiles",
                        "no Krefeld build (make bench builds it first)")]  # fmt: skip
    station = load_station(STATION)
    sources = _source_tiles(station, PRODUCTS)
    ours = copy = float("inf")
    with tempfile.TemporaryDirectory(prefix="bench-scenes-") as tmp:
        for k in range(repeat):
            t0 = time.perf_counter()
            folder = export(station, PRODUCTS, Path(tmp) / f"out{k}", preview=None)
            ours = min(ours, time.perf_counter() - t0)
            dest = Path(tmp) / f"copy{k}"
            dest.mkdir()
            t0 = time.perf_counter()
            for i, f in enumerate(sources):
                shutil.copyfile(f, dest / f"{i}{f.suffix}")
            copy = min(copy, time.perf_counter() - t0)
        sizes = {p.name: p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}
    src_mb = sum(f.stat().st_size for f in sources) / 1e6
    print(f"station {station.name}: package in {ours:.2f} s ({', '.join(f'{n} {b / 1e6:.2f} MB' for n, b in sizes.items())}); "
          f"copying its {len(sources)} source files ({src_mb:.1f} MB) {copy * 1e3:.1f} ms; "
          f"goal <= 30 s: {'met' if ours <= 30 else 'not met'}")  # fmt: skip
    return [Row(BENCH, "station_export", "packages/s", 1.0 / ours, 1.0 / copy,
                "copying the package's source tile files (shutil.copyfile)")]  # fmt: skip


def viewer_rows() -> list[Row]:
    """The viewer's first full frame against fetching its files from the same page."""
    from viewer_browser import Browser, chromium_path, viewer_static

    from twin.viewer.server import serve

    why = None
    if chromium_path() is None:
        why = "needs Debian's chromium"
    elif not (viewer_static() / "vendor" / "VERSIONS").is_file():
        why = "the viewer's npm modules are not installed (make installs them)"
    elif not (PRODUCTS / "tiles" / "tileset.json").is_file():
        why = "no Krefeld build"
    if why:
        return [skipped(BENCH, "viewer_first_frame", "fetching the frame's files", why)]
    with serve({"viewer": viewer_static(), "tiles": PRODUCTS / "tiles"}) as srv, Browser() as b:
        b.navigate(srv.url + "viewer/index.html")
        state = b.wait_viewer(120.0)
        if state["errors"] or b.console_errors:
            return [Row(BENCH, "viewer_first_frame", "frames/s", None, None, "",
                        failed=f"viewer errors: {state['errors'] or b.console_errors}")]  # fmt: skip
        first = float(state["firstFrameMs"]) / 1000.0
        urls = sorted({u for u in b.requests if u.startswith(srv.url)})
        fetch_ms = b.evaluate(
            "(async (urls) => { const t0 = performance.now();"
            " await Promise.all(urls.map(u => fetch(u, {cache: 'no-store'})"
            ".then(r => r.arrayBuffer()))); return performance.now() - t0; })"
            f"({urls!r})",
            timeout=120.0,
        )
    fetch = float(fetch_ms) / 1000.0
    print(f"viewer: first full frame of the city in {first:.2f} s (goal <= 5 s: "
          f"{'met' if first <= 5 else 'not met'}); fetching its {len(urls)} files again "
          f"{fetch:.2f} s")  # fmt: skip
    return [Row(BENCH, "viewer_first_frame", "frames/s", 1.0 / first, 1.0 / fetch,
                "fetching the frame's files from the same page (no cache)")]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(ap)
    args = ap.parse_args(argv)
    rows = export_rows(repeat=1 if args.short else 3) + viewer_rows()
    return finish(rows, args)


if __name__ == "__main__":
    sys.exit(main())
