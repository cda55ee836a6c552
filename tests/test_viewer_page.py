"""The viewer page in headless Chromium (software WebGL) against `twin serve`'s server: it loads the
Krefeld tileset with no console error and no request to any host but 127.0.0.1, shows the city (a
screenshot of many colours that changes when the camera moves), and its time slider moves the
vehicles of a vehicles JSON (two screenshots at two times differ where the vehicles are)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import rasterio
from viewer_browser import HEIGHT, WIDTH, Browser, chromium_path, viewer_static

from twin.geo import LocalFrame
from twin.viewer.server import serve

VENDOR = viewer_static() / "vendor" / "three" / "three.module.js"
TOOLBAR_PX = 40  # the toolbar's strip at the top (its clock changes with the time)

pytestmark = [
    pytest.mark.skipif(chromium_path() is None, reason="needs Debian's chromium"),
    pytest.mark.skipif(
        not VENDOR.is_file(),
        reason="needs the viewer's npm packages in twin/viewer/static/vendor (make needs npm)",
    ),
]


def open_tracks(build: Path, frame: LocalFrame) -> dict[str, list[tuple[float, np.ndarray]]]:
    """Two synthetic tracks near the anchor on open ground (no building or tree within a raster
    cell): a bus driving 70 m north in 60 s, a truck 70 m east; (t s, ENU m on the terrain)."""
    with rasterio.open(build / "building_id.tif") as r:
        x0, y0, _ = frame.enu_to_utm(np.zeros((1, 3)))
        win = rasterio.windows.from_bounds(x0[0] - 500, y0[0] - 500, x0[0] + 500, y0[0] + 500,
                                           r.transform)  # fmt: skip
        blocked = r.read(1, window=win) != 0
        transform = r.window_transform(win)
    with rasterio.open(build / "canopy_height.tif") as r:
        blocked |= r.read(1, window=win, boundless=True, fill_value=0) > 0
    # a cell is free when it and its 8 neighbours hold no building and no tree
    pad = np.pad(blocked, 1, constant_values=True)
    free = ~np.any([pad[1 + dy : pad.shape[0] - 1 + dy, 1 + dx : pad.shape[1] - 1 + dx]
                    for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)  # fmt: skip
    n = 8  # cells along a 70 m track
    rows, cols = free.shape
    order = sorted(((r, c) for r in range(rows) for c in range(cols)),
                   key=lambda rc: (rc[0] - rows / 2) ** 2 + (rc[1] - cols / 2) ** 2)  # fmt: skip
    found: dict[str, list[tuple[int, int]]] = {}
    for r, c in order:
        for name, (dr, dc) in (("bus", (-1, 0)), ("truck", (0, 1))):  # north: row up; east: col up
            cells = [(r + k * dr, c + k * dc) for k in range(n)]
            if name in found or not all(0 <= a < rows and 0 <= b < cols and free[a, b]
                                        for a, b in cells):  # fmt: skip
                continue
            taken = {cell for cs in found.values() for cell in cs}
            if any(abs(a - ta) <= 3 and abs(b - tb) <= 3 for a, b in cells for ta, tb in taken):
                continue
            found[name] = cells
        if len(found) == 2:
            break
    assert len(found) == 2, "no open ground near the anchor for the synthetic vehicles"
    tracks = {}
    for name, cells in found.items():
        (ra, ca), (rb, cb) = cells[0], cells[-1]
        ends = [transform * (cc + 0.5, rr + 0.5) for rr, cc in ((ra, ca), (rb, cb))]
        tracks[name] = [(0.0, ends[0]), (60.0, ends[1])]
    return tracks


@pytest.fixture(scope="module")
def site(krefeld_build: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The served roots (viewer, the Krefeld tiles, a scenes folder holding a vehicles JSON)."""
    tiles = krefeld_build / "tiles"
    extras = json.loads((tiles / "tileset.json").read_text("utf-8"))["extras"]
    anchor = extras["anchor"]
    frame = LocalFrame(anchor["lon"], anchor["lat"], anchor["h"])
    vehicles = []
    with rasterio.open(krefeld_build / "terrain.tif") as terrain:
        for cls, samples in open_tracks(krefeld_build, frame).items():
            x = [p[0] for _, p in samples]
            y = [p[1] for _, p in samples]
            ground = np.array([v[0] for v in terrain.sample(zip(x, y, strict=True))])
            enu = frame.utm_to_enu(np.array(x), np.array(y), ground)  # DHHN2016 heights
            vehicles.append({"id": cls, "class": cls, "t": [t for t, _ in samples],
                             "p": frame.enu_to_ecef(enu).tolist(), "enu": enu.tolist()})  # fmt: skip
    scenes = tmp_path_factory.mktemp("scenes")
    (scenes / "test").mkdir()
    doc = {"frame": "EPSG:4978", "vehicles": [{k: v[k] for k in ("id", "class", "t", "p")}
                                              for v in vehicles]}  # fmt: skip
    (scenes / "test" / "vehicles.json").write_text(json.dumps(doc), "utf-8")
    return {"tiles": tiles, "scenes": scenes, "frame": frame, "vehicles": vehicles}


@pytest.fixture(scope="module")
def page(site: dict):
    """A Chromium showing the viewer with the vehicles JSON, at its first full frame."""
    srv = serve({"viewer": viewer_static(), "tiles": site["tiles"], "scenes": site["scenes"]})
    browser = None
    try:
        browser = Browser()
        browser.navigate(srv.url + "viewer/index.html?vehicles=/scenes/test/vehicles.json")
        state = browser.wait_viewer(timeout=120)
        yield browser, state, srv
    finally:
        if browser is not None:
            browser.close()
        srv.close()


def distinct_colours(img: np.ndarray) -> int:
    return len(np.unique(img.reshape(-1, 3), axis=0))


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel mask of a visible difference between two screenshots."""
    return np.abs(a.astype(int) - b.astype(int)).max(axis=2) > 24


def test_loads_without_errors_from_loopback_only(page) -> None:
    browser, state, srv = page
    assert state["tilesLoaded"] is True
    assert state["errors"] == [] and browser.console_errors == []
    assert state["firstFrameMs"] > 0
    paths = [urlsplit(u).path for u in browser.requests]
    assert "/tiles/tileset.json" in paths
    assert any(p.startswith("/tiles/content/") and p.endswith(".glb") for p in paths)
    assert "/scenes/test/vehicles.json" in paths
    for url in browser.requests:
        parts = urlsplit(url)
        if parts.scheme in ("http", "https", "ws", "wss"):
            assert parts.hostname == "127.0.0.1", url
        else:
            assert parts.scheme in ("data", "blob", "about"), url


def test_shows_the_city_and_follows_the_camera(page) -> None:
    browser, state, _ = page
    home = browser.screenshot()
    assert home.shape == (HEIGHT, WIDTH, 3)
    view = home[TOOLBAR_PX:]
    colours, counts = np.unique(view.reshape(-1, 3), axis=0, return_counts=True)
    assert len(colours) > 2000  # textured ground and buildings, not a cleared canvas
    assert counts.max() < 0.5 * counts.sum()  # no colour (e.g. the sky) fills the view
    # from the west, low over the city
    browser.evaluate(
        "twinViewer.setCamera({position: [-2500, 600, 300], target: [500, 0, 0]})", timeout=120
    )
    moved = browser.screenshot()
    assert changed(home, moved)[TOOLBAR_PX:].mean() > 0.3
    assert distinct_colours(moved[TOOLBAR_PX:]) > 2000
    assert browser.console_errors == []


def test_time_slider_moves_the_vehicles(page, site: dict) -> None:
    browser, state, _ = page
    assert state["timeRange"] == [0, 60]
    # above the vehicles, looking down from the south (local frame: x east, y up, z south)
    mid = np.mean([v["enu"][0] for v in site["vehicles"]] + [v["enu"][-1] for v in site["vehicles"]],
                  axis=0)  # fmt: skip
    target = [mid[0], mid[2], -mid[1]]
    camera = {"position": [target[0], target[1] + 260, target[2] + 60], "target": target}
    browser.evaluate(f"twinViewer.setCamera({json.dumps(camera)})", timeout=120)
    shots, where = {}, {}
    for t in (0.0, 45.0):
        browser.evaluate(f"twinViewer.setTime({t})", timeout=60)
        shots[t] = browser.screenshot()
        where[t] = [
            browser.evaluate(f"twinViewer.project({json.dumps(position(v, t))})")
            for v in site["vehicles"]
        ]
    diff = changed(shots[0.0], shots[45.0])
    near = np.zeros_like(diff)
    for points in where.values():
        for p in points:
            assert p["visible"] and 0 <= p["x"] < WIDTH and TOOLBAR_PX <= p["y"] < HEIGHT, p
            x, y = int(p["x"]), int(p["y"])
            box = diff[max(y - 12, 0) : y + 12, max(x - 12, 0) : x + 12]
            assert box.mean() > 0.1, (p, box.mean())  # each vehicle left or reached this spot
            near[max(y - 60, 0) : y + 60, max(x - 60, 0) : x + 60] = True
    near[:TOOLBAR_PX] = True
    assert diff[~near].mean() < 0.01  # and nothing else on the screen moved
    assert browser.console_errors == []


def position(vehicle: dict, t: float) -> list[float]:
    """A synthetic vehicle's EPSG:4978 position at time t (linear between its samples)."""
    ts, ps = np.array(vehicle["t"]), np.array(vehicle["p"])
    return [float(np.interp(t, ts, ps[:, k])) for k in range(3)]
