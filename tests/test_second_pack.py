"""Swap-in: a second pack in the formats a city delivers (LoD2 tiles, a VRT terrain, an ALKIS-like vector
land use, a tree register and an OSM extract with other names) builds with `twin data build --pack` and
runs a traffic scenario, without a line of code that knows it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
from conftest import SHARED_DATA
from second_pack import GROUND_M, write_second_pack

from twin.city.buildings import read_buildings, read_surfaces

LOD2 = SHARED_DATA / "nrw-lod2"
TWIN = [sys.executable, "-m", "twin.cli"]
TIMEOUT_S = 900  # generous: a loaded 2-core machine

SCENARIO = """
[scenario]
title = "Second pack: bus priority and the port gate"
start = 2026-03-10T06:00:00Z
duration = "00:15"
warmup = "00:02"
seeds = [5]

[demand.background]
cars_per_hour = 400.0

[demand.transit]
lines = [{ ref = "B1", headway_min = 4.0 }]

[demand.trucks]
per_day = 3000.0

[baseline]
label = "Actuated signals"

[variants.bus-priority]
label = "Transit priority"
[[variants.bus-priority.controllers]]
type = "transit_priority"
corridor_streets = ["Ringallee"]
"""


def _twin(*args: str, cwd: Path) -> str:
    proc = subprocess.run(
        [*TWIN, *args], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False
    )
    assert proc.returncode == 0, f"twin {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def second(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The second pack, written and built once through the command line."""
    if not LOD2.is_dir():
        pytest.skip(f"the NRW LoD2 tiles are not here ({LOD2.name}/ under the shared data folder)")
    root = tmp_path_factory.mktemp("second")
    pack = write_second_pack(root / "pack", LOD2)
    out = _twin("data", "build", "--pack", str(pack), "--build-dir", str(root / "build"), cwd=root)
    return {"root": root, "pack": pack, "build": root / "build" / "wesel-test", "log": out}


def test_buildings_are_the_lod2_tiles(second: dict[str, Path]) -> None:
    expected = sum(
        len(re.findall(r"<bldg:Building\b", f.read_text(encoding="utf-8")))
        for f in LOD2.glob("*.gml")
    )
    b = read_buildings(second["build"] / "buildings.gpkg")
    assert len(b["id"]) == expected
    assert all(str(i).startswith("DENW") for i in b["id"])  # the official gml:ids
    s = read_surfaces(second["build"] / "building_surfaces.npz")
    assert set(np.unique(s["building"])) == set(range(expected))  # every building has surfaces
    with rasterio.open(second["build"] / "building_height.tif") as src:
        assert (src.read(1) > 0).sum() > 100  # footprints rasterised from the same buildings


def test_vrt_terrain_vector_landuse_and_renamed_trees(second: dict[str, Path]) -> None:
    with rasterio.open(second["build"] / "terrain.tif") as src:
        z = src.read(1)
    # both tiles of the VRT arrive: the plane rises 1 m/km eastwards from GROUND_M (tolerance: one
    # 25 m source cell of slope, 2.5 cm, plus float32)
    xs = 333000.0 + (np.arange(z.shape[1]) + 0.5) * 10.0
    np.testing.assert_allclose(z[z.shape[0] // 2], GROUND_M + 0.001 * (xs - 333000.0), atol=0.03)
    with rasterio.open(second["build"] / "landcover.tif") as src:
        codes = set(np.unique(src.read(1)).tolist())
    assert {7, 8, 10, 11} <= codes  # port/industry, housing, forest, farmland via class_map
    trees_csv = (second["pack"].parent / "baumkataster.csv").read_text().splitlines()
    meta, _, _, values = pyogrio.raw.read(second["build"] / "trees.gpkg")
    fields = dict(zip(meta["fields"], values, strict=True))
    assert len(fields["id"]) == len(trees_csv) - 1
    assert set(fields["species"]) == {"Tilia cordata"}


def test_net_lines_and_gates_come_from_the_extract(second: dict[str, Path]) -> None:
    facts = json.loads((second["build"] / "krefeld.netfacts.json").read_text())
    assert [g["name"] for g in facts["gates"]] == ["Hafentor"]  # the farm gate is not a port gate
    lines = (second["build"] / "krefeld.ptlines.xml").read_text()
    assert 'line="B1"' in lines


def test_a_second_build_rebuilds_nothing(second: dict[str, Path]) -> None:
    out = _twin(
        "data", "build", "--pack", str(second["pack"]),
        "--build-dir", str(second["root"] / "build"), cwd=second["root"],
    )  # fmt: skip
    assert re.search(r"\b0 built\b", out), out


def test_traffic_scenario_runs_on_the_second_pack(second: dict[str, Path]) -> None:
    scenario = second["root"] / "scenario.toml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    runs = second["root"] / "runs"
    _twin(
        "traffic", "run", str(scenario), "--pack", str(second["pack"]),
        "--build-dir", str(second["root"] / "build"), "--runs-dir", str(runs), cwd=second["root"],
    )  # fmt: skip
    (run,) = [p for p in (runs / "scenario").iterdir() if not p.name.startswith(".")]
    assert json.loads((run / "status.json").read_text())["state"] == "finished"
    kpi: dict[tuple[str, str], float] = {}
    for line in (run / "kpis.csv").read_text().splitlines()[1:]:
        variant, _, name, value, _ = line.split(",")
        kpi[(variant, name)] = float(value)
    assert kpi[("baseline", "gate_throughput")] > 0  # lorries reach the port gate and check in
    assert kpi[("baseline", "trips_completed")] > 0
    # the B1 buses run; priority on the Ringallee signals does not make them slower
    assert kpi[("bus-priority", "delay_mean_bus")] <= kpi[("baseline", "delay_mean_bus")]


def test_a_changed_tile_of_the_vrt_rebuilds_the_terrain(second: dict[str, Path]) -> None:
    tile = second["pack"].parent / "dgm" / "dgm_1.tif"
    with rasterio.open(tile, "r+") as dst:
        z = dst.read(1)
        dst.write(z + 1.0, 1)  # the eastern tile one metre higher; the .vrt is unchanged
    out = _twin(
        "data", "build", "--pack", str(second["pack"]), "--only", "terrain",
        "--build-dir", str(second["root"] / "build"), cwd=second["root"],
    )  # fmt: skip
    assert re.search(r"built\s+\S+ s\s+terrain", out), out
    with rasterio.open(second["build"] / "terrain.tif") as src:
        east = src.read(1)[:, -5]
    np.testing.assert_allclose(
        east, GROUND_M + 1.0 + 0.001 * (337000.0 - 25.0 - 333000.0), atol=0.05
    )


def test_tileset_carries_the_lod2_surfaces_and_passes_the_validator(
    second: dict[str, Path],
) -> None:
    """Walls and roofs in the tileset have the CityGML polygons' areas per building (0.5 %), and
    every GLB passes the Khronos glTF validator with 0 errors."""
    from test_citytiles_lod2 import tileset_areas
    from test_tiles_writer import validate_glbs

    from twin.city.buildings import SURFACE_KINDS
    from twin.city.citygml import read_citygml

    lod2 = read_citygml(LOD2)
    got = tileset_areas(second["build"] / "tiles" / "tileset.json")
    walls = lod2.areas[:, SURFACE_KINDS["wall"]] + lod2.areas[:, SURFACE_KINDS["other"]]
    roofs = lod2.areas[:, SURFACE_KINDS["roof"]]
    for i, gid in enumerate(lod2.id):
        assert got.get((gid, "walls"), 0.0) == pytest.approx(walls[i], rel=5e-3), gid
        assert got.get((gid, "roofs"), 0.0) == pytest.approx(roofs[i], rel=5e-3), gid
    files = sorted(str(p) for p in (second["build"] / "tiles").rglob("*.glb"))
    for f, res in validate_glbs(files).items():
        assert res["errors"] == 0, (f, res["messages"])
