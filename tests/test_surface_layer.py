"""A pack whose surface comes from a 3D Tiles mesh (`[layers.surface] format = "3dtiles"`): the tiny
pack's own textured tileset, built first, is the surface layer of a second build of the same pack;
its building heights come back from the mesh and the heat model runs on them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import write_mini_pack

from twin.app.steps import build_steps
from twin.city.build import run_build
from twin.city.pack import load_pack

SURFACE_LAYER = """
[layers.surface]
path = "{tileset}"
format = "3dtiles"
status = "synthetic"
licence = "CC0-1.0"
source = "test fixture: the pack's own tileset"
"""

SCENARIO = """
[scenario]
name = "surface-test"
pack = "{pack}"
build_dir = "{build}"
start = "2026-07-22T08:00:00Z"
end = "1h"
[forcing]
station = "KS-1"
[readings]
source = "none"
"""


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1).astype(np.float64)


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny pack built with its tileset (footprint heights), then rebuilt from that tileset."""
    root = tmp_path_factory.mktemp("surface")
    first = write_mini_pack(root / "a")
    run_build(load_pack(first), build_steps(), root / "build-a", only=["tiles", "building_rasters"])
    second = write_mini_pack(root / "b")
    tileset = (root / "build-a" / "tiles" / "tileset.json").as_posix()
    with second.open("a", encoding="utf-8") as f:
        f.write(SURFACE_LAYER.format(tileset=tileset))
    return {"a": root / "build-a", "b": root / "build-b", "pack_b": second, "root": root}


def test_building_heights_come_from_the_mesh(builds: dict[str, Path]) -> None:
    pack = load_pack(builds["pack_b"])
    assert pack.layers["surface"].format == "3dtiles"
    done = run_build(pack, build_steps(), builds["b"], only=["building_rasters"])
    assert "building_rasters" in [r.name for r in done if r.status == "built"]
    a, b = builds["a"], builds["b"]
    footprint_h, mesh_h = _read(a / "building_height.tif"), _read(b / "building_height.tif")
    terrain, surface = _read(b / "terrain.tif"), _read(b / "surface.tif")
    building = footprint_h > 0
    assert building.sum() > 50
    share = np.mean(np.abs(mesh_h[building] - footprint_h[building]) < 0.5)
    assert share >= 0.95, f"{share:.3f} of building cells within 0.5 m of the footprints' heights"
    assert (mesh_h[~building] == 0).all()  # only footprints' cells are buildings
    ground = ~building
    assert np.mean(np.abs(surface[ground] - terrain[ground]) < 0.3) >= 0.95
    # without the layer, surface.tif is terrain + footprint height
    np.testing.assert_allclose(_read(a / "surface.tif"), _read(a / "terrain.tif") + footprint_h,
                               atol=1e-4)  # fmt: skip
    # a changed surface rebuilds, an unchanged one is cached
    again = run_build(pack, build_steps(), builds["b"], only=["building_rasters"])
    assert {r.name: r.status for r in again}["building_rasters"] == "cached"


def test_heat_model_runs_on_the_mesh_heights(builds: dict[str, Path]) -> None:
    from twin.heat.model import HeatModel
    from twin.heat.scenario import build_setup, load_scenario

    path = builds["root"] / "surface-test.toml"
    path.write_text(SCENARIO.format(pack=builds["pack_b"].as_posix(),
                                    build=(builds["root"] / "heat-build").as_posix()), "utf-8")  # fmt: skip
    setup = build_setup(load_scenario(path))
    mesh_h = _read(builds["root"] / "heat-build" / "mini" / "building_height.tif")
    np.testing.assert_allclose(setup.building_height, mesh_h, atol=1e-5)
    m = HeatModel()
    m.initialize({"setup": setup, "record": True})
    m.update_until(3600.0)
    assert np.isfinite(m.t_surface).all() and np.isfinite(m.t_air).all()
    # the buildings of the mesh shade and close the sky: lower sky-view factor beside them
    near = (setup.building_height == 0) & (np.roll(setup.building_height, 1, axis=0) > 0)
    open_ = setup.building_height == 0
    assert m.svf[near].mean() < m.svf[open_].mean()
