"""`twin tiles rasterize`: DSMs from tilesets, checked against the build's own rasters, the level of
detail chosen by the cell size, Cesium's samples, and the numba kernel against its NumPy reference."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import SHARED_DATA
from rasterio.windows import from_bounds

from twin.errors import DataError
from twin.tiles import open_tileset
from twin.tiles.rasterize import (
    NODATA,
    ecef_to_grid_crs,
    empty_rasters,
    raster_triangles,
    raster_triangles_numpy,
    rasterize_tileset,
    write_rasters,
)

SAMPLES = SHARED_DATA / "3dtiles-samples"
WINDOW = (330000.0, 5689000.0, 330500.0, 5689500.0)  # 500 m x 500 m of the centre
TREE_WINDOW = (330000.0, 5690000.0, 330500.0, 5690500.0)  # north of it, with 340 trees


@pytest.fixture(scope="module")
def krefeld(krefeld_build: Path) -> Path:
    """The built Krefeld products (tileset and rasters), built by the session's fixture."""
    return krefeld_build


def _window(path: Path, dtype=np.float64, window: tuple = WINDOW) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1, window=from_bounds(*window, src.transform)).astype(dtype)


def test_krefeld_dsm_reproduces_the_build_rasters(krefeld: Path, tmp_path: Path) -> None:
    """At 10 m, the level of detail chosen by the cell size: buildings at terrain + height, open
    ground at the terrain, the top feature id the building of building_id.tif."""
    r = rasterize_tileset(krefeld / "tiles", 10.0, extent=WINDOW)
    terrain = _window(krefeld / "terrain.tif")
    height = _window(krefeld / "building_height.tif")
    canopy = _window(krefeld / "canopy_height.tif")
    assert r.top.shape == terrain.shape == (50, 50)
    assert (r.count > 0).all()  # the tileset covers the whole window
    excess = r.top - terrain
    building = height > 0
    ground = ~building & (canopy <= 0)
    assert building.sum() > 200 and ground.sum() > 200
    share_b = np.mean(np.abs(excess[building] - height[building]) < 0.5)
    share_g = np.mean(np.abs(excess[ground]) < 0.3)
    assert share_b >= 0.95, f"buildings: {share_b:.3f} within 0.5 m"
    assert share_g >= 0.95, f"open ground: {share_g:.3f} within 0.3 m"
    # the lowest surface is never above the highest; a cell with a building has a roof and ground
    assert (r.bottom <= r.top).all()
    assert (r.count[building] >= 2).mean() > 0.9

    # feature ids: the value's id in the JSON beside the raster is the building of building_id.tif
    paths = write_rasters(r, tmp_path / "s.tif", feature_ids=tmp_path / "ids.tif")
    rows = json.loads((tmp_path / "ids.json").read_text())["features"]
    assert len(paths) == 3
    from twin.city.buildings import read_buildings

    ids = read_buildings(krefeld / "buildings.gpkg")["id"]
    b_id = _window(krefeld / "building_id.tif", np.int64)
    name_of = {row["value"]: row["id"] for row in rows if row["table"] == 0}
    both = (b_id > 0) & (r.feature > 0)
    got = np.array([name_of.get(int(v)) for v in r.feature[both]], dtype=object)
    want = ids[b_id[both] - 1].astype(object)
    share = np.mean(got == want)
    assert both.sum() >= 0.95 * (b_id > 0).sum()
    assert share >= 0.95, f"feature ids: {share:.3f} of {both.sum()} building cells match"


def test_krefeld_trees_at_their_crown_apex(krefeld: Path) -> None:
    """Trees: canopy_height.tif is the tallest crown whose disc touches a cell (a flat top over the
    whole disc), the tileset's crowns are icosahedra whose top is one vertex over the tree point. At
    10 m cell centres the mesh's crown is 1.5-2.5 m below that flat top (its cap slopes), so trees
    are compared where the apex is: the highest 1 m cell within the 10 m cell holding a tree point."""
    import shapely

    from twin.city.vector import read_vector

    trees = read_vector(
        krefeld / "trees.gpkg", "EPSG:25832", fields=["height", "base"], what="trees"
    )
    x, y = shapely.get_x(trees["geometry"]), shapely.get_y(trees["geometry"])
    h, base = np.asarray(trees["height"], float), np.asarray(trees["base"], float)
    w, s, e, n = TREE_WINDOW
    inside = (x > w + 10) & (x < e - 10) & (y > s + 10) & (y < n - 10)
    assert inside.sum() >= 10
    x, y, h, base = x[inside], y[inside], h[inside], base[inside]
    r = rasterize_tileset(krefeld / "tiles", 1.0, extent=TREE_WINDOW, features=False)
    cols, rows = ((x - w) // 10).astype(int), ((n - y) // 10).astype(int)
    block = r.top.reshape(50, 10, 50, 10).max(axis=(1, 3))
    canopy = _window(krefeld / "canopy_height.tif", window=TREE_WINDOW)
    building = _window(krefeld / "building_height.tif", window=TREE_WINDOW) > 0
    # the cell's tallest tree is the one its canopy height names; skip cells under a building
    mine = np.isclose(canopy[rows, cols], h, atol=0.05) & ~building[rows, cols]
    assert mine.sum() >= 100
    err = block[rows, cols][mine] - (base[mine] + h[mine])
    share = np.mean(np.abs(err) < 1.0)
    assert share >= 0.95, f"trees: {share:.3f} of {mine.sum()} apexes within 1 m"


def test_coarse_resolution_reads_coarse_tiles(krefeld: Path) -> None:
    """The geometric error against the cell size: a coarse grid stops at coarse tiles."""
    fine = rasterize_tileset(krefeld / "tiles", 2.0, extent=WINDOW, features=False)
    coarse = rasterize_tileset(krefeld / "tiles", 50.0, extent=WINDOW, features=False)
    assert len(coarse.tiles) < len(fine.tiles)
    assert max(coarse.geometric_errors) > 2.0 >= max(fine.geometric_errors)
    assert all(e <= 50.0 for e in coarse.geometric_errors)
    assert coarse.count.min() > 0  # a coarse tile still covers every cell


def test_cli_writes_geotiffs(krefeld: Path, tmp_path: Path) -> None:
    out = tmp_path / "surface.tif"
    extent = [str(v) for v in (330100, 5689100, 330300, 5689250)]
    cmd = [sys.executable, "-m", "twin.cli", "tiles", "rasterize", str(krefeld / "tiles"),
           "-o", str(out), "--resolution", "5", "--extent", *extent,
           "--lowest", str(tmp_path / "low.tif"), "--count", str(tmp_path / "n.tif")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with rasterio.open(out) as src:
        assert src.crs.to_epsg() == 25832 and src.nodata == NODATA
        assert (src.width, src.height) == (40, 30)
        assert src.transform.c == 330100 and src.transform.f == 5689250
        top = src.read(1)
    with rasterio.open(tmp_path / "low.tif") as src:
        assert (src.read(1) <= top).all()
    assert 30 < top.min() < top.max() < 200  # m DHHN2016 in Krefeld


@pytest.mark.parametrize(
    "args, message",
    [
        ({"resolution": 0.0}, "resolution must be a positive"),
        ({"resolution": float("nan")}, "resolution must be a positive"),
        ({"extent": (0.0, 0.0, 10.0, 10.0)}, "lies outside the tileset's bounds"),
        ({"extent": (330100.0, 5689100.0, 330000.0, 5689200.0)}, "E > W"),
        ({"crs": "EPSG:99999"}, "not a coordinate reference system"),
    ],
)
def test_bad_input_is_named(krefeld: Path, args: dict, message: str) -> None:
    kw = {"resolution": 10.0, "extent": WINDOW, **args}
    res = kw.pop("resolution")
    with pytest.raises(DataError, match=message):
        rasterize_tileset(krefeld / "tiles", res, **kw)


def test_no_tileset_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no tileset there"):
        rasterize_tileset(tmp_path / "nothing" / "tileset.json", 1.0)


@pytest.mark.parametrize("name", ["Tileset", "BatchedWithTransformRegion", "PointCloudRGB"])
def test_cesium_sample_within_its_bounding_volumes(name: str) -> None:
    """A sample (Philadelphia: UTM 18N) rasterizes inside the footprints and height ranges of the
    tiles drawn, and covers cells of each."""
    path = SAMPLES / name
    if not (path / "tileset.json").exists():
        pytest.skip(f"the 3D Tiles sample {name} is not here (3dtiles-samples/ in the shared data)")
    crs = "EPSG:32618"
    ts = open_tileset(path)
    r = rasterize_tileset(ts, 1.0, crs=crs)
    covered = r.count > 0
    assert covered.sum() > 5
    g = r.grid
    rows, cols = np.nonzero(covered)
    cx, cy = g.west + (cols + 0.5) * g.resolution, g.north - (rows + 0.5) * g.resolution
    inside = np.zeros(len(cx), bool)
    lo, hi = np.inf, -np.inf
    from twin.tiles.bounds import obb_corners

    tiles = [t for t in ts.tiles() if t.address in set(r.tiles)]
    assert len(tiles) == len(r.tiles)
    for t in tiles:
        c, h = t.obb
        x, y, z = ecef_to_grid_crs(obb_corners(c[None], h[None]).reshape(-1, 3), crs)
        m = g.resolution  # a centre is at most half a cell from the geometry it samples
        inside |= (
            (cx >= x.min() - m) & (cx <= x.max() + m) & (cy >= y.min() - m) & (cy <= y.max() + m)
        )
        lo, hi = min(lo, z.min()), max(hi, z.max())
    assert inside.all()
    assert lo - 0.01 <= r.bottom[covered].min() and r.top[covered].max() <= hi + 0.01


def test_numba_kernel_matches_numpy_reference() -> None:
    """Random triangles of every size (many smaller than a cell, some vertical, some off the grid):
    the same max, min, count and feature id cell by cell."""
    rng = np.random.default_rng(3)
    n = 600
    centre = rng.uniform(-3, 43, (n, 2))
    size = np.exp(rng.uniform(np.log(0.05), np.log(12.0), n))
    corners = centre[:, None, :] + rng.normal(0, 1, (n, 3, 2)) * size[:, None, None]
    z = rng.uniform(0, 50, (n, 3))
    vertical = rng.random(n) < 0.1  # walls: all three corners on one line in plan
    corners[vertical, 2] = corners[vertical, 0] + 0.5 * (
        corners[vertical, 1] - corners[vertical, 0]
    )
    u, v = corners[..., 0].ravel(), corners[..., 1].ravel()
    faces = np.arange(3 * n, dtype=np.int64).reshape(n, 3)
    ids = rng.integers(1, 50, n).astype(np.int32)
    a, b = empty_rasters((40, 45)), empty_rasters((40, 45))
    wa = raster_triangles(u, v, z.ravel(), faces, ids, 2.0, *a)
    wb = raster_triangles_numpy(u, v, z.ravel(), faces, ids, 2.0, *b)
    assert wa == wb > 1000
    # heights are stored as float32: the same float64 height rounds alike (a step 4e-6 m at 50 m)
    np.testing.assert_allclose(a[0], b[0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(a[1], b[1], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(a[2], b[2])
    np.testing.assert_array_equal(a[3], b[3])
    for k in (4, 5):  # the near rasters too
        np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-5)
    np.testing.assert_array_equal(a[6], b[6])
    small = size < 0.3
    assert small.sum() > 50  # the small-triangle rule is exercised


def test_shared_edges_count_once() -> None:
    """A square of two triangles whose diagonal runs through cell centres: every centre counted
    once, a flat plane at its height."""
    u = np.array([0.5, 4.5, 4.5, 0.5])
    v = np.array([0.5, 0.5, 4.5, 4.5])
    z = np.array([1.0, 2.0, 3.0, 2.0])
    faces = np.array([[0, 1, 2], [0, 2, 3]], dtype=np.int64)
    rasters = empty_rasters((6, 6))
    raster_triangles(u, v, z, faces, np.array([1, 2], np.int32), 1.0, *rasters)
    top, count = rasters[0], rasters[2]
    inner = count[1:4, 1:4]
    assert (inner == 1).all()
    assert count.max() == 1  # the diagonal's centres belong to one triangle
    assert 9 + 6 <= count.sum() <= 9 + 6 + 4  # of the square's own sides, two opposite ones own
    rr, cc = np.nonzero(count)
    np.testing.assert_allclose(top[rr, cc], 1.0 + 0.25 * (cc - 0.0) + 0.25 * (rr - 0.0))


def test_one_cubic_over_the_tiles_or_none() -> None:
    """The cubic a rasterize fits once over its tiles' boxes maps points within 1 mm of pyproj
    anywhere in a 12 km box, refuses points out of it (the content is then mapped on its own), and
    is not made at all over a box a cubic cannot follow (600 km)."""
    from twin.geo import utm_to_ecef
    from twin.tiles.rasterize import CubicMap

    def box(size_m: float) -> np.ndarray:
        x, y = np.meshgrid([330000.0, 330000.0 + size_m], [5689000.0, 5689000.0 + size_m])
        x, y = np.repeat(x.ravel(), 2), np.repeat(y.ravel(), 2)
        return np.stack(utm_to_ecef(x, y, np.tile([0.0, 200.0], 4)), axis=1)

    fitted = CubicMap.fit(box(12000.0), "EPSG:25832")
    assert fitted is not None
    rng = np.random.default_rng(9)
    x, y = 330000 + rng.uniform(0, 12000, 5000), 5689000 + rng.uniform(0, 12000, 5000)
    xyz = np.stack(utm_to_ecef(x, y, rng.uniform(10, 190, 5000)), axis=1)
    mapped = fitted(xyz)
    assert mapped is not None
    np.testing.assert_allclose(np.stack(mapped, 1), np.stack(ecef_to_grid_crs(xyz, "EPSG:25832"), 1),
                               rtol=0, atol=1e-3)  # fmt: skip
    outside = np.stack(
        utm_to_ecef(np.array([343000.0]), np.array([5690000.0]), np.array([50.0])), 1
    )
    assert fitted(np.concatenate([xyz, outside])) is None
    assert CubicMap.fit(box(600_000.0), "EPSG:25832") is None


@pytest.mark.parametrize("size_m", [150.0, 1500.0, 12000.0])
def test_fitted_mapping_matches_pyproj(size_m: float) -> None:
    """The cubic a content's vertices are mapped through is within 1 mm of pyproj (tile sizes from a
    leaf to the Krefeld root), also in another CRS."""
    from twin.geo import utm_to_ecef
    from twin.tiles.rasterize import fast_ecef_to_grid_crs

    rng = np.random.default_rng(5)
    n = 20_000
    x, y = 330000 + rng.uniform(0, size_m, n), 5689000 + rng.uniform(0, size_m, n)
    heights = rng.uniform(20, 150, n)
    xyz = np.stack(utm_to_ecef(x, y, heights), axis=1)
    for crs in ("EPSG:25832", "EPSG:3035"):
        fast = np.stack(fast_ecef_to_grid_crs(xyz, crs), axis=1)
        exact = np.stack(ecef_to_grid_crs(xyz, crs), axis=1)
        assert np.abs(fast - exact).max() < 1e-3
    # in the pack CRS the points come back where they were made, heights in DHHN2016
    back = fast_ecef_to_grid_crs(xyz, "EPSG:25832")
    for got, want in zip(back, (x, y, heights), strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-3)
