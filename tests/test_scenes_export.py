"""Scene exporters: GLB (Khronos validator, read back with pygltflib), USDZ (ARKit compliance, prims,
time samples), 3D Tiles (read back with twin.tiles, placed at the anchor), the viewer's vehicles JSON,
the mobile AR budget (decimation, texture down-sizing, refusal) and manifest.json.

The scene is built here: textured boxes as buildings, a textured street strip, a tree, and a vehicle
driving 50 m north in 10 s.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import struct

import numpy as np
import pygltflib
import pytest
import trimesh
from PIL import Image
from test_tiles_writer import validate_glbs

from twin.cli import main
from twin.errors import DataError
from twin.geo import GEOID_HEIGHT_M, LocalFrame
from twin.scenes import export_tiles as export_tiles_module
from twin.scenes.budget import Budget, fit
from twin.scenes.export_glb import write_glb
from twin.scenes.export_tiles import write_tileset, write_vehicles
from twin.scenes.export_usdz import TIME_CODES_PER_SECOND, arkit_errors, write_usdz
from twin.scenes.manifest import MANIFEST, write_manifest
from twin.scenes.scene import (
    Anchor,
    Material,
    MeshNode,
    Scene,
    Track,
    enu_quat_to_yup,
    enu_to_yup,
)
from twin.tiles import open_tileset

ANCHOR = Anchor(lat=51.3327, lon=6.5623, height=38.5, heading_deg=12.0)


def _texture(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8)


def _box(name: str, centre, size, material: Material, kind: str = "building") -> MeshNode:
    """A box with split faces (24 vertices) and per-face uv."""
    m = trimesh.creation.box(extents=size)
    m.apply_translation(np.asarray(centre, dtype=float))
    v = m.vertices[m.faces].reshape(-1, 3)  # unshared vertices: crisp normals, per-face uv
    f = np.arange(len(v)).reshape(-1, 3)
    uv = np.tile([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]], (len(m.faces), 1))
    return MeshNode(name, v, f, material, kind=kind, uv=uv)


def _grid(name, x0, x1, y0, y1, nx, ny, material, kind="street") -> MeshNode:
    """A flat, textured strip of nx * ny quads at z = 0."""
    xs, ys = np.linspace(x0, x1, nx + 1), np.linspace(y0, y1, ny + 1)
    gx, gy = np.meshgrid(xs, ys)
    v = np.column_stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)])
    uv = np.column_stack([(gx.ravel() - x0) / (x1 - x0), (gy.ravel() - y0) / (y1 - y0)])
    f = []
    for j in range(ny):
        for i in range(nx):
            a = j * (nx + 1) + i
            f += [[a, a + 1, a + nx + 2], [a, a + nx + 2, a + nx + 1]]
    return MeshNode(name, v, np.array(f), material, kind=kind, uv=uv)


def make_scene(street_quads: int = 4) -> Scene:
    facade = Material("facade", metallic=0.0, roughness=0.8, texture=_texture(64, 32, 1))
    asphalt = Material("asphalt", base_color=(0.9, 0.9, 0.9, 1.0), texture=_texture(32, 128, 2))
    leaves = Material("leaves", base_color=(0.2, 0.55, 0.2, 1.0), roughness=1.0)
    paint = Material("paint", base_color=(0.8, 0.1, 0.1, 1.0), metallic=0.6, roughness=0.3)
    nodes = [
        _box("building_1", (-15, 20, 6), (10, 12, 12), facade),
        _box("building_2", (15, 20, 9), (8, 8, 18), facade),
        _box("building 3/Nord", (-15, 45, 4), (12, 6, 8), facade),
        _grid("street", -4, 4, -10, 70, street_quads, 10 * street_quads, asphalt),
    ]
    crown = trimesh.creation.icosphere(subdivisions=2, radius=2.0)
    crown.apply_translation((6, 5, 6))
    nodes.append(MeshNode("tree", crown.vertices, crown.faces, leaves, kind="tree"))
    car = trimesh.creation.box(extents=(1.8, 4.5, 1.5))
    car.apply_translation((0, 0, 0.75))
    nodes.append(MeshNode("car_1", car.vertices, car.faces, paint, kind="vehicle"))
    times = np.array([0.0, 5.0, 10.0])
    trans = np.array([[0.0, 0.0, 0.0], [0.0, 25.0, 0.0], [0.0, 50.0, 0.0]])
    half = np.sqrt(0.5)  # the car turns 90 degrees left (about up) over the second half
    rots = np.array([[0, 0, 0, 1.0], [0, 0, 0, 1.0], [0, 0, half, half]])
    track = Track("car_1", times, trans, rots)
    return Scene(
        "wall_east",
        ANCHOR,
        nodes,
        [track],
        sources=["data/krefeld/buildings.gpkg", "data/krefeld/trees.gpkg"],
        runs=["runs/ostwall/20240501T120000Z"],
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("station")
    scene = make_scene()
    glb = write_glb(scene, folder / "scene.glb")
    usdz = write_usdz(scene, folder / "scene.usdz")
    return folder, scene, glb, usdz


# -- GLB --------------------------------------------------------------------------------------------


def test_glb_passes_the_khronos_validator(exported):
    folder, _, glb, _ = exported
    report = validate_glbs([glb.path])
    res = report[glb.path]
    assert res["errors"] == 0, res["messages"]


def test_glb_reads_back(exported):
    _, scene, info, _ = exported
    g = pygltflib.GLTF2().load(info.path)
    assert g.asset.extras["geo_anchor"] == ANCHOR.as_dict()
    assert g.asset.extras["sources"] == scene.sources and g.asset.extras["runs"] == scene.runs
    assert [n.name for n in g.nodes] == [n.name for n in scene.nodes]
    blob = g.binary_blob()

    def read(i: int) -> np.ndarray:
        a = g.accessors[i]
        v = g.bufferViews[a.bufferView]
        dt = {5126: "<f4", 5123: "<u2", 5125: "<u4"}[a.componentType]
        n = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}[a.type]
        start = v.byteOffset + (a.byteOffset or 0)
        return np.frombuffer(blob, dt, a.count * n, start).reshape(a.count, n)

    tris = sum(len(read(p.indices)) // 3 for m in g.meshes for p in m.primitives)
    assert tris == scene.triangles == info.triangles
    # trimesh (another reader) agrees on the triangle count
    assert len(trimesh.load(info.path, force="mesh").faces) == scene.triangles
    # ENU -> glTF: the building's vertices, and one 10 m north of the anchor lands at z = -10
    b = scene.nodes[0]
    pos = read(g.meshes[0].primitives[0].attributes.POSITION)
    assert np.allclose(pos, enu_to_yup(b.vertices), atol=1e-4)
    k = int(np.argmin(b.vertices[:, 1]))
    assert b.vertices[k, 1] == pytest.approx(14.0)
    assert pos[k] == pytest.approx([b.vertices[k, 0], b.vertices[k, 2], -14.0], abs=1e-4)
    assert enu_to_yup(np.array([[0.0, 10.0, 0.0]]))[0] == pytest.approx([0.0, 0.0, -10.0])
    # the animation's samples at t = 0 and t = 10 are the track's, in the glTF frame
    (anim,) = g.animations
    track = scene.animations[0]
    car = [n.name for n in g.nodes].index("car_1")
    for ch in anim.channels:
        assert ch.target.node == car
        s = anim.samplers[ch.sampler]
        assert s.interpolation == "LINEAR"
        t = read(s.input).ravel()
        out = read(s.output)
        assert t[0] == 0.0 and t[-1] == 10.0
        if ch.target.path == "translation":
            assert np.allclose(out[[0, -1]], enu_to_yup(track.translations[[0, -1]]), atol=1e-5)
            assert out[-1] == pytest.approx([0.0, 0.0, -50.0])
        else:
            want = enu_quat_to_yup(track.rotations[[0, -1]])
            assert np.allclose(out[[0, -1]], want, atol=1e-6)
    # textures are embedded PNGs of the materials' images
    facade = scene.nodes[0].material
    mat = g.materials[g.meshes[0].primitives[0].material]
    image = g.images[g.textures[mat.pbrMetallicRoughness.baseColorTexture.index].source]
    view = g.bufferViews[image.bufferView]
    png = blob[view.byteOffset : view.byteOffset + view.byteLength]
    assert image.mimeType == "image/png"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), facade.texture)


# -- USDZ -------------------------------------------------------------------------------------------


def test_usdz_is_arkit_compliant(exported):
    _, _, _, usdz = exported
    errors = arkit_errors(usdz.path)
    for e in errors:
        print(e)
    assert errors == []


def test_arkit_check_finds_what_quick_look_refuses(tmp_path):
    """The check itself: a non-ARKit shader, no default prim and no up axis are reported."""
    from pxr import Sdf, Usd, UsdGeom, UsdShade, UsdUtils

    stage = Usd.Stage.CreateNew(str(tmp_path / "bad.usda"))
    UsdGeom.Xform.Define(stage, "/R")
    UsdShade.Shader.Define(stage, "/R/M/S").CreateIdAttr("ND_standard_surface")
    stage.GetRootLayer().Save()
    assert UsdUtils.CreateNewUsdzPackage(
        Sdf.AssetPath(str(tmp_path / "bad.usda")), str(tmp_path / "bad.usdz")
    )
    errors = "\n".join(arkit_errors(tmp_path / "bad.usdz"))
    assert "</R/M/S> has invalid shader node" in errors
    assert "defaultPrim" in errors and "upAxis" in errors


def test_usdz_prims_animation_and_anchor(exported):
    from pxr import Usd, UsdGeom, UsdShade

    _, scene, glb, usdz = exported
    stage = Usd.Stage.Open(usdz.path)
    assert UsdGeom.GetStageUpAxis(stage) == UsdGeom.Tokens.y
    assert UsdGeom.GetStageMetersPerUnit(stage) == 1.0
    root = stage.GetDefaultPrim()
    assert root and root.GetName() == "wall_east"
    meshes = [p for p in stage.Traverse() if p.IsA(UsdGeom.Mesh)]
    assert len(meshes) == len(scene.nodes)
    names = {p.GetName() for p in meshes}
    assert "building_3_Nord" in names and "car_1" in names
    tris = 0
    for p in meshes:
        assert p.GetPath().HasPrefix(root.GetPath())
        mat, _ = UsdShade.MaterialBindingAPI(p).ComputeBoundMaterial()
        assert mat, p.GetPath()
        tris += len(UsdGeom.Mesh(p).GetFaceVertexCountsAttr().Get())
    assert tris == scene.triangles
    # the facade material reads its texture from inside the package
    tex = stage.GetPrimAtPath(root.GetPath().AppendPath("Materials/facade/BaseColorTexture"))
    asset = UsdShade.Shader(tex).GetInput("file").Get()
    assert asset.path.endswith("facade.png") and not os.path.isabs(asset.path)
    assert asset.resolvedPath == f"{usdz.path}[{asset.path}]"
    # a building's points equal the GLB's positions
    g = pygltflib.GLTF2().load(glb.path)
    a = g.accessors[g.meshes[0].primitives[0].attributes.POSITION]
    v = g.bufferViews[a.bufferView]
    glb_pos = np.frombuffer(g.binary_blob(), "<f4", a.count * 3, v.byteOffset).reshape(-1, 3)
    b1 = stage.GetPrimAtPath(root.GetPath().AppendPath("Geom/building_1"))
    assert np.array_equal(np.asarray(UsdGeom.Mesh(b1).GetPointsAttr().Get()), glb_pos)
    # the vehicle's translate at two time codes equals the track's
    assert stage.GetTimeCodesPerSecond() == TIME_CODES_PER_SECOND
    car = UsdGeom.Xformable(stage.GetPrimAtPath(root.GetPath().AppendPath("Geom/car_1")))
    ops = {op.GetOpName(): op for op in car.GetOrderedXformOps()}
    track = scene.animations[0]
    for k in (0, 2):
        code = track.times[k] * TIME_CODES_PER_SECOND
        got = np.array(ops["xformOp:translate"].Get(code))
        assert np.allclose(got, enu_to_yup(track.translations[k : k + 1])[0])
    assert np.array(ops["xformOp:translate"].Get(300)) == pytest.approx([0, 0, -50])
    q = ops["xformOp:orient"].Get(300)
    want = enu_quat_to_yup(track.rotations[2:3])[0]
    assert [*q.GetImaginary(), q.GetReal()] == pytest.approx(want, abs=1e-6)
    # the anchor and provenance in customLayerData
    data = stage.GetRootLayer().customLayerData
    assert dict(data["geo_anchor"]) == pytest.approx(ANCHOR.as_dict())
    assert list(data["runs"]) == scene.runs and list(data["sources"]) == scene.sources


# -- budget -----------------------------------------------------------------------------------------


def test_budget_decimates_the_biggest_nodes():
    scene = make_scene(street_quads=12)  # 12 * 120 * 2 = 2880 street triangles
    assert scene.triangles > 3000
    budget = Budget(max_triangles=1500)
    small, actions = fit(scene, budget)
    assert small.triangles <= 1500
    decimated = {a["node"] for a in actions if a["action"] == "decimate"}
    assert "street" in decimated and "car_1" not in decimated
    car = next(n for n in small.nodes if n.name == "car_1")
    assert car.triangles == 12
    street = next(n for n in small.nodes if n.name == "street")
    assert street.uv.shape == (len(street.vertices), 2)
    # the decimated street still covers its strip
    lo, hi = street.vertices.min(axis=0), street.vertices.max(axis=0)
    assert lo[:2] == pytest.approx([-4, -10], abs=0.5) and hi[:2] == pytest.approx([4, 70], abs=0.5)
    assert scene.triangles > 3000  # the input is left as it was


def test_budget_downsizes_textures():
    scene = make_scene()
    big = dataclasses.replace(scene.nodes[0].material, texture=_texture(300, 100, 3))
    scene.nodes = [
        dataclasses.replace(n, material=big) if n.material.name == "facade" else n
        for n in scene.nodes
    ]
    small, actions = fit(scene, Budget(max_texture_side_px=128))
    (act,) = [a for a in actions if a["action"] == "downsize_texture"]
    assert act["material"] == "facade" and act["from_px"] == [100, 300]
    tex = small.nodes[0].material.texture
    assert max(tex.shape[:2]) == 128 and tex.shape[2] == 3
    # the other textured material fits and is left alone
    assert small.nodes[3].material.texture is scene.nodes[3].material.texture


def test_impossible_budget_names_the_quantity(tmp_path):
    scene = make_scene()
    with pytest.raises(DataError, match="triangles .* over the budget of 10"):
        fit(scene, Budget(max_triangles=10))  # the vehicle alone has 12
    with pytest.raises(DataError, match="file size"):
        write_glb(scene, tmp_path / "x.glb", Budget(max_file_bytes=1000))
    with pytest.raises(DataError, match="file size"):
        write_usdz(scene, tmp_path / "x.usdz", Budget(max_file_bytes=1000))
    with pytest.raises(DataError, match="triangles"):
        write_glb(scene, tmp_path / "y.glb", Budget(max_triangles=100))
    assert list(tmp_path.iterdir()) == []  # nothing half-written is left


# -- manifest ---------------------------------------------------------------------------------------


def test_manifest_matches_the_files(exported):
    folder, scene, glb, usdz = exported
    actions = [{"action": "decimate", "node": "street", "from_triangles": 80, "to_triangles": 40}]
    path = write_manifest(folder, scene, [glb, usdz], actions)
    m = json.loads(path.read_text())
    assert m["anchor"] == ANCHOR.as_dict()
    assert m["sources"] == scene.sources and m["runs"] == scene.runs
    assert m["actions"] == actions and m["budget"]["max_triangles"] == 300_000
    by_name = {f["file"]: f for f in m["files"]}
    assert set(by_name) == {"scene.glb", "scene.usdz"}
    for f in m["files"]:
        assert f["bytes"] == os.stat(folder / f["file"]).st_size
        assert f["triangles"] == scene.triangles
        assert {t["material"] for t in f["textures"]} == {"facade", "asphalt"}
    # the GLB's texture sizes are the images it holds
    facade = next(t for t in by_name["scene.glb"]["textures"] if t["material"] == "facade")
    assert (facade["width"], facade["height"]) == (32, 64)
    with open(folder / "scene.glb", "rb") as fh:
        assert struct.unpack("<I", fh.read(4))[0] == 0x46546C67


def test_manifest_write_is_atomic(exported, tmp_path, monkeypatch):
    folder, scene, glb, usdz = exported
    path = write_manifest(folder, scene, [glb, usdz], [])
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_manifest(folder, scene, [glb, usdz], [{"action": "x"}])
    assert path.read_bytes() == before  # the old manifest stands, no temporary file is left
    assert sorted(p.name for p in folder.iterdir()) == sorted([MANIFEST, "scene.glb", "scene.usdz"])
    # a file that differs from its export info is refused
    bad = dataclasses.replace(glb, bytes=glb.bytes + 1)
    monkeypatch.undo()
    with pytest.raises(DataError, match="scene.glb"):
        write_manifest(folder, scene, [bad, usdz], [])


# -- 3D Tiles and the viewer's vehicles JSON --------------------------------------------------------


@pytest.fixture(scope="module")
def tiled(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiled")
    scene = make_scene()
    return folder, scene, write_tileset(scene, folder / "tiles")


def _scene_to_true_enu(p: np.ndarray, heading_deg: float) -> np.ndarray:
    """Scene-frame points (+y at heading_deg clockwise from north) in true east-north-up."""
    a = np.radians(heading_deg)
    e = p[:, 0] * np.cos(a) + p[:, 1] * np.sin(a)
    n = -p[:, 0] * np.sin(a) + p[:, 1] * np.cos(a)
    return np.column_stack([e, n, p[:, 2]])


def _anchor_frame(anchor: Anchor) -> LocalFrame:
    return LocalFrame(anchor.lon, anchor.lat, anchor.height + GEOID_HEIGHT_M)


def test_tileset_reads_back_and_info_finds_no_problems(tiled, capsys):
    folder, scene, info = tiled
    assert info.path == str(folder / "tiles" / "tileset.json") and info.format == "3dtiles"
    assert info.bytes == sum(p.stat().st_size for p in (folder / "tiles").rglob("*") if p.is_file())
    ts = open_tileset(info.path)
    assert ts.version == "1.1" and len(ts) == 1
    root = ts.root
    assert root.geometric_error == 0.0 and ts.geometric_error > 40.0  # the scene spans ~80 m
    (ref,) = root.contents
    assert ts.read_content(ref).counts.triangles == scene.triangles
    doc = json.loads((folder / "tiles" / "tileset.json").read_text(encoding="utf-8"))
    assert doc["extras"]["anchor"]["lat"] == ANCHOR.lat
    assert doc["extras"]["anchor"]["heading_deg"] == ANCHOR.heading_deg
    assert main(["tiles", "info", info.path]) == 0
    out = capsys.readouterr().out
    assert "3D Tiles 1.1" in out and "Problems       none" in out, out
    assert f"Triangles      {scene.triangles:,}" in out


def test_tileset_content_passes_the_khronos_validator(tiled):
    folder, _, _ = tiled
    (glb,) = (folder / "tiles").rglob("*.glb")
    res = validate_glbs([str(glb)])[str(glb)]
    assert res["errors"] == 0, res["messages"]


def test_tileset_places_the_scene_at_its_anchor(tiled):
    """Every vertex of building_1 (and the first one in particular), read back through the root
    transform, lies within 1 cm of the anchor's ECEF position plus its ENU offset; all content lies
    inside the root's bounding box."""
    folder, scene, info = tiled
    ts = open_tileset(info.path)
    root = ts.root
    (ref,) = root.contents
    geometry = ts.read_content(ref).geometry(root.transform)
    assert len(geometry) == len(scene.nodes)
    frame = _anchor_frame(scene.anchor)
    building = scene.nodes[0]
    want = frame.enu_to_ecef(_scene_to_true_enu(building.vertices, ANCHOR.heading_deg))
    got = geometry[0].positions
    assert np.linalg.norm(got[0] - want[0]) < 0.01
    assert np.linalg.norm(got - want, axis=1).max() < 0.01
    # the origin is the anchor itself, about 6.4e6 m from the earth's centre
    origin = root.transform @ np.array([0.0, 0.0, 0.0, 1.0])
    assert np.linalg.norm(origin[:3] - frame.origin_ecef) < 0.01
    centre, axes = root.obb
    for g in geometry:
        local = np.linalg.solve(axes, (g.positions - centre).T).T  # box coordinates, -1..1 inside
        assert np.abs(local).max() <= 1.0, g.source


def test_tileset_write_is_atomic(tmp_path, monkeypatch):
    scene = make_scene()
    first = write_tileset(scene, tmp_path / "tiles")
    before = (tmp_path / "tiles" / "tileset.json").read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(export_tiles_module.os, "replace", boom)
    with pytest.raises(OSError):
        write_tileset(dataclasses.replace(scene, name="other"), tmp_path / "tiles")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiles"]  # no temporary folder is left
    assert (tmp_path / "tiles" / "tileset.json").read_bytes() == before
    with pytest.raises(OSError):
        monkeypatch.setattr(export_tiles_module.os, "replace", boom)
        write_tileset(scene, tmp_path / "fresh")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiles"]  # nothing that looks finished
    # a rewrite replaces the old tileset whole
    again = write_tileset(dataclasses.replace(scene, name="other"), tmp_path / "tiles")
    assert sorted(p.name for p in (tmp_path / "tiles" / "content").iterdir()) == ["other.glb"]
    assert again.path == first.path


def test_vehicles_json_follows_the_tracks(tmp_path):
    """The viewer's vehicles JSON: EPSG:4978 positions of the car's footprint middle (its box is
    centred on its origin) along its track, headings clockwise from north with the anchor's turn."""
    scene = make_scene()
    info = write_vehicles(scene, tmp_path / "vehicles.json")
    data = json.loads((tmp_path / "vehicles.json").read_text(encoding="utf-8"))
    assert (
        data["frame"] == "EPSG:4978" and info.bytes == (tmp_path / "vehicles.json").stat().st_size
    )
    (car,) = data["vehicles"]
    assert car["id"] == "car_1" and car["class"] == "passenger"
    (track,) = scene.animations
    assert car["t"] == track.times.tolist()
    want = _anchor_frame(scene.anchor).enu_to_ecef(
        _scene_to_true_enu(track.translations, ANCHOR.heading_deg)
    )
    assert np.linalg.norm(np.asarray(car["p"]) - want, axis=1).max() < 0.01
    # driving scene +y is 12 degrees east of north; the last key turned 90 degrees left
    assert car["heading_deg"] == pytest.approx([12.0, 12.0, 282.0], abs=1e-3)
    # 25 m a key apart on the ground, as the track says
    assert np.linalg.norm(np.diff(car["p"], axis=0), axis=1) == pytest.approx(
        [25.0, 25.0], abs=0.01
    )


def test_manifest_lists_tileset_and_vehicles(tmp_path):
    scene = make_scene()
    infos = [
        write_glb(scene, tmp_path / "s.glb"),
        write_tileset(scene, tmp_path / "tiles"),
        write_vehicles(scene, tmp_path / "vehicles.json"),
    ]
    m = json.loads(write_manifest(tmp_path, scene, infos, []).read_text(encoding="utf-8"))
    files = {f["file"]: f for f in m["files"]}
    assert set(files) == {"s.glb", "tiles/tileset.json", "vehicles.json"}
    assert files["tiles/tileset.json"]["format"] == "3dtiles"
    assert files["tiles/tileset.json"]["bytes"] == infos[1].bytes > files["s.glb"]["bytes"]
    (tmp_path / "tiles" / "content" / "wall_east.glb").write_bytes(b"x")  # a broken tileset
    with pytest.raises(DataError, match="tiles/tileset.json"):
        write_manifest(tmp_path, scene, infos, [])
