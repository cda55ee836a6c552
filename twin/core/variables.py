"""Variables a model exchanges: name, units, meaning and the grid the values live on (EPSG:25832).

A model class declares its variables as :class:`VariableSpec` s (known before the model starts);
``initialize`` binds each spec to a concrete :class:`Grid`, giving the model's :class:`Variable` s.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from twin.core.errors import ModelError

__all__ = ["DEFAULT_CRS", "Grid", "GridKind", "Variable", "VariableSpec", "bind"]

DEFAULT_CRS = "EPSG:25832"
GridKind = Literal["scalar", "points", "raster"]
_KINDS = ("scalar", "points", "raster")

# Two grids built by different code paths may differ by rounding; one micrometre is far below any
# cell size or sensor position accuracy we work with.
_GRID_ATOL_M = 1e-6


@dataclass(frozen=True, eq=False)
class Grid:
    """Where a variable's values live: one scalar, a set of points, or a north-up raster.

    ``shape`` is the shape of the value array: ``()`` for a scalar, ``(n,)`` for ``n`` points,
    ``(rows, cols)`` for a raster. A raster has an affine ``transform`` in rasterio order
    ``(a, b, c, d, e, f)``: ``x = a*col + b*row + c``, ``y = d*col + e*row + f`` (cell corners);
    points carry their ``coordinates`` as an ``(n, 2)`` or ``(n, 3)`` array. Use the
    constructors :meth:`scalar`, :meth:`points` and :meth:`raster`.
    """

    kind: GridKind
    shape: tuple[int, ...] = ()
    transform: tuple[float, float, float, float, float, float] | None = None
    coordinates: np.ndarray | None = None
    crs: str = DEFAULT_CRS

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ModelError(f"grid kind: expected one of {_KINDS}, got {self.kind!r}")
        shape = tuple(int(n) for n in self.shape)
        object.__setattr__(self, "shape", shape)
        if self.kind == "scalar":
            if shape != () or self.transform is not None or self.coordinates is not None:
                raise ModelError("scalar grid: expected shape () and no transform or coordinates")
            return
        if not isinstance(self.crs, str) or not self.crs.strip():
            raise ModelError(f"{self.kind} grid crs: expected text such as 'EPSG:25832'")
        object.__setattr__(self, "crs", self.crs.strip().upper())
        if self.kind == "raster":
            self._check_raster(shape)
        else:
            self._check_points(shape)

    def _check_raster(self, shape: tuple[int, ...]) -> None:
        if len(shape) != 2 or min(shape) < 1:
            raise ModelError(f"raster grid shape: expected (rows, cols) >= 1, got {shape}")
        if self.coordinates is not None:
            raise ModelError("raster grid: coordinates are for point grids; give a transform")
        values = tuple(self.transform or ())
        if len(values) == 9:  # an affine.Affine also carries the constant last row (0, 0, 1)
            if tuple(float(v) for v in values[6:]) != (0.0, 0.0, 1.0):
                raise ModelError(f"raster grid transform: last row must be (0, 0, 1): {values}")
            values = values[:6]
        floats = tuple(float(v) for v in values)
        if len(floats) != 6 or not all(math.isfinite(v) for v in floats):
            raise ModelError(
                "raster grid transform: expected 6 finite numbers (a, b, c, d, e, f), "
                f"got {self.transform!r}"
            )
        a, b, _, d, e, _ = floats
        if a * e - b * d == 0.0:
            raise ModelError(f"raster grid transform: degenerate (zero cell area): {floats}")
        object.__setattr__(self, "transform", floats)

    def _check_points(self, shape: tuple[int, ...]) -> None:
        if self.transform is not None:
            raise ModelError("point grid: a transform is for rasters; give coordinates")
        coords = np.array(self.coordinates, dtype=float, copy=True)
        if coords.ndim != 2 or coords.shape[1] not in (2, 3) or coords.shape[0] < 1:
            raise ModelError(
                f"point grid coordinates: expected an (n, 2) or (n, 3) array, got {coords.shape}"
            )
        if not np.all(np.isfinite(coords)):
            raise ModelError("point grid coordinates: expected finite numbers")
        if shape not in ((), (coords.shape[0],)):
            raise ModelError(
                f"point grid shape: expected ({coords.shape[0]},) for "
                f"{coords.shape[0]} points, got {shape}"
            )
        coords.flags.writeable = False
        object.__setattr__(self, "coordinates", coords)
        object.__setattr__(self, "shape", (coords.shape[0],))

    @classmethod
    def scalar(cls) -> Grid:
        """A single value without location (a total, a parameter, a basin mean)."""
        return cls("scalar")

    @classmethod
    def points(
        cls, coordinates: Sequence[Sequence[float]] | np.ndarray, crs: str = DEFAULT_CRS
    ) -> Grid:
        """Values at ``n`` points given as an ``(n, 2)`` or ``(n, 3)`` array of x, y[, z]."""
        return cls("points", coordinates=np.asarray(coordinates, dtype=float), crs=crs)

    @classmethod
    def raster(
        cls, shape: tuple[int, int], transform: Sequence[float], crs: str = DEFAULT_CRS
    ) -> Grid:
        """A ``(rows, cols)`` raster with a rasterio-style affine ``transform`` (or Affine)."""
        return cls("raster", shape=tuple(shape), transform=tuple(transform), crs=crs)

    @property
    def size(self) -> int:
        """Number of values on the grid (1 for a scalar)."""
        return math.prod(self.shape)

    def mismatch(self, other: Grid) -> str | None:
        """Say how ``other`` differs from this grid, or None when values can pass unchanged.

        Positions and transforms are compared to one micrometre; the CRS text must be equal.
        """
        if self.kind != other.kind:
            return f"grid kinds differ ({self.kind} vs {other.kind})"
        if self.shape != other.shape:
            return f"grid shapes differ ({self.shape} vs {other.shape})"
        if self.kind == "scalar":
            return None
        if self.crs != other.crs:
            return f"grid CRS differ ({self.crs} vs {other.crs})"
        if self.kind == "raster":
            if not np.allclose(self.transform, other.transform, rtol=0.0, atol=_GRID_ATOL_M):
                return f"raster transforms differ ({self.transform} vs {other.transform})"
            return None
        assert self.coordinates is not None and other.coordinates is not None
        if self.coordinates.shape != other.coordinates.shape or not np.allclose(
            self.coordinates, other.coordinates, rtol=0.0, atol=_GRID_ATOL_M
        ):
            return "point coordinates differ"
        return None

    def describe(self) -> str:
        """A short human description, used in error messages."""
        if self.kind == "scalar":
            return "scalar"
        if self.kind == "points":
            return f"{self.shape[0]} points ({self.crs})"
        assert self.transform is not None
        a, _, c, _, e, f = self.transform
        return (
            f"raster {self.shape[0]}x{self.shape[1]} of {abs(a):g} x {abs(e):g} m "
            f"at ({c:.3f}, {f:.3f}) ({self.crs})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Grid):
            return NotImplemented
        if (self.kind, self.shape, self.transform, self.crs) != (
            other.kind,
            other.shape,
            other.transform,
            other.crs,
        ):
            return False
        if self.coordinates is None or other.coordinates is None:
            return self.coordinates is other.coordinates
        return bool(np.array_equal(self.coordinates, other.coordinates))

    def __hash__(self) -> int:
        coords = None if self.coordinates is None else self.coordinates.tobytes()
        return hash((self.kind, self.shape, self.transform, self.crs, coords))

    def __repr__(self) -> str:
        return f"Grid({self.describe()})"


_SCALAR = Grid.scalar()


@dataclass(frozen=True)
class Variable:
    """A named quantity a model reads or writes, with its units and grid.

    ``units`` follow UDUNITS-style text with SI units (``"m3 s-1"``, ``"K"``, ``"W m-2"``,
    ``"1"`` for dimensionless); the coupler compares them as text, after collapsing blanks.
    ``standard_name`` says what the quantity is, in the spirit of the CSDMS standard names
    (``"groundwater__hydraulic_head"``, ``"observation__quality_flag"``): two variables may share
    a unit but not a meaning (a quality flag is not a weight), so the coupler links only variables
    whose standard names agree.
    """

    name: str
    units: str
    grid: Grid = _SCALAR
    standard_name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ModelError(f"variable name: expected non-empty text, got {self.name!r}")
        if not isinstance(self.units, str) or not self.units.strip():
            raise ModelError(
                f"variable {self.name!r} units: expected text such as 'm3 s-1' or '1', "
                f"got {self.units!r}"
            )
        if not isinstance(self.grid, Grid):
            raise ModelError(f"variable {self.name!r} grid: expected a Grid, got {self.grid!r}")
        object.__setattr__(self, "units", " ".join(self.units.split()))
        if not isinstance(self.standard_name, str):
            raise ModelError(
                f"variable {self.name!r} standard_name: expected text such as "
                f"'groundwater__hydraulic_head', got {self.standard_name!r}"
            )

    def __str__(self) -> str:
        return f"{self.name} [{self.units}] on {self.grid.describe()}"


# CSDMS-style standard names: an object and a quantity joined by a double underscore, in lower case
# (``groundwater__hydraulic_head``, ``land_surface__depth_to_water_table``).
_STANDARD_NAME = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*__[a-z][a-z0-9]*(_[a-z0-9]+)*")


@dataclass(frozen=True)
class VariableSpec:
    """A variable as a model class declares it, before any grid exists.

    ``grid`` is the grid kind (``"scalar"``, ``"points"`` or ``"raster"``); the concrete grid
    (shape, transform, coordinates) comes from the model's configuration and is attached by
    :meth:`bind`. ``standard_name`` is required here: it is what the coupler compares to decide
    whether two variables mean the same thing. ``optional`` marks a variable that only some
    configurations provide (e.g. a heat raster only when a grid is configured).
    """

    name: str
    units: str
    standard_name: str
    grid: GridKind = "scalar"
    description: str = ""
    optional: bool = False

    def __post_init__(self) -> None:
        Variable(self.name, self.units)  # same rules for the name and the units
        object.__setattr__(self, "units", " ".join(self.units.split()))
        if not isinstance(self.standard_name, str) or not _STANDARD_NAME.fullmatch(
            self.standard_name
        ):
            raise ModelError(
                f"variable {self.name!r} standard_name: expected a CSDMS-style name "
                f"'object__quantity' in lower case, got {self.standard_name!r}"
            )
        if self.grid not in _KINDS:
            raise ModelError(
                f"variable {self.name!r} grid: expected one of {_KINDS}, got {self.grid!r}"
            )
        if not isinstance(self.description, str):
            raise ModelError(f"variable {self.name!r} description: expected text")

    def bind(self, grid: Grid | None = None) -> Variable:
        """The concrete :class:`Variable` on ``grid`` (a scalar needs none); kinds must agree."""
        if grid is None:
            if self.grid != "scalar":
                raise ModelError(
                    f"variable {self.name!r} lives on a {self.grid} grid: give that grid to bind"
                )
            grid = _SCALAR
        if not isinstance(grid, Grid) or grid.kind != self.grid:
            got = grid.kind if isinstance(grid, Grid) else type(grid).__name__
            raise ModelError(
                f"variable {self.name!r}: declared on a {self.grid} grid, bound to {got}"
            )
        return Variable(self.name, self.units, grid, self.standard_name)

    def mismatch(self, variable: Variable) -> str | None:
        """Say how a bound ``variable`` differs from this declaration, or None when it agrees."""
        problems = []
        if variable.units != self.units:
            problems.append(f"units {variable.units!r}, declared {self.units!r}")
        if variable.standard_name != self.standard_name:
            problems.append(
                f"standard name {variable.standard_name!r}, declared {self.standard_name!r}"
            )
        if variable.grid.kind != self.grid:
            problems.append(f"a {variable.grid.kind} grid, declared {self.grid}")
        return "; ".join(problems) or None


def bind(
    specs: Sequence[VariableSpec], grids: Mapping[str, Grid | None] | None = None
) -> tuple[Variable, ...]:
    """Bind declared ``specs`` to the grids of one configuration, in declaration order.

    ``grids`` maps names to their grids; scalars need no entry. An optional spec mapped to None,
    or one that needs a grid and has none, is left out; a required one without its grid is an
    error, and so is a name in ``grids`` that no spec declares.
    """
    grids = dict(grids or {})
    declared = {spec.name for spec in specs}
    unknown = sorted(set(grids) - declared)
    if unknown:
        raise ModelError(
            f"bind: {', '.join(map(repr, unknown))} not declared; declared are: "
            f"{', '.join(sorted(declared)) or 'none'}"
        )
    bound = []
    for spec in specs:
        grid = grids.get(spec.name)
        if grid is None and (spec.name in grids or spec.grid != "scalar") and spec.optional:
            continue
        if grid is None and spec.name in grids:
            raise ModelError(f"bind: variable {spec.name!r} is required; give its grid")
        bound.append(spec.bind(grid))
    return tuple(bound)
