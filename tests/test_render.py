"""Offscreen rendering of the textured tileset: pictures that are not blank, buildings that stand out from
the ground with windows on them, streets on the ground and buildings on both sides in the Ostwall view of
the Krefeld build, named views, and the `twin scene render` command."""

from __future__ import annotations

import colorsys
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import write_mini_pack
from PIL import Image

from twin.city.build import run_build
from twin.city.pack import load_pack
from twin.city.steps import city_steps
from twin.citytiles.writer import TilesetOptions, write_tileset_from_build
from twin.cli import main
from twin.errors import ConfigError
from twin.geo import utm_to_wgs84
from twin.scenes.render import Camera, render_tileset
from twin.scenes.views import SCENES_DIR, list_views, load_view, parse_view

REPO = Path(__file__).resolve().parents[1]
SIZE = (240, 135)


@pytest.fixture(scope="module")
def mini_tiles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("render")
    pack = load_pack(write_mini_pack(root / "pack"))
    steps = [s for s in city_steps() if s.name in ("terrain", "landcover", "streets", "buildings")]
    run_build(pack, steps, root / "build")
    opts = TilesetOptions(leaf_size_m=250.0, ground_px=128, facade_width_px=256, roof_px=64)
    return (
        write_tileset_from_build(pack, root / "build", root / "tiles", opts).path / "tileset.json"
    )


def mini_camera() -> Camera:
    """South of the mini pack's row of buildings (y 5689100..5689125), looking north-east at them."""
    lon, lat = utm_to_wgs84(330330.0, 5689030.0)
    return Camera(float(lon), float(lat), 52.0, 40.0, -12.0)


def layers(tileset: Path, camera: Camera, size: tuple[int, int]) -> dict[str, np.ndarray]:
    """The same view drawn empty (sky only), with the ground only, and with everything."""
    return {
        name: render_tileset(tileset, camera, size, show=show).astype(int)
        for name, show in (("sky", ()), ("ground", ("ground",)), ("full", ("ground", "buildings")))
    }


def masks(img: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Pixels showing buildings (full differs from ground only) and the ground (ground differs from
    sky and no building covers it)."""
    building = np.abs(img["full"] - img["ground"]).sum(axis=-1) > 30
    ground = (np.abs(img["ground"] - img["sky"]).sum(axis=-1) > 30) & ~building
    return building, ground


def hue_deg(rgb: np.ndarray) -> float:
    r, g, b = (float(v) / 255 for v in rgb)
    return colorsys.rgb_to_hsv(r, g, b)[0] * 360


def hue_gap(a: float, b: float) -> float:
    d = abs(a - b) % 360
    return min(d, 360 - d)


def check_picture(img: dict[str, np.ndarray], min_building_share: float) -> tuple[np.ndarray, ...]:
    full = img["full"]
    assert full.std() > 20  # not blank, not one colour
    building, ground = masks(img)
    assert building.mean() > min_building_share and ground.mean() > 0.05
    b_rgb, g_rgb = full[building].mean(axis=0), full[ground].mean(axis=0)
    # buildings and ground have different colours: far apart in RGB or in hue
    assert np.abs(b_rgb - g_rgb).sum() > 40 or hue_gap(hue_deg(b_rgb), hue_deg(g_rgb)) > 20
    # windows: inside buildings, neighbouring pixels often jump in brightness (pane against wall,
    # both ways); flat-coloured facades give about 1 % such jumps, window grids 10 % and more
    lum = full.mean(axis=-1)
    for axis in (0, 1):
        a, b = (slice(1, None), slice(None, -1))
        pair = (building[a] & building[b]) if axis == 0 else (building[:, a] & building[:, b])
        jump = np.abs(lum[a] - lum[b]) if axis == 0 else np.abs(lum[:, a] - lum[:, b])
        assert (jump[pair] > 25).mean() > 0.05, f"no window edges along axis {axis}"
    return building, ground


def test_render_mini_city_shows_buildings_with_windows_on_the_ground(mini_tiles: Path):
    img = layers(mini_tiles, mini_camera(), SIZE)
    building, ground = check_picture(img, min_building_share=0.02)
    # the sky is above the ground: the top rows are sky, the bottom rows ground
    assert not (building[:5].any() or ground[:5].any())
    assert ground[-5:].mean() > 0.9


def test_render_writes_png_atomically(mini_tiles: Path, tmp_path: Path):
    out = tmp_path / "view.png"
    img = render_tileset(mini_tiles, mini_camera(), (96, 54), out=out)
    assert np.array_equal(np.asarray(Image.open(out).convert("RGB")), img)
    assert [p.name for p in tmp_path.iterdir()] == ["view.png"]


def test_ostwall_view_of_the_krefeld_build(krefeld_build: Path):
    view = load_view(SCENES_DIR / "ostwall.toml")
    img = layers(krefeld_build / "tiles" / "tileset.json", view.camera, (320, 180))
    building, ground = check_picture(img, min_building_share=0.05)
    # streets on the ground: dark, neutral grey asphalt in the lower half
    full = img["full"]
    low = np.zeros_like(ground)
    low[full.shape[0] // 2 :] = True
    px = full[ground & low]
    asphalt = (px.max(axis=1) - px.min(axis=1) < 15) & (px.mean(axis=1) < 115)
    assert asphalt.mean() > 0.05
    # and lighter pavement or markings beside it
    light = (px.max(axis=1) - px.min(axis=1) < 25) & (px.mean(axis=1) > 150)
    assert light.mean() > 0.01


def test_ostwall_view_has_buildings_on_both_sides(krefeld_build: Path):
    """Looking north along the Ostwall from the Hauptbahnhof, the inner city stands on the left and the
    east of the city centre on the right. Drawn with the buildings layer alone (nothing in front of
    them, no ground whose shading could differ), the pixels it changes from the empty picture cover
    more than 12 % of each half of the picture."""
    view = load_view(SCENES_DIR / "ostwall.toml")
    tileset, size = krefeld_build / "tiles" / "tileset.json", (320, 180)
    sky = render_tileset(tileset, view.camera, size, show=()).astype(int)
    alone = render_tileset(tileset, view.camera, size, show=("buildings",)).astype(int)
    building = np.abs(alone - sky).sum(axis=-1) > 30
    half = building.shape[1] // 2
    left, right = building[:, :half].mean(), building[:, half:].mean()
    assert left > 0.12 and right > 0.12, (left, right)


def test_named_views_are_valid_and_parse():
    views = {v.name: v for v in list_views()}
    assert {"ostwall", "rheinhafen"} <= set(views)
    v = views["ostwall"]
    assert 51.2 < v.camera.lat < 51.4 and 6.5 < v.camera.lon < 6.7 and v.camera.pitch < 0
    assert parse_view("ostwall") == v
    custom = parse_view("51.33, 6.57, 80, 90, -20")
    assert (custom.camera.lat, custom.camera.lon, custom.camera.heading) == (51.33, 6.57, 90.0)
    with pytest.raises(ConfigError, match="not a view"):
        parse_view("nowhere")


def test_bad_view_file_names_file_and_key(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[view]\nlat = 51.3\nlon = 6.5\nheight = 50\nheading = 0\npitch = 120\n")
    with pytest.raises(ConfigError, match=r"bad\.toml.*'view\.pitch'.*-90 to 90"):
        load_view(bad)


def test_scene_render_command(mini_tiles: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    cam = mini_camera()
    spec = f"{cam.lat},{cam.lon},{cam.height},{cam.heading},{cam.pitch}"
    out = tmp_path / "out.png"
    rc = main(
        [
            "scene",
            "render",
            "--view",
            spec,
            "--tileset",
            str(mini_tiles),
            "-o",
            str(out),
            "--size",
            "160x90",
        ]
    )
    assert rc == 0
    assert Image.open(out).size == (160, 90)
    assert "160x90" in capsys.readouterr().out
    rc = main(
        ["scene", "render", "--view", "nowhere", "--tileset", str(mini_tiles), "-o", str(out)]
    )
    assert rc == 1 and "twin: error: view 'nowhere'" in capsys.readouterr().err
    missing = tmp_path / "none" / "tileset.json"
    rc = main(["scene", "render", "--view", spec, "--tileset", str(missing), "-o", str(out)])
    assert rc == 1 and "twin data build" in capsys.readouterr().err


# -- vehicles of a traffic run in the scene ------------------------------------------------------------


def _fake_run(
    root: Path, vehicles: list[tuple[str, str, float, float, float]], net_location: str
) -> Path:
    """A run folder as `twin traffic run` writes it: plan.json naming the net, and one seed folder
    with vtypes.json and an FCD with time steps 0 and 10 s (the vehicles are in the second)."""
    import gzip
    import json

    root.mkdir(parents=True, exist_ok=True)
    net = root / "n.net.xml"
    net.write_text(f'<net version="1.20">{net_location}<edge id="e"/></net>', encoding="utf-8")
    (root / "plan.json").write_text(json.dumps({"net": str(net)}), encoding="utf-8")
    (root / "status.json").write_text(json.dumps({"state": "finished", "kind": "traffic"}), "utf-8")
    seed = root / "baseline" / "seed-1"
    seed.mkdir(parents=True)
    types = {"car": "passenger", "bus": "bus", "bike": "bicycle"}
    (seed / "vtypes.json").write_text(
        json.dumps({t: {"vClass": c} for t, c in types.items()}), encoding="utf-8"
    )
    rows = "".join(
        f'<vehicle id="{vid}" x="{x}" y="{y}" angle="{a}" type="{t}" speed="5"/>'
        for vid, t, x, y, a in vehicles
    )
    fcd = (
        f'<fcd-export><timestep time="0.00"/><timestep time="10.00">{rows}</timestep></fcd-export>'
    )
    with gzip.open(seed / "fcd.xml.gz", "wt", encoding="utf-8") as fh:
        fh.write(fcd)
    return root


def test_fcd_step_and_vehicle_boxes(tmp_path: Path):
    """Positions move from the net's coordinates (offset, or another projection) to EPSG:25832; a
    box ends at the front bumper, as long and wide as its class, standing on the terrain."""
    from twin.errors import DataError
    from twin.scenes.vehicles import SHAPES, box_corners, load_vehicles

    offset = '<location netOffset="-330000.00,-5689000.00" projParameter="EPSG:25832"/>'
    run = _fake_run(tmp_path / "a", [("b1", "bus", 300.0, 100.0, 90.0)], offset)
    t, vehicles = load_vehicles(run, 5.0)  # the first step at or after 5 s
    assert t == 10.0 and len(vehicles) == 1
    bus = vehicles[0]
    assert (bus.vclass, bus.x, bus.y) == ("bus", 330300.0, 5689100.0)
    corners = box_corners(bus, 40.0)  # heading east: the box lies west of the front bumper
    length, width, height, _ = SHAPES["bus"]
    assert corners[:, 0].min() == pytest.approx(330300.0 - length)
    assert corners[:, 0].max() == pytest.approx(330300.0)
    assert corners[:, 1].min() == pytest.approx(5689100.0 - width / 2)
    assert corners[:, 2].min() == 40.0 and corners[:, 2].max() == pytest.approx(40.0 + height)
    # EPSG:4647 is UTM zone 32 with the zone number before the easting
    zoned = '<location netOffset="0.00,0.00" projParameter="EPSG:4647"/>'
    run = _fake_run(tmp_path / "b", [("c1", "car", 32330300.0, 5689100.0, 0.0)], zoned)
    _, (car,) = load_vehicles(run / "baseline" / "seed-1", 10.0)
    assert (car.x, car.y) == (pytest.approx(330300.0, abs=1e-3), pytest.approx(5689100.0, abs=1e-3))
    with pytest.raises(DataError, match=r"fcd\.xml\.gz: no time step at or after 99 s .*0\.\.10 s"):
        load_vehicles(run, 99.0)
    with pytest.raises(DataError, match="no FCD output"):
        load_vehicles(tmp_path / "a" / "baseline", 0.0)


def test_vehicles_of_a_run_are_drawn_in_the_scene(mini_tiles: Path, tmp_path: Path, capsys):
    """A bus placed 60 m in front of the camera shows as red pixels that the picture without it lacks;
    the command draws it from a run folder at the given time."""
    from twin.geo import wgs84_to_utm

    cam = mini_camera()
    x0, y0 = (float(v) for v in wgs84_to_utm(cam.lon, cam.lat))
    ang = math.radians(cam.heading)
    x, y = x0 + 60 * math.sin(ang), y0 + 60 * math.cos(ang)
    location = '<location netOffset="0.00,0.00" projParameter="EPSG:25832"/>'
    run = _fake_run(tmp_path / "run", [("bus1", "bus", x, y, 90.0)], location)
    pack_dir = mini_tiles.parents[1] / "pack"
    build_dir = tmp_path / "build"  # laid out as `twin data build` does: <build>/<pack name>/
    (build_dir / "mini").mkdir(parents=True)
    shutil.copy(mini_tiles.parents[1] / "build" / "terrain.tif", build_dir / "mini")
    spec = f"{cam.lat},{cam.lon},{cam.height},{cam.heading},{cam.pitch}"
    pictures = {}
    for name, extra in (("plain", []), ("bus", ["--traffic", str(run), "--at", "00:00:10"])):
        out = tmp_path / f"{name}.png"
        args = ["scene", "render", "--view", spec, "--tileset", str(mini_tiles), "--pack",
                str(pack_dir), "--build-dir", str(build_dir), "-o", str(out), "--size", "240x135"]  # fmt: skip
        assert main([*args, *extra]) == 0, capsys.readouterr().err
        pictures[name] = np.asarray(Image.open(out).convert("RGB")).astype(int)
    assert "1 vehicles at t=10 s" in capsys.readouterr().out
    changed = np.abs(pictures["bus"] - pictures["plain"]).sum(axis=-1) > 30
    r, g, b = (pictures["bus"][..., k] for k in range(3))
    red = changed & (r > g + 60) & (r > b + 60)
    assert red.sum() > 30, red.sum()
    rc = main(["scene", "render", "--view", spec, "--tileset", str(mini_tiles), "--pack",
               str(pack_dir), "--build-dir", str(build_dir), "-o", str(tmp_path / "x.png"),
               "--traffic", str(run)])  # fmt: skip
    assert rc == 1 and "--traffic needs --at" in capsys.readouterr().err


def test_vehicles_on_a_boulevard_go_onto_its_carriageways_and_tracks(krefeld_build: Path):
    """A car and a tram the net puts beside the Ostwall's centre line (its central strip in the
    drawn cross-section) are moved onto the carriageway and the tram band on their right."""
    import pyogrio
    import shapely

    from twin.scenes.vehicles import Vehicle, onto_boulevards

    bands = krefeld_build / "boulevards.gpkg"
    meta, _, wkb, values = pyogrio.raw.read(bands, layer="boulevards")
    cols = dict(zip(meta["fields"], values, strict=True))
    polys = shapely.from_wkb(wkb)
    ostwall = np.asarray(cols["street"]) == "Ostwall"
    strip = [p for p, k, o in zip(polys, cols["kind"], ostwall, strict=True) if o and k == "median"]
    centre = max(strip, key=lambda p: p.area).representative_point()
    north = [Vehicle("car", "passenger", centre.x, centre.y, 352.0),
             Vehicle("tram", "tram", centre.x, centre.y, 352.0)]  # fmt: skip
    car, tram = onto_boulevards(north, bands)
    for v, kind in ((car, "carriageway"), (tram, "tram")):
        p = shapely.Point(v.x, v.y)
        on = [
            k for g, k, o in zip(polys, cols["kind"], ostwall, strict=True) if o and g.contains(p)
        ]
        assert on == [kind], (v.id, on)
        assert v.x > centre.x  # heading north: the right-hand side is the east
    away = Vehicle("far", "passenger", 300000.0, 5600000.0, 0.0)
    assert onto_boulevards([away], bands) == [away]
