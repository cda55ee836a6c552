"""The model grid: square cells in EPSG:25832, origin at the lower-left corner, row 0 in the south.

Arrays of the ground-water model are ``(ny, nx)`` with row 0 the southern row and column 0 the
western column (y grows with the row index). GeoTIFFs and ``twin.core`` rasters are north-up, so
:meth:`Grid.north_up` flips rows on the way out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from twin.errors import TwinError

CRS = "EPSG:25832"


class GroundwaterError(TwinError):
    """Bad input to the ground-water model (shapes, values, positions) or a failed solve."""


@dataclass(frozen=True)
class Grid:
    """A regular grid of ``ny`` x ``nx`` square cells of ``cell`` metres; ``origin`` = (x0, y0).

    ``origin`` is the lower-left (south-west) corner in EPSG:25832 metres; cell ``(i, j)`` spans
    ``x0 + j*cell .. x0 + (j+1)*cell`` and ``y0 + i*cell .. y0 + (i+1)*cell``.
    """

    nx: int
    ny: int
    cell: float
    origin: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        for name in ("nx", "ny"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise GroundwaterError(f"Grid {name}: expected an integer >= 1, got {value!r}")
            object.__setattr__(self, name, int(value))
        cell = float(self.cell)
        if not math.isfinite(cell) or cell <= 0:
            raise GroundwaterError(f"Grid cell: expected a size in metres > 0, got {self.cell!r}")
        object.__setattr__(self, "cell", cell)
        try:
            x0, y0 = (float(v) for v in self.origin)
        except (TypeError, ValueError):
            raise GroundwaterError(
                f"Grid origin: expected (x0, y0) in metres, got {self.origin!r}"
            ) from None
        if not (math.isfinite(x0) and math.isfinite(y0)):
            raise GroundwaterError(f"Grid origin: expected finite numbers, got {self.origin!r}")
        object.__setattr__(self, "origin", (x0, y0))

    @property
    def shape(self) -> tuple[int, int]:
        """``(ny, nx)``: the shape of every cell array (row 0 = south)."""
        return (self.ny, self.nx)

    @property
    def size(self) -> int:
        """Number of cells."""
        return self.nx * self.ny

    @property
    def area(self) -> float:
        """Area of one cell in square metres."""
        return self.cell * self.cell

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)`` in metres."""
        x0, y0 = self.origin
        return (x0, y0, x0 + self.nx * self.cell, y0 + self.ny * self.cell)

    @property
    def xc(self) -> np.ndarray:
        """x of each column's centre, west to east, shape ``(nx,)``."""
        return self.origin[0] + (np.arange(self.nx) + 0.5) * self.cell

    @property
    def yc(self) -> np.ndarray:
        """y of each row's centre, south to north, shape ``(ny,)``."""
        return self.origin[1] + (np.arange(self.ny) + 0.5) * self.cell

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """x and y of every cell centre as two ``(ny, nx)`` arrays."""
        return np.meshgrid(self.xc, self.yc)

    def cell_of(
        self, x: float | np.ndarray, y: float | np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Row and column of the cells holding points ``(x, y)``; points outside raise."""
        xs = np.atleast_1d(np.asarray(x, dtype=float))
        ys = np.atleast_1d(np.asarray(y, dtype=float))
        j = np.floor((xs - self.origin[0]) / self.cell).astype(np.int64)
        i = np.floor((ys - self.origin[1]) / self.cell).astype(np.int64)
        outside = (i < 0) | (i >= self.ny) | (j < 0) | (j >= self.nx) | ~np.isfinite(xs + ys)
        if outside.any():
            k = int(np.flatnonzero(outside)[0])
            raise GroundwaterError(
                f"point ({xs[k]:.1f}, {ys[k]:.1f}) is outside the model grid "
                f"{tuple(round(v, 1) for v in self.extent)} (xmin, ymin, xmax, ymax)"
            )
        return i, j

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Boolean mask: which points lie inside the grid."""
        xmin, ymin, xmax, ymax = self.extent
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        return (x >= xmin) & (x < xmax) & (y >= ymin) & (y < ymax)

    def transform(self) -> tuple[float, float, float, float, float, float]:
        """The north-up rasterio affine ``(a, b, c, d, e, f)`` of :meth:`north_up` arrays."""
        xmin, _, _, ymax = self.extent
        return (self.cell, 0.0, xmin, 0.0, -self.cell, ymax)

    def north_up(self, array: np.ndarray) -> np.ndarray:
        """Rows flipped so that row 0 is the northern row (GeoTIFF and twin.core order)."""
        return np.ascontiguousarray(np.asarray(array)[::-1])

    def from_north_up(self, array: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`north_up`: a north-up raster to this grid's south-first rows."""
        return np.ascontiguousarray(np.asarray(array)[::-1])

    def field(self, value: float | np.ndarray, name: str) -> np.ndarray:
        """``value`` (a scalar or an ``(ny, nx)`` array) as a float64 cell array; NaN refused."""
        arr = np.asarray(value, dtype=float)
        if arr.ndim == 0:
            arr = np.full(self.shape, float(arr))
        elif arr.shape != self.shape:
            raise GroundwaterError(
                f"{name}: expected a number or an array of shape (ny, nx) = {self.shape}, "
                f"got shape {arr.shape}"
            )
        else:
            arr = np.array(arr, dtype=np.float64, copy=True)
        if not np.all(np.isfinite(arr)):
            raise GroundwaterError(f"{name}: expected finite numbers (found NaN or infinity)")
        return np.ascontiguousarray(arr)

    @staticmethod
    def covering_shape(extent: tuple[float, float, float, float], cell: float) -> tuple[int, int]:
        """``(ny, nx)`` of the grid :meth:`covering` would make, without making it (no arrays)."""
        xmin, ymin, xmax, ymax = (float(v) for v in extent)
        if not all(math.isfinite(v) for v in (xmin, ymin, xmax, ymax)):
            raise GroundwaterError(f"extent: expected finite numbers, got {extent}")
        if xmax <= xmin or ymax <= ymin:
            raise GroundwaterError(f"extent: expected xmin < xmax and ymin < ymax, got {extent}")
        cell = float(cell)
        if not math.isfinite(cell) or cell <= 0:
            raise GroundwaterError(f"Grid cell: expected a size in metres > 0, got {cell!r}")
        cols, rows = (xmax - xmin) / cell, (ymax - ymin) / cell
        if not (math.isfinite(cols) and math.isfinite(rows)):
            raise GroundwaterError(f"Grid cell: {cell!r} m makes more cells than can be counted")
        return max(1, math.ceil(rows - 1e-9)), max(1, math.ceil(cols - 1e-9))

    @classmethod
    def covering(cls, extent: tuple[float, float, float, float], cell: float) -> Grid:
        """The grid of ``cell``-metre cells that covers ``extent`` (xmin, ymin, xmax, ymax)."""
        ny, nx = cls.covering_shape(extent, cell)
        return cls(nx=nx, ny=ny, cell=cell, origin=(float(extent[0]), float(extent[1])))
