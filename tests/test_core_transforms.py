"""The coupler's domain-free link transforms: by point id, and rasters onto another grid."""

from __future__ import annotations

import numpy as np
import pytest

from twin.core import CouplingError, Grid
from twin.core.transforms import by_id, regrid


def test_by_id_matches_points_and_fills_the_missing():
    f = by_id(["a", "b", "c"], ["c", "x", "a"], np.nan)
    out = f(np.array([1.0, 2.0, 3.0]))
    assert out[0] == 3.0 and np.isnan(out[1]) and out[2] == 1.0


def test_regrid_reproduces_a_linear_field_and_is_nan_outside():
    """A plane on 100 m cells, moved onto 10 m cells over a window that reaches beyond it: exact
    (bilinear is exact for a plane) between the source's cell centres, NaN beyond its edge."""
    src = Grid.raster((20, 30), (100.0, 0.0, 0.0, 0.0, -100.0, 2000.0))  # x 0..3000, y 0..2000
    xs = (np.arange(30) + 0.5) * 100.0
    ys = 2000.0 - (np.arange(20) + 0.5) * 100.0
    plane = 0.002 * xs[None, :] - 0.001 * ys[:, None] + 30.0
    dst = Grid.raster((60, 50), (10.0, 0.0, 2700.0, 0.0, -10.0, 1500.0))  # x 2700..3200
    out = regrid(src, dst)(plane)
    x = 2700.0 + (np.arange(50) + 0.5) * 10.0
    y = 1500.0 - (np.arange(60) + 0.5) * 10.0
    expect = 0.002 * x[None, :] - 0.001 * y[:, None] + 30.0
    inner = x <= 2950.0  # up to the last source cell centre
    np.testing.assert_allclose(out[:, inner], np.broadcast_to(expect, out.shape)[:, inner],
                               atol=1e-9)  # fmt: skip
    assert np.isnan(out[:, x > 3000.0]).all()
    assert np.isfinite(out[:, x < 3000.0]).all()


def test_regrid_refuses_points():
    with pytest.raises(CouplingError, match="rasters"):
        regrid(Grid.points(np.zeros((2, 2))), Grid.raster((2, 2), (1, 0, 0, 0, -1, 2)))
