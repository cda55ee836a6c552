"""`twin groundwater run` as users start it: outputs of a short run, clear errors, shipped files."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from gw_scenario import write_gw_scenario

from twin.errors import ConfigError
from twin.groundwater.scenario import load_scenario

TWIN = Path(sys.executable).parent / "twin"
REPO = Path(__file__).resolve().parents[1]


def twin(*args: str, cwd: Path, pack: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TWIN_DEBUG", "TWIN_PACK")}
    if pack is not None:  # the one pack rule: --pack, then $TWIN_PACK, then the default
        env["TWIN_PACK"] = str(pack)
    return subprocess.run(
        [str(TWIN), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def test_short_run_writes_every_output(tmp_path: Path, mini_pack: Path):
    scenario = write_gw_scenario(tmp_path, mini_pack)
    r = twin("groundwater", "run", str(scenario), "--end", "2024-03-08T00:00:00Z",
             "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path, pack=mini_pack)  # fmt: skip
    assert r.returncode == 0, r.stderr
    (run,) = (tmp_path / "runs" / "mini-groundwater").iterdir()
    assert not run.name.startswith(".") and not run.name.endswith(".failed")
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "finished"
    assert status["end"] == "2024-03-08T00:00:00Z"
    for name in ("head_steady.tif", "head_end.tif", "depth_to_water_end.tif", "budget.csv",
                 "budget_packages.csv", "assimilation.csv", "hydrographs.csv", "map_head.png",
                 "map_depth_to_water.png", "map_head_change.png", "hydrograph_GWM-1.png", "hydrograph_WW-1.png",
                 "report.html"):  # fmt: skip
        assert (run / name).stat().st_size > 0, name
    with (run / "budget.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["time", "inflow", "outflow", "storage_change", "error"]
    assert len(rows) == 1 + 8  # the steady state and 7 daily steps
    for row in rows[1:]:
        inflow, outflow, storage, error = (float(v) for v in row[1:])
        assert abs(error) <= 1e-6 * max(inflow, outflow)
        assert error == pytest.approx(inflow - outflow - storage, abs=1e-12)
    with rasterio.open(run / "head_end.tif") as src:
        assert src.crs.to_epsg() == 25832
        assert src.transform.e < 0 and src.transform.f == pytest.approx(5689600.0)
        head = src.read(1)
    with rasterio.open(run / "depth_to_water_end.tif") as src:
        depth = src.read(1)
    assert np.nanmin(head) > 20.0 and np.nanmax(head) < 40.0
    assert np.nanmedian(depth) > 0.0  # the water table lies below the ground
    assert "ground water" in r.stderr and "set-up" in r.stderr  # the progress, with its phases
    phases = status["metrics"]["phases_s"]
    assert set(phases) >= {"set_up", "readings", "assimilation", "solve", "outputs"}
    assert status["readings"]["provenance"] == "synthetic truth run (no readings)"
    report = (run / "report.html").read_text(encoding="utf-8")
    assert "Source: synthetic truth run (no readings)." in report
    assert "loggers' readings" not in report


def test_bad_scenario_is_one_clear_line(tmp_path: Path, mini_pack: Path):
    scenario = write_gw_scenario(tmp_path, mini_pack, **{"k_log10_sd": "k_log_sd"})
    r = twin("groundwater", "run", str(scenario), "--runs-dir", str(tmp_path / "runs"),
             cwd=tmp_path, pack=mini_pack)  # fmt: skip
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "scenario.toml" in lines[0] and "aquifer.k_log_sd" in lines[0]
    assert "did you mean 'k_log10_sd'" in lines[0]


def test_failed_run_is_marked_failed_not_valid(tmp_path: Path, mini_pack: Path):
    scenario = write_gw_scenario(tmp_path, mini_pack)
    (tmp_path / "pumping.csv").write_text(
        "name,x,y,rate_m3_per_day\nfar,100,100,-10\n", encoding="utf-8"
    )
    r = twin("groundwater", "run", str(scenario), "--end", "2024-03-03T00:00:00Z",
             "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path, pack=mini_pack)  # fmt: skip
    assert r.returncode == 1 and "outside the model grid" in r.stderr
    (run,) = (tmp_path / "runs" / "mini-groundwater").iterdir()
    assert run.name.endswith(".failed")
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "failed" and "outside the model grid" in status["reason"]


@pytest.mark.parametrize("name", ["groundwater-today", "groundwater-drought", "groundwater-replay"])
def test_shipped_scenarios_are_valid(name: str):
    sc = load_scenario(REPO / "simulations" / f"{name}.toml")
    assert sc.name == name
    assert sc.config["grid"]["cell"] >= 50.0  # the default run stays small
    assert sc.clock().duration <= 200 * 86400.0


def test_scenario_errors_name_file_key_and_expectation(tmp_path: Path, mini_pack: Path):
    scenario = write_gw_scenario(tmp_path, mini_pack, **{"west = 31.0": 'west = "open"'})
    with pytest.raises(ConfigError, match=r"'edges.west' must be 'no-flow' or a fixed head"):
        load_scenario(scenario)
    scenario = write_gw_scenario(tmp_path, mini_pack, **{"stage = 28.0": "stage = 20.0"})
    with pytest.raises(ConfigError, match="above 'river.bottom'"):
        load_scenario(scenario)


def test_parameters_from_rasters(tmp_path: Path, mini_pack: Path):
    """K and Sy from GeoTIFFs (north-up, any grid) are averaged onto the model grid."""
    from rasterio.transform import from_origin

    from twin.groundwater.scenario import build_setup

    k = np.full((60, 100), 2e-3, dtype="float32")
    k[:30, :] = 5e-4  # the northern half (first rows of a north-up raster) is less permeable
    with rasterio.open(
        tmp_path / "k.tif", "w", driver="GTiff", width=100, height=60, count=1, dtype="float32",
        crs="EPSG:25832", transform=from_origin(330000.0, 5689600.0, 10.0, 10.0),
    ) as dst:  # fmt: skip
        dst.write(k, 1)
    scenario = write_gw_scenario(
        tmp_path, mini_pack, **{"sy = 0.18": 'sy = 0.18\nk_raster = "k.tif"'}
    )
    setup = build_setup(load_scenario(scenario))
    model = setup.model
    assert model.grid.shape == (12, 20)
    assert np.allclose(model.k[:6], 2e-3) and np.allclose(model.k[6:], 5e-4)  # row 0 = south
    assert setup.wells["id"].tolist() == ["GWM-1", "GWM-2"]
    assert len(model.rivers["Rhine"].rows) == 24  # two columns of 50 m cells on the line


def test_geotiff_is_north_up(tmp_path: Path):
    from twin.groundwater import Grid
    from twin.groundwater.outputs import write_geotiff

    grid = Grid(nx=4, ny=3, cell=100.0, origin=(330000.0, 5689000.0))
    rows = np.repeat(np.arange(3.0)[:, None], 4, axis=1)  # value = model row (0 = south)
    write_geotiff(tmp_path / "rows.tif", grid, rows)
    with rasterio.open(tmp_path / "rows.tif") as src:
        data = src.read(1)
        (value,) = src.sample([(330050.0, 5689250.0)])  # a point in the northern row
    assert data[0].tolist() == [2.0] * 4 and value[0] == 2.0
    assert src.bounds == (330000.0, 5689000.0, 330400.0, 5689300.0)


def test_check_builds_the_setup_a_run_would_and_takes_the_run_options(
    tmp_path: Path, mini_pack: Path
):
    """`check` takes --end like `run`: the step count and memory are those of that run."""
    scenario = write_gw_scenario(tmp_path, mini_pack)
    r = twin(
        "groundwater",
        "check",
        str(scenario),
        "--end",
        "2024-03-08T00:00:00Z",
        cwd=tmp_path,
        pack=mini_pack,
    )
    assert r.returncode == 0, r.stderr
    assert "7 steps of 24 h, 12 x 20 cells of 50 m, pumping wells: 1" in r.stdout
    assert (tmp_path / "build" / "mini" / "terrain.tif").is_file()  # built as the run builds it
    r = twin(
        "groundwater",
        "check",
        str(scenario),
        "--end",
        "2024-02-01T00:00:00Z",
        cwd=tmp_path,
        pack=mini_pack,
    )
    assert r.returncode == 1 and "scenario.start" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
