"""The viewer page in headless Chromium (software WebGL) against `twin serve`'s server: it loads the
Krefeld tileset with no console error and no request to any host but 127.0.0.1, shows the city (a
screenshot of many colours that changes when the camera moves), its time slider moves the vehicles
of a vehicles JSON (two screenshots at two times differ where the vehicles are), and a real station
scene (`nordwall`, exported from the city build) brings the camera to its anchor and shows its
redesign there (the view differs from the same camera without the scene around the anchor)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import rasterio
from PIL import Image
from viewer_browser import HEIGHT, WIDTH, Browser, chromium_path, viewer_static

from twin.geo import GEOID_HEIGHT_M, LocalFrame, wgs84_to_ecef
from twin.scenes.compose import export
from twin.scenes.station import resolve_station
from twin.scenes.views import SCENES_DIR
from twin.viewer.server import serve

VENDOR = viewer_static() / "vendor" / "three" / "three.module.js"
TOOLBAR_PX = 40  # the toolbar's strip at the top (its clock changes with the time)
STATION = "nordwall"
SCENE_URL = f"/scenes/{STATION}/{STATION}.glb"
VEHICLES_URL = "/scenes/test/vehicles.json"

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
    station = resolve_station(STATION, SCENES_DIR)
    export(station, krefeld_build, scenes, preview=None)  # -> scenes/nordwall/nordwall.glb
    return {"tiles": tiles, "scenes": scenes, "frame": frame, "vehicles": vehicles,
            "station": station}  # fmt: skip


@pytest.fixture(scope="module")
def viewer(site: dict):
    """One Chromium for the module and the server of the viewer, the tiles and the scenes; `open`
    shows a page (unless it is shown already) and gives its state at its first full frame."""
    srv = serve({"viewer": viewer_static(), "tiles": site["tiles"], "scenes": site["scenes"]})
    browser = None
    try:
        browser = Browser()
        yield Viewer(browser, srv.url)
    finally:
        if browser is not None:
            browser.close()
        srv.close()


class Viewer:
    """The module's browser and the page it shows."""

    def __init__(self, browser: Browser, base: str) -> None:
        self.browser, self.base = browser, base
        self.shown: tuple[str, dict] | None = None

    def open(self, query: str) -> tuple[Browser, dict]:
        if self.shown is None or self.shown[0] != query:
            self.browser.navigate(self.base + "viewer/index.html?" + query)
            self.shown = (query, self.browser.wait_viewer(timeout=120))
        return self.browser, self.shown[1]


@pytest.fixture
def page(viewer: Viewer):
    """The viewer with the vehicles JSON, at its first full frame."""
    return viewer.open(f"vehicles={VEHICLES_URL}")


def distinct_colours(img: np.ndarray) -> int:
    return len(np.unique(img.reshape(-1, 3), axis=0))


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel mask of a visible difference between two screenshots."""
    return np.abs(a.astype(int) - b.astype(int)).max(axis=2) > 24


def test_loads_without_errors_from_loopback_only(page, site) -> None:
    browser, state = page
    assert state["tilesLoaded"] is True
    assert state["errors"] == [] and browser.console_errors == []
    assert state["firstFrameMs"] > 0
    paths = [urlsplit(u).path for u in browser.requests]
    assert "/tiles/tileset.json" in paths
    assert any(p.startswith("/tiles/content/") and p.endswith(".glb") for p in paths)
    assert VEHICLES_URL in paths
    assert_loopback_only(browser.requests)
    doc = json.loads((site["tiles"] / "tileset.json").read_text("utf-8"))
    if str(doc["extras"].get("textures", "")).startswith("KTX2"):  # drawn through KTX2Loader
        assert "/viewer/vendor/three/addons/libs/basis/basis_transcoder.wasm" in paths


def assert_loopback_only(requests: list[str]) -> None:
    for url in requests:
        parts = urlsplit(url)
        if parts.scheme in ("http", "https", "ws", "wss"):
            assert parts.hostname == "127.0.0.1", url
        else:
            assert parts.scheme in ("data", "blob", "about"), url


def test_shows_the_city_and_follows_the_camera(page) -> None:
    browser, state = page
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
    browser, state = page
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


def anchor_local(site: dict) -> np.ndarray:
    """The station's anchor (m above sea level) in the page's frame: x east, y up, z south (m)."""
    st = site["station"]
    ecef = np.array(wgs84_to_ecef(st.lon, st.lat, st.height + GEOID_HEIGHT_M), dtype=float)
    e, n, u = site["frame"].ecef_to_enu(ecef.reshape(1, 3))[0]
    return np.array([e, u, -n])


def test_a_scene_brings_the_camera_to_its_anchor_and_shows_its_redesign(viewer, site) -> None:
    browser, state = viewer.open(f"scene={SCENE_URL}")
    assert state["errors"] == [] and browser.console_errors == []
    assert state["tilesLoaded"] is True
    paths = [urlsplit(u).path for u in browser.requests]
    assert SCENE_URL in paths
    assert any(p.startswith("/tiles/content/") for p in paths)  # the tiles followed the camera
    assert_loopback_only(browser.requests)
    shown = browser.evaluate("twinViewer.scene")
    assert shown["name"] == STATION and shown["url"] == SCENE_URL
    anchor = anchor_local(site)
    assert np.linalg.norm(np.array(shown["local"]) - anchor) < 0.5
    camera = state["camera"]
    target, eye = np.array(camera["target"]), np.array(camera["position"])
    assert np.linalg.norm(target - anchor) < 50
    assert 50 < np.linalg.norm(eye - target) < 400 and eye[1] > target[1] + 20  # above, not in it
    with_scene = browser.screenshot()
    p = browser.evaluate(f"twinViewer.project({json.dumps(shown['ecef'])})")
    assert p["visible"] and 0 <= p["x"] < WIDTH and TOOLBAR_PX <= p["y"] < HEIGHT, p
    if os.environ.get("TWIN_VIEWER_SHOTS"):  # a folder to keep the screenshots in, to look at
        Image.fromarray(with_scene).save(Path(os.environ["TWIN_VIEWER_SHOTS"]) / "scene.png")
    # the picker: none, the camera elsewhere, the scene again -> the camera is back at its anchor
    pick = "(v) => {const s = document.getElementById('scene'); s.value = v;" \
           " s.dispatchEvent(new Event('change')); return twinViewer.loading;}"  # fmt: skip
    browser.evaluate(f"({pick})('')", timeout=60)
    assert browser.evaluate("twinViewer.scene") is None
    away = {"position": [-2500, 600, 300], "target": [500, 0, 0]}
    browser.evaluate(f"twinViewer.setCamera({json.dumps(away)})", timeout=120)
    browser.evaluate(f"({pick})({json.dumps(SCENE_URL)})", timeout=120)
    assert browser.evaluate("twinViewer.scene")["name"] == STATION
    back = browser.evaluate("twinViewer.getCamera()")
    assert np.allclose(back["target"], target, atol=0.01)
    assert np.allclose(back["position"], eye, atol=0.01)
    assert browser.evaluate("twinViewer.errors") == [] and browser.console_errors == []
    # the same camera (?camera=, which a scene does not override), no scene
    view = ",".join(f"{v:.3f}" for v in [*eye, *target])
    browser, state = viewer.open(f"camera={view}")
    assert state["errors"] == [] and browser.console_errors == []
    assert np.allclose(state["camera"]["target"], target, atol=0.01)
    assert browser.evaluate("twinViewer.scene") is None
    city = browser.screenshot()
    if os.environ.get("TWIN_VIEWER_SHOTS"):
        Image.fromarray(city).save(Path(os.environ["TWIN_VIEWER_SHOTS"]) / "city.png")
    x, y = int(p["x"]), int(p["y"])
    window = changed(with_scene, city)[max(y - 80, TOOLBAR_PX) : y + 80, max(x - 120, 0) : x + 120]
    assert window.mean() > 0.2, window.mean()  # the redesigned street replaces the city's
    # the city itself is the tiles' in both (the scene's own clip of it is hidden): the foreground,
    # well south of the street, is the same
    assert changed(with_scene, city)[y + 200 :].mean() < 0.01
    assert distinct_colours(with_scene[TOOLBAR_PX:]) > 2000
