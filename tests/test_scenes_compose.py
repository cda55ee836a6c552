"""AR station scenes composed from the Krefeld build: the station files, the geo-anchor (clipped tiles
against buildings.gpkg), the redesign on the real street axis, traffic tracks from an FCD file, a
draped raster, and `twin scene export` / `render` on stations (GLB validator, ARKit check, budget,
3D Tiles, the viewer's vehicles JSON, manifest)."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pygltflib
import pyogrio
import pytest
import shapely
from PIL import Image
from scipy.spatial import cKDTree
from test_tiles_writer import validate_glbs

from twin.cli import main
from twin.errors import ConfigError, DataError
from twin.geo import LocalFrame
from twin.scenes.budget import MOBILE_AR
from twin.scenes.compose import (
    OVERLAY_LIFT_M,
    REDESIGN_LIFT_M,
    Placement,
    Terrain,
    band_lines,
    compose,
    section_for,
    street_axis,
)
from twin.scenes.export_usdz import arkit_errors
from twin.scenes.station import load_station, resolve_station, station_files
from twin.scenes.views import list_views, parse_view
from twin.tiles import open_tileset

REPO = Path(__file__).resolve().parent.parent
SCENES = REPO / "scenes"
WALLS = {
    "nordwall": "Nordwall",
    "ostwall": "Ostwall",
    "suedwall": "Südwall",
    "westwall": "Westwall",
}
AXIS_TOLERANCE_M = 0.5  # band centre lines from their designed offset of the street axis
ANCHOR_TOLERANCE_M = 0.05  # clipped building vertices against the footprints of buildings.gpkg


@pytest.fixture(scope="module")
def nordwall(krefeld_build: Path):
    st = resolve_station("nordwall", SCENES)
    return st, compose(st, krefeld_build), Placement.of(st)


def _pack_args(build: Path) -> list[str]:
    return [
        "--pack",
        str(REPO / "data" / "krefeld" / "pack.toml"),
        "--build-dir",
        str(build.parent),
    ]


def _axis(build: Path, st, place):
    return street_axis(build / "streets.gpkg", st.street, place, st.radius)


# -- station files ----------------------------------------------------------------------------------


def test_four_stations_stand_on_their_walls(krefeld_build: Path):
    stations = {load_station(p).name: load_station(p) for p in station_files(SCENES)}
    assert set(stations) == set(WALLS)
    terrain = Terrain(krefeld_build / "terrain.tif")
    for name, st in stations.items():
        assert st.street == WALLS[name]
        place = Placement.of(st)
        axis = _axis(krefeld_build, st, place)
        anchor = shapely.Point(place.x, place.y)
        assert axis.distance(anchor) < 2.0, name  # on the centre line (5 decimals: ~1 m)
        # the heading runs along the axis (either way along it)
        d = axis.project(anchor)
        a, b = axis.interpolate(max(d - 5, 0)), axis.interpolate(d + 5)
        course = math.degrees(math.atan2(b.x - a.x, b.y - a.y)) % 180
        assert abs((st.heading % 180) - course) < 3 or abs((st.heading % 180) - course) > 177
        # anchored at ground level
        assert st.height == pytest.approx(float(terrain(place.x, place.y)), abs=0.3), name
        assert 60 <= st.radius <= 300


def test_a_station_file_is_a_view():
    v = parse_view("nordwall")
    assert v.station is not None and v.station.name == "nordwall"
    assert v.camera.pitch < 0 and v.camera.heading == v.station.heading
    assert v.camera.height > v.station.height + 10
    names = {x.name for x in list_views(SCENES)}
    assert {"ostwall", "rheinhafen", "station-nordwall", "station-westwall"} <= names
    assert parse_view("ostwall").station is None  # the planner view is still the planner view


def test_bad_station_file_names_file_and_key(tmp_path: Path):
    bad = tmp_path / "station-x.toml"
    text = (SCENES / "station-nordwall.toml").read_text(encoding="utf-8")
    bad.write_text(text.replace('kind = "median"', 'kind = "moat"'), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"station-x\.toml.*'redesign\.bands\[4\]\.kind'"):
        load_station(bad)
    bad.write_text(text.replace("radius = 120.0", "radius = -5.0"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"station-x\.toml.*'station\.radius'"):
        load_station(bad)
    with pytest.raises(ConfigError, match="not a station"):
        resolve_station("atlantis", SCENES)


# -- geo-anchor and city clip -----------------------------------------------------------------------


def test_anchor_puts_the_buildings_where_they_are(nordwall, krefeld_build: Path):
    """Clipped building vertices, taken back from the station's ENU frame to EPSG:25832, lie on the
    footprint corners (and at the base height) of the buildings of buildings.gpkg near the anchor."""
    st, scene, place = nordwall
    v = np.concatenate([n.vertices for n in scene.nodes if n.kind == "building"])
    assert np.hypot(v[:, 0], v[:, 1]).min() < st.radius
    x, y, h = place.frame.enu_to_utm(v)
    tree = cKDTree(np.column_stack([x, y]))
    r = st.radius / 2
    box = (place.x - r, place.y - r, place.x + r, place.y + r)
    meta, _, wkb, values = pyogrio.raw.read(krefeld_build / "buildings.gpkg", bbox=box)
    cols = dict(zip(meta["fields"], values, strict=True))
    polys = shapely.from_wkb(wkb)
    checked = 0
    for poly, base in zip(polys, cols["base"], strict=True):
        corners = shapely.get_coordinates(poly.exterior)
        dist, _ = tree.query(corners)
        assert dist.max() < ANCHOR_TOLERANCE_M, dist.max()
        near = tree.query_ball_point(corners[0], ANCHOR_TOLERANCE_M)
        assert np.min(h[near]) == pytest.approx(float(base), abs=ANCHOR_TOLERANCE_M)
        checked += 1
    assert checked >= 5
    # and nothing of the clip reaches far beyond the radius (buildings and trees are kept whole)
    for n in scene.nodes:
        if n.kind in ("ground", "building", "tree"):
            assert np.hypot(n.vertices[:, 0], n.vertices[:, 1]).max() < st.radius + 40, n.name


def test_both_sides_of_the_wall_have_buildings(nordwall, krefeld_build: Path):
    st, scene, place = nordwall
    axis = _axis(krefeld_build, st, place)
    v = np.concatenate([n.vertices for n in scene.nodes if n.kind == "building"])
    x, y, _ = place.frame.enu_to_utm(v)
    left = axis.buffer(st.radius, single_sided=True)
    right = axis.buffer(-st.radius, single_sided=True)
    assert shapely.contains_xy(left, x, y).sum() > 100
    assert shapely.contains_xy(right, x, y).sum() > 100


def test_scene_within_the_mobile_budget(nordwall):
    _, scene, _ = nordwall
    assert 1000 < scene.triangles <= MOBILE_AR.max_triangles
    kinds = {n.kind for n in scene.nodes}
    assert {"ground", "building", "tree", "redesign", "furniture"} <= kinds
    assert any(n.material.texture is not None for n in scene.nodes if n.kind == "building")


# -- the redesign on the street axis ----------------------------------------------------------------


def test_redesign_lies_on_the_real_street_axis(nordwall, krefeld_build: Path):
    """Every band's centre line keeps its designed offset from the Nordwall's axis within 0.5 m,
    sampled every 5 m along the axis' whole length inside the radius; the strips are 5 cm above the
    terrain."""
    st, scene, place = nordwall
    axis = _axis(krefeld_build, st, place)
    assert axis.length > 1.6 * st.radius  # the Wall runs through the whole circle
    section = section_for(st, krefeld_build / "boulevards.gpkg", axis)
    offsets = [c for _, _, _, c in band_lines(axis, section)]
    bands = [n for n in scene.nodes if n.kind == "redesign"]
    assert [n.name.split("_", 2)[2] for n in bands] == [k for k, _ in st.bands]
    samples = [axis.interpolate(d) for d in np.arange(0.0, axis.length, 5.0)]
    terrain = Terrain(krefeld_build / "terrain.tif")
    for node, offset in zip(bands, offsets, strict=True):
        x, y, h = place.frame.enu_to_utm(node.vertices)
        assert np.allclose(h, terrain(x, y) + REDESIGN_LIFT_M, atol=0.02)
        centre = shapely.LineString(
            np.column_stack([(x[0::2] + x[1::2]) / 2, (y[0::2] + y[1::2]) / 2])
        )
        d = np.array([centre.distance(p) for p in samples])
        assert np.abs(d - abs(offset)).max() < AXIS_TOLERANCE_M, (
            node.name,
            np.abs(d - abs(offset)).max(),
        )
    # the cross-section spans its width, centred on the axis
    first, last = bands[0], bands[-1]
    fx, fy, _ = place.frame.enu_to_utm(first.vertices[0::2])
    lx, ly, _ = place.frame.enu_to_utm(last.vertices[1::2])
    width = sum(w for _, w in st.bands)
    for p in samples:
        assert shapely.LineString(np.column_stack([fx, fy])).distance(p) == pytest.approx(
            width / 2, abs=0.5
        )
        assert shapely.LineString(np.column_stack([lx, ly])).distance(p) == pytest.approx(
            width / 2, abs=0.5
        )


def test_redesign_trees_stand_on_the_tree_rows_and_old_trees_go(nordwall, krefeld_build: Path):
    st, scene, place = nordwall
    axis = _axis(krefeld_build, st, place)
    crowns = next(n for n in scene.nodes if n.name == "redesign_tree_crowns")
    x, y, _ = place.frame.enu_to_utm(crowns.vertices)
    section = section_for(st, krefeld_build / "boulevards.gpkg", axis)
    rows = [c for k, _, _, c in band_lines(axis, section) if k == "tree_row"]
    d = shapely.distance(axis, shapely.points(x, y))
    assert np.all(np.min([np.abs(d - abs(r)) for r in rows], axis=0) < 2.5)  # crown radius 2.4 m
    before = compose(st, krefeld_build, redesign=False)
    assert not any(n.kind == "redesign" for n in before.nodes)
    tree_vertices = sum(len(n.vertices) for n in before.nodes if n.name.startswith("city_tree"))
    kept = sum(len(n.vertices) for n in scene.nodes if n.name.startswith("city_tree"))
    assert kept <= tree_vertices


def test_default_section_is_the_packs(krefeld_build: Path):
    st = resolve_station("ostwall", SCENES)
    assert st.bands is None
    place = Placement.of(st)
    section = section_for(st, krefeld_build / "boulevards.gpkg", _axis(krefeld_build, st, place))
    meta, _, _, values = pyogrio.raw.read(krefeld_build / "boulevards.gpkg", layer="boulevards")
    cols = dict(zip(meta["fields"], values, strict=True))
    sel = (np.asarray(cols["street"], dtype=object) == "Ostwall") & (np.asarray(cols["band"]) >= 0)
    assert [b.kind for b in section.bands] == list(np.asarray(cols["kind"], dtype=object)[sel])
    assert section.width == pytest.approx(36.0)


# -- traffic and overlay ----------------------------------------------------------------------------


def _fcd_run(tmp_path: Path, build: Path, axis, place) -> tuple[Path, np.ndarray]:
    """A finished traffic run whose FCD has a car driving along the axis at 10 m/s for 70 s and a
    bus far away; the net is the build's (netOffset 0, EPSG:25832)."""
    run = tmp_path / "runs" / "walls" / "20260310T063000Z"
    seed = run / "baseline" / "seed-1"
    seed.mkdir(parents=True)
    (run / "status.json").write_text(json.dumps({"state": "finished", "kind": "traffic"}))
    (run / "plan.json").write_text(json.dumps({"net": str(build / "krefeld.net.xml.gz")}))
    (seed / "vtypes.json").write_text(
        json.dumps({"car": {"vClass": "passenger"}, "bus": {"vClass": "bus"}})
    )
    start = axis.project(shapely.Point(place.x, place.y)) - 350.0
    track = []
    steps = []
    for k in range(71):
        d = min(max(start + 10.0 * k, 0.0), axis.length)
        p, q = axis.interpolate(d), axis.interpolate(min(d + 1, axis.length))
        angle = math.degrees(math.atan2(q.x - p.x, q.y - p.y)) % 360
        track.append((float(k), p.x, p.y, angle))
        steps.append(
            f'<timestep time="{k:.2f}"><vehicle id="car 1" x="{p.x:.2f}" y="{p.y:.2f}" '
            f'angle="{angle:.2f}" type="car" speed="10"/><vehicle id="bus9" '
            f'x="{place.x + 2000:.2f}" y="{place.y:.2f}" angle="0" type="bus" speed="5"/></timestep>'
        )
    xml = '<?xml version="1.0"?>\n<fcd-export>' + "".join(steps) + "</fcd-export>\n"
    with gzip.open(seed / "fcd.xml.gz", "wt", encoding="utf-8") as fh:
        fh.write(xml)
    return run, np.array(track)


def test_traffic_moves_along_the_fcd_trajectory(nordwall, krefeld_build: Path, tmp_path: Path):
    st, _, place = nordwall
    axis = _axis(krefeld_build, st, place)
    run, track = _fcd_run(tmp_path, krefeld_build, axis, place)
    scene = compose(st, krefeld_build, traffic=run)
    (anim,) = scene.animations
    assert anim.node == "vehicle_car 1"  # the bus 2 km away is outside the radius
    assert scene.runs == [str(run / "baseline" / "seed-1")]
    # the first 60 s are sampled at 1 s; the times kept are those inside the radius
    assert np.all(np.diff(anim.times) == pytest.approx(1.0)) and anim.times[-1] <= 60.0
    x, y, _ = place.frame.enu_to_utm(anim.translations)
    want = track[np.isin(track[:, 0], anim.times)]
    assert len(want) == len(anim.times) > 10
    assert np.hypot(x - want[:, 1], y - want[:, 2]).max() < 0.05
    # the car's nose (+y of its box) points along its heading
    q = anim.rotations[len(anim.rotations) // 2]
    yaw = 2 * math.atan2(q[2], q[3])
    heading = (-math.degrees(yaw)) % 360
    assert abs((heading - want[len(want) // 2, 3] + 180) % 360 - 180) < 0.5


def test_overlay_is_draped_with_a_legend(nordwall, krefeld_build: Path):
    st, _, place = nordwall
    raster = krefeld_build / "canopy_cover.tif"
    scene = compose(st, krefeld_build, overlay=raster)
    grid = next(n for n in scene.nodes if n.kind == "overlay")
    legend = next(n for n in scene.nodes if n.kind == "legend")
    x, y, h = place.frame.enu_to_utm(grid.vertices)
    terrain = Terrain(krefeld_build / "terrain.tif")
    assert np.allclose(h, terrain(x, y) + OVERLAY_LIFT_M, atol=0.02)
    assert np.hypot(grid.vertices[:, 0], grid.vertices[:, 1]).max() <= st.radius * 1.001
    tex = grid.material.texture
    assert tex.shape[2] == 4 and len(np.unique(tex[..., :3].reshape(-1, 3), axis=0)) > 3
    assert legend.material.texture.shape == (128, 256, 3)
    assert any(s.startswith("overlay: ") and "canopy_cover" in s for s in scene.sources)


def test_an_overlay_from_a_run_needs_the_run_finished(
    nordwall, krefeld_build: Path, tmp_path: Path
):
    """A raster inside a run folder is taken only from a finished run, which the scene names."""
    import shutil

    from twin import runs

    st, _, _ = nordwall
    run = runs.create(tmp_path / "runs", "heat-wave", "heat")
    raster = run / "baseline" / "t_air_max.tif"
    raster.parent.mkdir()
    shutil.copyfile(krefeld_build / "canopy_cover.tif", raster)
    with pytest.raises(DataError, match=r"the run is running, not finished"):
        compose(st, krefeld_build, overlay=raster)
    done = runs.finish(run)
    scene = compose(st, krefeld_build, overlay=done / "baseline" / "t_air_max.tif")
    assert scene.runs == [str(done.resolve())]


# -- export and commands ----------------------------------------------------------------------------


def _check_package(folder: Path, name: str, *, previews: bool, traffic: bool = False) -> dict:
    m = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert m["scene"] == name
    files = {f["file"]: f for f in m["files"]}
    want = {f"{name}.glb", f"{name}.usdz", "tiles/tileset.json"}
    if previews:
        want |= {f"{name}-before.png", f"{name}-after.png"}
    if traffic:
        want.add("vehicles.json")
    assert set(files) == want
    assert (folder / "vehicles.json").exists() == traffic
    for f in m["files"]:
        p = folder / f["file"]
        size = p.stat().st_size
        if f["format"] == "3dtiles":  # the tileset folder's files together
            size = sum(q.stat().st_size for q in p.parent.rglob("*") if q.is_file())
        assert size == f["bytes"] <= MOBILE_AR.max_file_bytes
    assert files[f"{name}.glb"]["triangles"] == m["triangles"] <= MOBILE_AR.max_triangles
    st = resolve_station(name, SCENES)
    assert m["anchor"]["lat"] == st.lat and m["anchor"]["height"] == st.height
    assert arkit_errors(folder / f"{name}.usdz") == []
    # the tileset's one content is the scene's GLB (the one the validator checks)
    ts = open_tileset(folder / "tiles" / "tileset.json")
    assert ts.version == "1.1"
    (ref,) = ts.root.contents
    assert (folder / "tiles" / ref.uri).read_bytes() == (folder / f"{name}.glb").read_bytes()
    return m


def _glb_track_ecef(glb: Path, node_name: str, frame: LocalFrame) -> tuple[np.ndarray, np.ndarray]:
    """Times and EPSG:4978 positions of the middle of a vehicle's footprint, from the GLB alone:
    its animation's translation and rotation samples applied to its mesh's bottom centre."""
    g = pygltflib.GLTF2().load(str(glb))
    blob = g.binary_blob()

    def read(i: int) -> np.ndarray:
        acc = g.accessors[i]
        view = g.bufferViews[acc.bufferView]
        n = {"SCALAR": 1, "VEC3": 3, "VEC4": 4}[acc.type]
        a = np.frombuffer(blob, "<f4", acc.count * n, view.byteOffset + (acc.byteOffset or 0))
        return a.reshape(acc.count, n).astype(np.float64)

    (i,) = [k for k, n in enumerate(g.nodes) if n.name == node_name]
    pos_acc = g.accessors[g.meshes[g.nodes[i].mesh].primitives[0].attributes.POSITION]
    lo, hi = np.asarray(pos_acc.min), np.asarray(pos_acc.max)
    foot = np.array([(lo[0] + hi[0]) / 2, lo[1], (lo[2] + hi[2]) / 2])  # y up: bottom centre
    anim = next(a for a in g.animations if a.channels[0].target.node == i)
    out = {}
    for ch in anim.channels:
        s = anim.samplers[ch.sampler]
        out[ch.target.path] = (read(s.input)[:, 0], read(s.output))
    times, t = out["translation"]
    q = out["rotation"][1]
    u, w = q[:, :3], q[:, 3:4]
    c = 2.0 * np.cross(u, np.broadcast_to(foot, u.shape))
    p = t + foot + w * c + np.cross(u, c)  # translation + rotated footprint centre, glTF axes
    enu = np.column_stack([p[:, 0], -p[:, 2], p[:, 1]])
    return times, frame.enu_to_ecef(enu)


def test_export_command_writes_a_station_package(
    nordwall, krefeld_build: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    st, _, place = nordwall
    run, _ = _fcd_run(tmp_path, krefeld_build, _axis(krefeld_build, st, place), place)
    monkeypatch.chdir(REPO)
    out = tmp_path / "out"
    rc = main(["scene", "export", "nordwall", "-o", str(out), "--size", "160x90",
               "--traffic", str(run), "--overlay", str(krefeld_build / "canopy_cover.tif"),
               *_pack_args(krefeld_build)])  # fmt: skip
    assert rc == 0
    folder = out / "nordwall"
    m = _check_package(folder, "nordwall", previews=True, traffic=True)
    assert m["runs"] and any(n["kind"] == "vehicle" for n in m["nodes"])
    # the viewer's vehicles JSON carries the GLB's own tracks, on the globe
    data = json.loads((folder / "vehicles.json").read_text(encoding="utf-8"))
    assert data["frame"] == "EPSG:4978"
    first = data["vehicles"][0]
    assert first["id"] == "car 1" and first["class"] == "passenger"
    times, want = _glb_track_ecef(folder / "nordwall.glb", "vehicle_car 1", place.frame)
    assert np.allclose(first["t"], times, atol=1e-3) and len(times) > 10
    assert np.linalg.norm(np.asarray(first["p"]) - want, axis=1).max() < 0.01
    assert main(["tiles", "info", str(folder / "tiles" / "tileset.json")]) == 0
    glb = str(folder / "nordwall.glb")
    report = validate_glbs([glb])
    assert report[glb]["errors"] == 0, report[glb]["messages"]
    before = np.asarray(Image.open(folder / "nordwall-before.png").convert("RGB"), dtype=int)
    after = np.asarray(Image.open(folder / "nordwall-after.png").convert("RGB"), dtype=int)
    assert before.shape == after.shape == (90, 160, 3)
    assert (np.abs(before - after).sum(axis=-1) > 30).mean() > 0.01  # the redesign shows


def test_export_all_stations(krefeld_build: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(REPO)
    out = tmp_path / "out"
    assert main(["scene", "export", "--all-stations", "-o", str(out), "--no-preview",
                 *_pack_args(krefeld_build)]) == 0  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == sorted(WALLS)
    glbs = []
    for name in WALLS:
        _check_package(out / name, name, previews=False)
        glbs.append(str(out / name / f"{name}.glb"))
    for f, res in validate_glbs(glbs).items():
        assert res["errors"] == 0, (f, res["messages"])


def test_export_needs_one_scene_or_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    monkeypatch.chdir(REPO)
    assert main(["scene", "export", "-o", str(tmp_path)]) != 0
    assert "give one SCENE or --all-stations" in capsys.readouterr().err


def test_render_command_on_a_station(
    krefeld_build: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    monkeypatch.chdir(REPO)
    out = tmp_path / "after.png"
    assert main(["scene", "render", "--view", "nordwall", "--after", "-o", str(out),
                 "--size", "96x54", *_pack_args(krefeld_build)]) == 0  # fmt: skip
    assert "after the redesign" in capsys.readouterr().out
    assert Image.open(out).size == (96, 54)
    assert main(["scene", "render", "--view", "ostwall", "--before", "-o", str(out),
                 *_pack_args(krefeld_build)]) != 0  # fmt: skip
    assert "not an AR station" in capsys.readouterr().err
