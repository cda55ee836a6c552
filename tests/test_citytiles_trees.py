"""Trees in the city tileset: low-poly crowns in the leaf holding their point, feature ids into the
`tree` property table, crown tops at the tree's height, parents keeping the tallest trees, the
Khronos glTF validator, and the tiles step rebuilt when the tree register changes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyogrio
import pytest
from conftest import EXTENT, write_mini_pack
from test_tiles_writer import Glb, positions_utm, tiles_of, validate_glbs
from test_trees import TREES_LAYER

from twin.city.build import run_build
from twin.city.pack import load_pack
from twin.city.steps import city_steps
from twin.citytiles.step import TILESET, tiles_step
from twin.citytiles.writer import TilesetOptions, write_tileset_from_build
from twin.tiles.info import tileset_info

PRODUCT_STEPS = ("terrain", "landcover", "streets", "buildings", "trees")
SPECIES = ("Tilia cordata", "Platanus x hispanica", "Acer platanoides")
OPTIONS = TilesetOptions(
    leaf_size_m=250.0,
    ground_px=32,
    facade_width_px=64,
    roof_px=32,
    parent_tree_triangles=300,  # ten trees: parents must choose
    b3dm=True,
    keep_contents=True,
)


def tree_rows(n: int = 80, seed: int = 4) -> str:
    """CSV rows of n trees spread over the mini pack, 4-28 m high with 2-12 m crowns."""
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = EXTENT
    lines = []
    for i in range(n):
        x, y = rng.uniform(x0 + 5, x1 - 5), rng.uniform(y0 + 5, y1 - 5)
        h = round(float(rng.uniform(4, 28)), 2)
        lines.append(f"T{i:03d},{SPECIES[i % 3]},{h},{round(float(rng.uniform(2, 12)), 2)},"
                     f"{x:.2f},{y:.2f}")  # fmt: skip
    return "\n".join(lines) + "\n"


def pack_with_trees(root: Path, rows: str) -> Path:
    toml = write_mini_pack(root / "pack")
    toml.write_text(toml.read_text(encoding="utf-8") + TREES_LAYER, encoding="utf-8")
    (toml.parent / "trees.csv").write_text("id,species,height,crown_diameter,x,y\n" + rows)
    return toml


def read_points(path: Path) -> dict[str, np.ndarray]:
    meta, _, wkb, values = pyogrio.raw.read(path)
    import shapely

    out = dict(zip(meta["fields"], values, strict=True))
    out["xy"] = shapely.get_coordinates(shapely.from_wkb(wkb))
    return out


@pytest.fixture(scope="module")
def tree_build(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("trees")
    pack = load_pack(pack_with_trees(root, tree_rows()))
    run_build(pack, [s for s in city_steps() if s.name in PRODUCT_STEPS], root / "build")
    trees = read_points(root / "build" / "trees.gpkg")
    assert len(trees["id"]) == 80
    return pack, root / "build", trees


@pytest.fixture(scope="module")
def written(tree_build, tmp_path_factory: pytest.TempPathFactory):
    pack, build, _ = tree_build
    return write_tileset_from_build(pack, build, tmp_path_factory.mktemp("out") / "t", OPTIONS)


def tree_features(written) -> list[tuple[dict, Glb, np.ndarray, np.ndarray, dict]]:
    """(tile, glb, tree vertices in EPSG:25832, their tree-table rows, the table) per tile with
    trees."""
    out = []
    for t in tiles_of(written.path / "tileset.json"):
        glb = Glb(written.path / t["tile"]["content"]["uri"])
        prims = glb.primitives()
        if "trees" not in prims:
            continue
        prim = prims["trees"]
        table = glb.property_table("tree")
        fid = glb.accessor(prim.attributes._FEATURE_ID_0)
        assert np.all(fid == np.round(fid)) and fid.min() >= 0 and fid.max() < len(table["id"])
        out.append((t, glb, positions_utm(glb, prim, t["world"]), fid.astype(np.int64), table))
    return out


def test_crowns_lie_in_the_leaf_holding_their_point(written, tree_build):
    _, _, trees = tree_build
    row = {str(i): k for k, i in enumerate(trees["id"])}
    side = max(EXTENT[2] - EXTENT[0], EXTENT[3] - EXTENT[1])
    in_leaves: list[str] = []
    for t, _, xyz, fid, table in tree_features(written):
        if t["tile"].get("children"):
            continue
        level, cell = t["tile"]["content"]["uri"].split("/")[-2:]
        ix, iy = (int(v) for v in cell.removesuffix(".glb").split("_"))
        s = side / 2 ** int(level)
        for k, tid in enumerate(table["id"]):
            x, y = trees["xy"][row[tid]]
            assert EXTENT[0] + ix * s <= x < EXTENT[0] + (ix + 1) * s
            assert EXTENT[1] + iy * s <= y < EXTENT[1] + (iy + 1) * s
            # the crown stands around the tree's point, as wide as its crown
            d = np.hypot(*(xyz[fid == k, :2] - [x, y]).T)
            assert d.max() == pytest.approx(trees["crown_diameter"][row[tid]] / 2, abs=0.01)
        in_leaves += table["id"]
    assert sorted(in_leaves) == sorted(row)  # every tree once, in exactly one leaf


def test_feature_ids_map_to_the_tree_table(written, tree_build):
    _, _, trees = tree_build
    row = {str(i): k for k, i in enumerate(trees["id"])}
    for _, glb, _, fid, table in tree_features(written):
        assert set(table) == {"id", "species", "height", "crown_diameter"}
        for k, tid in enumerate(table["id"]):
            assert table["species"][k] == trees["species"][row[tid]]
            assert table["height"][k] == trees["height"][row[tid]]
            assert table["crown_diameter"][k] == trees["crown_diameter"][row[tid]]
        assert set(np.unique(fid)) == set(range(len(table["id"])))  # every row has its crown
        ext = glb.g.extensions["EXT_structural_metadata"]
        index = [t["class"] for t in ext["propertyTables"]].index("tree")
        prim = glb.primitives()["trees"]
        assert prim.extensions["EXT_mesh_features"]["featureIds"] == [
            {"featureCount": len(table["id"]), "attribute": 0, "propertyTable": index}
        ]
        # buildings keep their own table
        if "walls" in glb.primitives():
            walls = glb.primitives()["walls"].extensions["EXT_mesh_features"]["featureIds"][0]
            assert ext["propertyTables"][walls["propertyTable"]]["class"] == "building"


def test_crown_tops_are_at_the_tree_height(written, tree_build):
    _, _, trees = tree_build
    row = {str(i): k for k, i in enumerate(trees["id"])}
    n = 0
    for _, _, xyz, fid, table in tree_features(written):
        for k, tid in enumerate(table["id"]):
            r = row[tid]
            z = xyz[fid == k, 2]
            assert z.max() - trees["base"][r] == pytest.approx(trees["height"][r], abs=0.01)
            assert z.min() < trees["base"][r]  # the trunk reaches into the ground
            n += 1
    assert n >= 80


def test_parents_keep_the_tallest_trees_within_their_budget(written, tree_build):
    _, _, trees = tree_build
    height = {str(i): h for i, h in zip(trees["id"], trees["height"], strict=True)}
    tiles = tiles_of(written.path / "tileset.json")
    kept = {i: written.kept[t["tile"]["content"]["uri"]].tree_table.get("id", []) for i, t in
            enumerate(tiles)}  # fmt: skip

    def subtree(i: int) -> set[str]:
        ids = set(kept[i]) if not tiles[i]["tile"].get("children") else set()
        for j, u in enumerate(tiles):
            if u["parent"] == i:
                ids |= subtree(j)
        return ids

    checked = 0
    for i, t in enumerate(tiles):
        if not t["tile"].get("children"):
            continue
        below, mine = subtree(i), set(kept[i])
        kids = sum(len(kept[j]) for j, u in enumerate(tiles) if u["parent"] == i)
        # the budget: 300 triangles (ten 30-triangle trees) or 0.3 of the children's, at most theirs
        assert mine <= below and len(mine) <= min(kids, max(0.3 * kids, 10))
        dropped = below - mine
        if dropped:
            assert min(height[m] for m in mine) >= max(height[d] for d in dropped)
            assert t["tile"]["geometricError"] >= max(height[d] for d in dropped)
            checked += 1
    assert checked >= 2


def test_gltf_validator_and_reader_agree(written):
    files = sorted(str(p) for p in written.path.rglob("*.glb"))
    for f, res in validate_glbs(files).items():
        assert res["errors"] == 0, (f, res["messages"])
    info = tileset_info(written.path / "tileset.json")
    assert info["errors"] == []
    features = sum(
        len(k.table["id"]) + len(k.tree_table.get("id", [])) for k in written.kept.values()
    )
    assert info["features"] == features


def test_b3dm_variant_leaves_trees_out(written):
    import pygltflib

    for t in tiles_of(written.path / "tileset_b3dm.json"):
        data = (written.path / t["tile"]["content"]["uri"]).read_bytes()
        ftj, ftb, btj, btb = np.frombuffer(data[12:28], dtype="<u4")
        g = pygltflib.GLTF2.load_from_bytes(data[28 + ftj + ftb + btj + btb :])
        assert all(m.name != "tree" for m in g.materials)


def test_tiles_step_rebuilds_when_the_trees_change(tmp_path):
    toml = pack_with_trees(tmp_path, tree_rows(12))
    steps = [s for s in city_steps() if s.name in PRODUCT_STEPS] + [tiles_step()]
    build = tmp_path / "build"
    status = {r.name: r.status for r in run_build(load_pack(toml), steps, build)}
    assert status["tiles"] == "built"
    again = {r.name: r.status for r in run_build(load_pack(toml), steps, build)}
    assert again["tiles"] == "cached"
    csv = toml.parent / "trees.csv"
    lines = csv.read_text().splitlines()
    first = lines[1].split(",")
    first[2] = "17.5"
    csv.write_text("\n".join([lines[0], ",".join(first), *lines[2:]]) + "\n")
    third = {r.name: r.status for r in run_build(load_pack(toml), steps, build)}
    assert third["trees"] == "built" and third["tiles"] == "built"
    found = False
    for t in tiles_of(build / TILESET):
        glb = Glb(build / "tiles" / t["tile"]["content"]["uri"])
        if "trees" in glb.primitives() and not t["tile"].get("children"):
            table = glb.property_table("tree")
            if first[0] in table["id"]:
                assert table["height"][table["id"].index(first[0])] == 17.5
                found = True
    assert found


def test_tiles_step_works_without_a_trees_layer(tmp_path):
    toml = write_mini_pack(tmp_path / "pack")
    steps = [s for s in city_steps() if s.name in PRODUCT_STEPS] + [tiles_step()]
    status = {r.name: r.status for r in run_build(load_pack(toml), steps, tmp_path / "build")}
    assert status["trees"] == "built" and status["tiles"] == "built"
    doc = json.loads((tmp_path / "build" / TILESET).read_text())
    assert doc["asset"]["version"] == "1.1"
    for t in tiles_of(tmp_path / "build" / TILESET):
        glb = Glb(tmp_path / "build" / "tiles" / t["tile"]["content"]["uri"])
        assert "trees" not in glb.primitives()


def test_reader_gives_trees_their_own_table_and_layer(written):
    """The generic reader hands tree meshes the `tree` table (not the buildings'), and the renderer
    puts them in the 'trees' layer."""
    from twin.scenes.render import layer_of
    from twin.tiles import open_tileset, tile_meshes

    ts = open_tileset(written.path / "tileset.json")
    meshes = [m for m in tile_meshes(ts) if hasattr(m, "faces")]
    trees = [m for m in meshes if layer_of(m) == "trees"]
    buildings = [m for m in meshes if layer_of(m) == "buildings"]
    assert trees and buildings
    for m in trees:
        props = m.metadata["properties"]
        assert set(props) >= {"id", "species", "height", "crown_diameter"}
        assert set(props["species"]) <= set(SPECIES)
    for m in buildings:
        assert "species" not in m.metadata["properties"]
