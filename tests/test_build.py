"""The data build: products on the pack grid, incremental rebuilds, and failures that leave nothing half-built."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from twin.app.steps import build_steps
from twin.city.build import BuildError, Step, read_manifest, run_build
from twin.city.buildings import read_buildings
from twin.city.pack import load_pack
from twin.errors import DataError


def build(pack_toml: Path, build_dir: Path) -> dict[str, str]:
    results = run_build(load_pack(pack_toml), build_steps(), build_dir)
    return {r.name: r.status for r in results}


def test_full_build_products(mini_pack: Path, tmp_path: Path):
    out = tmp_path / "build"
    status = build(mini_pack, out)
    assert set(status.values()) == {"built"}
    manifest = read_manifest(out)
    assert set(manifest["steps"]) == {s.name for s in build_steps()}
    assert manifest["steps"]["buildings"]["sources"] == ["buildings"]
    assert manifest["steps"]["buildings"]["after"] == ["terrain"]
    assert manifest["sources"]["terrain"]["sha256"]
    for step in build_steps():
        for o in step.outputs:
            files = (
                [out / o]
                if (out / o).is_file()
                else [f for f in (out / o).rglob("*") if f.is_file()]
            )
            size = sum(f.stat().st_size for f in files)
            assert manifest["steps"][step.name]["outputs"][o]["bytes"] == size > 0

    with rasterio.open(out / "terrain.tif") as src:
        assert src.crs.to_epsg() == 25832 and src.res == (10.0, 10.0)
        assert (src.width, src.height) == (100, 60)
        z = src.read(1)
        x = src.xy(30, np.arange(100))[0]
    # the source is the plane z = 35 + 0.002 (x - 330000); bilinear resampling keeps a plane exact
    assert np.allclose(z[30], 35.0 + 0.002 * (np.asarray(x) - 330000.0), atol=1e-3)

    with rasterio.open(out / "sealed.tif") as src:
        sealed = src.read(1)
    assert sealed[30, 50] == pytest.approx(0.9) and sealed[0, 0] == pytest.approx(0.0)

    b = read_buildings(out / "buildings.gpkg")
    assert list(b["id"]) == [f"B{i}" for i in range(6)]
    assert np.allclose(b["height"], 10.0 + 3 * np.arange(6))
    assert np.allclose(b["area"], 40 * 25, rtol=2e-3)  # footprints drawn as 40 m x 25 m
    west = 330100.0 + 120.0 * np.arange(6)  # a building stands on its lowest (western) corner
    assert np.allclose(b["base"], 35.0 + 0.002 * (west - 330000.0), atol=0.02)

    with rasterio.open(out / "building_height.tif") as src:
        h = src.read(1)
        r, c = src.index(330100.0 + 120.0 * 2 + 20, 5689112.5)
    assert h[r, c] == pytest.approx(16.0)
    assert np.count_nonzero(h) == pytest.approx(6 * 40 * 25 / 100, rel=0.25)
    with rasterio.open(out / "building_id.tif") as src:
        assert src.read(1)[r, c] == 3


def test_second_run_rebuilds_nothing_and_changes_rebuild_dependents(
    mini_pack: Path, tmp_path: Path
):
    out = tmp_path / "build"
    build(mini_pack, out)
    assert set(build(mini_pack, out).values()) == {"cached"}

    wells = mini_pack.parent / "wells.csv"
    wells.write_text(
        wells.read_text()
        + "GWM-3,0011223344556679,Well 3,330300,5689300,35,35.5,20,8,18,upper,synthetic\n"
    )
    status = build(mini_pack, out)
    assert [n for n, s in status.items() if s == "built"] == ["sensors"]

    st = (
        wells.stat()
    )  # touching a source (content unchanged) rebuilds what depends on it, as make does
    os.utime(wells, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert [n for n, s in build(mini_pack, out).items() if s == "built"] == ["sensors"]

    with rasterio.open(mini_pack.parent / "terrain.tif", "r+") as dst:
        dst.write(dst.read(1) + 1.0, 1)
    status = build(mini_pack, out)
    rebuilt = {n for n, s in status.items() if s == "built"}
    assert rebuilt == {"terrain", "buildings", "building_rasters", "trees", "tiles"}
    assert np.allclose(read_buildings(out / "buildings.gpkg")["base"][0], 36.2, atol=0.02)


def test_deleted_product_is_rebuilt(mini_pack: Path, tmp_path: Path):
    out = tmp_path / "build"
    build(mini_pack, out)
    (out / "streets.gpkg").unlink()
    rebuilt = [n for n, s in build(mini_pack, out).items() if s == "built"]
    assert rebuilt[0] == "streets" and set(rebuilt) <= {"streets", "boulevards", "tiles"}


def test_failed_step_leaves_previous_products_and_manifest(mini_pack: Path, tmp_path: Path):
    out = tmp_path / "build"
    build(mini_pack, out)
    before = (out / "buildings.gpkg").read_bytes()
    manifest_before = (out / "manifest.json").read_text()
    src = mini_pack.parent / "buildings.geojson"
    data = json.loads(src.read_text())
    data["features"][3]["properties"]["height"] = -4.0
    src.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"buildings.geojson: building 'B3' field 'height' = -4.0"):
        build(mini_pack, out)
    assert (out / "buildings.gpkg").read_bytes() == before
    assert (out / "manifest.json").read_text() == manifest_before
    assert not any((out / ".partial").glob("*/*"))


def test_unknown_landcover_code_is_refused(mini_pack: Path, tmp_path: Path):
    with rasterio.open(mini_pack.parent / "landcover.tif", "r+") as dst:
        a = dst.read(1)
        a[0, 0] = 9
        dst.write(a, 1)
    with pytest.raises(DataError, match=r"class code\(s\) \[9\]"):
        build(mini_pack, tmp_path / "build")


def test_unknown_step_and_only(mini_pack: Path, tmp_path: Path):
    pack = load_pack(mini_pack)
    with pytest.raises(BuildError, match="unknown build step"):
        run_build(pack, build_steps(), tmp_path / "b", only=["roofs"])
    done = run_build(pack, build_steps(), tmp_path / "b", only=["building_rasters"])
    assert [r.name for r in done] == ["terrain", "buildings", "building_rasters"]


def test_two_builds_of_one_folder_run_the_step_once(mini_pack: Path, tmp_path: Path):
    """A second build of the same folder waits for the first (the folder's lock), then finds the
    step up to date instead of writing the same partial outputs beside it."""
    started, release, runs = threading.Event(), threading.Event(), []

    def slow(ctx) -> None:
        runs.append(1)
        started.set()
        assert release.wait(120)
        ctx.out("slow.txt").write_text("made once\n")

    steps = [Step("slow", slow, outputs=("slow.txt",))]
    pack, out = load_pack(mini_pack), tmp_path / "build"
    said: list[str] = []
    results: dict[str, list] = {}

    def first() -> None:
        results["first"] = run_build(pack, steps, out)

    def second() -> None:
        results["second"] = run_build(pack, steps, out, progress=said.append)

    a, b = threading.Thread(target=first), threading.Thread(target=second)
    a.start()
    try:
        assert started.wait(120)
        b.start()
        for _ in range(1200):  # the second build reports that it waits (up to 120 s)
            if any("waiting for another build" in s for s in said):
                break
            time.sleep(0.1)
        assert any("waiting for another build" in s for s in said), said
    finally:
        release.set()
        a.join(120)
        if b.ident is not None:  # started
            b.join(120)
    assert runs == [1]
    assert [r.status for r in results["first"]] == ["built"]
    assert [r.status for r in results["second"]] == ["cached"]
    assert (out / "slow.txt").read_text() == "made once\n"
