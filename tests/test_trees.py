"""The trees build step: a tree register read with the pack's field names, validated with errors that
name the row and field, and canopy rasters whose covered area and heights follow the crowns exactly."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
from conftest import EXTENT, write_mini_pack

from twin.city.build import run_build
from twin.city.pack import load_pack
from twin.city.steps import city_steps
from twin.city.trees import canopy_rasters, read_trees
from twin.errors import DataError

TREES_LAYER = """
[layers.trees]
path = "trees.csv"
format = "csv"
status = "synthetic"
licence = "CC0-1.0"
source = "test fixture"
"""
HEADER = "id,species,height,crown_diameter,x,y\n"


def pack_with_trees(root: Path, rows: str, layer: str = TREES_LAYER, header: str = HEADER) -> Path:
    toml = write_mini_pack(root / "pack")
    toml.write_text(toml.read_text(encoding="utf-8") + layer, encoding="utf-8")
    (toml.parent / "trees.csv").write_text(header + rows, encoding="utf-8")
    return toml


def build(toml: Path, out: Path) -> Path:
    steps = [s for s in city_steps() if s.name in ("terrain", "trees")]
    run_build(load_pack(toml), steps, out)
    return out


def read_points(path: Path) -> dict[str, np.ndarray]:
    """The fields of a point layer by name (pyogrio's raw reader: no geopandas needed)."""
    meta, _, _, values = pyogrio.raw.read(path)
    return dict(zip(meta["fields"], values, strict=True))


def read_raster(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def test_one_crown_covers_its_disc_area(tmp_path: Path):
    """A 10 m crown on the 10 m grid: covered area sums to pi * 25 m2 within 3 % (10 x 10 sample points
    per cell, so the disc's edge is resolved to 1 m); height 18 m on every touched cell, 0 elsewhere;
    the trunk's base is the terrain height there."""
    x, y = 330503.0, 5689304.0  # off the cell centres and corners
    toml = pack_with_trees(tmp_path, f"T1,Tilia cordata,18,10,{x},{y}\n")
    out = build(toml, tmp_path / "build")
    cover = read_raster(out / "canopy_cover.tif")
    top = read_raster(out / "canopy_height.tif")
    assert cover.shape == (60, 100) and cover.dtype == np.float32
    area = float(cover.sum()) * 100.0
    assert area == pytest.approx(math.pi * 25.0, rel=0.03)
    assert cover.min() >= 0.0 and cover.max() <= 1.0
    touched = cover > 0
    assert 3 <= touched.sum() <= 9  # a 10 m disc reaches into 3 to 9 cells of 10 m
    assert np.all(top[touched] == 18.0) and np.all(top[~touched] == 0.0)
    # the cell holding the trunk is the most covered
    r, c = int((EXTENT[3] - y) // 10), int((x - EXTENT[0]) // 10)
    assert cover[r, c] == cover.max()
    info = pyogrio.read_info(out / "trees.gpkg")
    assert info["geometry_type"] == "Point" and info["features"] == 1
    df = read_points(out / "trees.gpkg")
    terrain = 35.0 + 0.002 * (330510.0 - 330000.0)  # the mini terrain's cell with the trunk
    assert df["base"][0] == pytest.approx(terrain, abs=0.05)
    assert (df["id"][0], df["species"][0], df["crown_diameter"][0]) == ("T1", "Tilia cordata", 10.0)


def test_overlapping_crowns_count_once_and_the_tallest_wins():
    """Two equal crowns at one spot cover what one does; where crowns overlap the taller one's height
    is the canopy height, and a large crown covers whole cells completely."""
    pack = load_pack_stub()
    x = np.array([500.0, 500.0, 800.0])
    y = np.array([300.0, 300.0, 300.0])
    one = canopy_rasters(pack, x[:1], y[:1], np.array([10.0]), np.array([12.0]))
    two = canopy_rasters(pack, x[:2], y[:2], np.array([10.0, 25.0]), np.array([12.0, 12.0]))
    assert np.array_equal(one[1], two[1])
    assert two[0].max() == 25.0 and np.all(two[0][two[1] > 0] == 25.0)
    big = canopy_rasters(pack, x[2:], y[2:], np.array([30.0]), np.array([40.0]))
    assert (big[1] == 1.0).sum() >= 4
    assert big[1].sum() * 100.0 == pytest.approx(math.pi * 400.0, rel=0.01)


def load_pack_stub():
    """A pack grid of 100 x 60 cells of 10 m at the origin (canopy_rasters reads only the grid)."""
    from twin.city.pack import DataPack

    return DataPack(
        file=Path("pack.toml"),
        name="stub",
        title="",
        crs="EPSG:25832",
        extent=(0.0, 0.0, 1000.0, 600.0),
        resolution=10.0,
        layers={},
    )


def test_field_names_come_from_pack_toml(tmp_path: Path):
    """A register with the city's own column names reads through the layer's *_field options; trees
    outside the extent are dropped and counted."""
    layer = TREES_LAYER + (
        'id_field = "baumnr"\nspecies_field = "art"\nheight_field = "hoehe_m"\n'
        'crown_field = "krone_m"\nx_field = "rechtswert"\ny_field = "hochwert"\n'
    )
    header = "baumnr,art,hoehe_m,krone_m,rechtswert,hochwert\n"
    rows = "A-1,Acer platanoides,14,8,330200,5689200\nA-2,Quercus robur,22,16,340000,5689200\n"
    toml = pack_with_trees(tmp_path, rows, layer, header)
    messages: list[str] = []
    pack = load_pack(toml)
    steps = [s for s in city_steps() if s.name in ("terrain", "trees")]
    run_build(pack, steps, tmp_path / "build", progress=messages.append)
    assert any("1 read, 1 outside the extent dropped" in m for m in messages), messages
    df = read_points(tmp_path / "build" / "trees.gpkg")
    assert list(df["id"]) == ["A-1"] and list(df["species"]) == ["Acer platanoides"]
    assert read_raster(tmp_path / "build" / "canopy_height.tif").max() == 14.0


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ("T1,Tilia,60,8,330200,5689200\n", r"line 2, tree 'T1', field 'height' = 60; expected 1 to 50"),
        ("T1,Tilia,12,0.2,330200,5689200\n", r"line 2, tree 'T1', field 'crown_diameter' = 0.2"),
        ("T1,Tilia,12,8,330200,5689200\nT1,Acer,9,6,330300,5689200\n",
         r"line 3, tree 'T1', field 'id': id appears twice \(first on line 2\)"),
        ("T1,Tilia,12,8,east,5689200\n", r"line 2, tree 'T1', field 'x': expected a number, got 'east'"),
        (",Tilia,12,8,330200,5689200\n", r"line 2, field 'id': the tree has no id"),
    ],
)  # fmt: skip
def test_bad_rows_are_named(tmp_path: Path, rows: str, match: str):
    path = tmp_path / "trees.csv"
    path.write_text(HEADER + rows, encoding="utf-8")
    with pytest.raises(DataError, match=r"trees\.csv: " + match):
        read_trees(path, {})


def test_missing_field_is_named(tmp_path: Path):
    path = tmp_path / "trees.csv"
    path.write_text("id,species,height,x,y\nT1,Tilia,12,330200,5689200\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"trees\.csv: tree register lacks field\(s\) krone"):
        read_trees(path, {"crown_field": "krone"})


def test_no_trees_layer_gives_empty_products(tmp_path: Path):
    """The mini pack has no trees layer: the step still writes an empty point layer and zero rasters."""
    out = build(write_mini_pack(tmp_path / "pack"), tmp_path / "build")
    info = pyogrio.read_info(out / "trees.gpkg")
    assert info["features"] == 0 and info["geometry_type"] == "Point"
    for name in ("canopy_height.tif", "canopy_cover.tif"):
        a = read_raster(out / name)
        assert a.shape == (60, 100) and not a.any()
