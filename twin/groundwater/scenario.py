"""Ground-water scenarios: the TOML schema, its validation, and the model it describes.

A scenario names the data pack (terrain, sealed surfaces, logger wells come from its build
products), the grid, the aquifer, recharge, the Rhine (RIV), the waterworks' wells (WEL), the
edges (CHD or no-flow), the readings to assimilate and the outputs. ``simulations/groundwater-*.toml``
are the shipped examples; every key is documented there.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from twin.config import Field, fraction, load_toml, non_negative, numbers, positive, validate
from twin.core.clock import Clock, parse_end, parse_utc, utc_check
from twin.errors import ConfigError, DataError, TwinError
from twin.groundwater.grid import Grid, GroundwaterError
from twin.groundwater.model import Model
from twin.progress import Progress, as_progress

SECONDS_PER_YEAR = 365.25 * 86400.0
SECONDS_PER_DAY = 86400.0

# What a run may take, checked by build_setup before any array is made (so `check` refuses what
# `run` could not hold, and a run never dies of MemoryError half-way). Sizes measured on runs of
# the test pack (tracemalloc): the model, its multigrid hierarchy and the synthetic truth peak
# at about 600 B per cell; a run keeps both head fields (assimilated and free, 8 B a cell each)
# of every step for the hydrographs and stacks them once more to write them: 32 B per cell and
# step. 2 GiB leaves room for the rest on an 8 GB laptop or a 7 GB CI runner.
MAX_CELLS = 2_000_000  # ~1.2 GB of model arrays; a 1000 x 1000 grid already needs seconds a step
MAX_RUN_BYTES = 2 * 1024**3
BYTES_PER_CELL = 600
BYTES_PER_CELL_STEP = 32
# Lower Rhine: most recharge falls in winter, little in summer (long-term shape, mean 1).
DEFAULT_MONTHLY = [1.7, 1.6, 1.3, 0.9, 0.6, 0.5, 0.5, 0.5, 0.6, 0.9, 1.4, 1.5]


def _polyline(value: Any) -> str | None:
    what = "an array of at least two [x, y] points in EPSG:25832 metres"
    if not isinstance(value, list) or len(value) < 2:
        return what
    if not all(numbers(2)(p) is None for p in value):
        return what
    return None


def _edge(value: Any) -> str | None:
    if value == "no-flow":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return None
    return "'no-flow' or a fixed head in m a.s.l. (a number)"


def _bottom_or_terrain(value: Any) -> str | None:
    if value == "terrain" or (isinstance(value, int | float) and not isinstance(value, bool)):
        return None
    return "'terrain' or a height in m a.s.l."


_STAGE = {
    "time": Field(str, check=utc_check, doc="ISO 8601 UTC"),
    "stage": Field(float, doc="water level in m a.s.l."),
}
_WELL = {
    "name": Field(str),
    "x": Field(float),
    "y": Field(float),
    "rate_m3_per_day": Field(float, doc="negative = pumping"),
}

SCHEMA: dict[str, Field] = {
    "scenario": Field(
        schema={
            "name": Field(str),
            "title": Field(str, required=False, default=""),
            "pack": Field(str, doc="the data pack's pack.toml, relative to this file"),
            "build_dir": Field(str, required=False, default="../build"),
            "start": Field(str, check=utc_check),
            "end": Field(str, check=utc_check),
            "time_step_hours": Field(float, required=False, default=24.0, check=positive),
            "steady_first": Field(bool, required=False, default=True),
        }
    ),
    "grid": Field(
        schema={
            "cell": Field(float, check=positive, doc="cell size in m"),
            "extent": Field(list, required=False, check=numbers(4)),
        }
    ),
    "aquifer": Field(
        schema={
            "confined": Field(bool, required=False, default=False),
            "k": Field(float, check=positive, doc="hydraulic conductivity (geometric mean), m/s"),
            "k_log10_sd": Field(float, required=False, default=0.0, check=non_negative),
            "k_correlation_m": Field(float, required=False, default=800.0, check=positive),
            "seed": Field(int, required=False, default=1),
            "bottom": Field(float, doc="aquifer base, m a.s.l."),
            "top": Field((str, float), required=False, default="terrain", check=_bottom_or_terrain),
            "sy": Field(float, check=fraction),
            "ss": Field(float, required=False, default=1e-5, check=non_negative),
            "min_saturation": Field(float, required=False, default=1e-3, check=positive),
            "k_raster": Field(str, required=False, doc="GeoTIFF of K (m/s); replaces k"),
            "sy_raster": Field(str, required=False, doc="GeoTIFF of Sy; replaces sy"),
            "bottom_raster": Field(str, required=False, doc="GeoTIFF of the base; replaces bottom"),
        }
    ),
    "recharge": Field(
        schema={
            "precipitation_mm_per_year": Field(float, check=non_negative),
            "open_fraction": Field(float, check=fraction, doc="share of rain recharging open soil"),
            "sealed_fraction": Field(float, required=False, default=0.05, check=fraction),
            "monthly_factors": Field(
                list, required=False, default=DEFAULT_MONTHLY, check=numbers(12)
            ),
            "scale": Field(float, required=False, default=1.0, check=non_negative),
            "steady_scale": Field(float, required=False, default=1.0, check=non_negative),
        }
    ),
    "river": Field(
        required=False,
        schema={
            "name": Field(str, required=False, default="Rhine"),
            "line": Field(list, check=_polyline),
            "width_m": Field(float, check=positive),
            "bed_leakance_per_day": Field(float, check=positive, doc="K_bed / bed thickness, 1/d"),
            "bottom": Field(float, doc="river bed, m a.s.l."),
            "stage": Field(items=_STAGE),
            "steady_stage": Field(float, required=False, doc="stage of the initial steady state"),
        },
    ),
    "seepage": Field(
        required=False,
        default={},
        schema={
            "enabled": Field(bool, required=False, default=True),
            "leakance_per_day": Field(float, required=False, default=1.0, check=positive),
        },
        doc="drains (DRN) at the ground surface where the aquifer top is the terrain",
    ),
    "edges": Field(
        required=False,
        default={},
        schema={
            side: Field(required=False, default="no-flow", check=_edge)
            for side in ("west", "east", "south", "north")
        },
    ),
    "pumping": Field(
        required=False,
        default={},
        schema={
            "table": Field(str, required=False, doc="CSV: name,x,y,rate_m3_per_day"),
            "wells": Field(items=_WELL, required=False, default=[]),
            "scale": Field(float, required=False, default=1.0, check=non_negative),
            "steady_scale": Field(float, required=False, default=1.0, check=non_negative),
        },
    ),
    "readings": Field(
        required=False,
        default={},
        schema={
            "source": Field(
                str, required=False, default="none", choices=("none", "synthetic", "jsonl", "store")
            ),
            "path": Field(str, required=False, doc="jsonl: an uplink file; store: a sensor store"),
            "simulated": Field(
                bool,
                required=False,
                default=None,
                doc="jsonl: true for a simulated stream, false for recorded uplinks (unset: not stated)",
            ),
            "step_minutes": Field(
                float, required=False, check=positive, doc="how often the sensor feed is read"
            ),
            "max_age_hours": Field(float, required=False, default=3.0, check=positive),
            "gap_hours": Field(float, required=False, default=1.0, check=positive),
            "noise_m": Field(float, required=False, default=0.02, check=non_negative),
            "wells": Field(int, required=False, default=0, check=non_negative),
            "withhold_fraction": Field(float, required=False, default=0.1, check=fraction),
            "suspect_fraction": Field(float, required=False, default=0.05, check=fraction),
            "bad_fraction": Field(float, required=False, default=0.01, check=fraction),
            "truth_recharge_factor": Field(float, required=False, default=1.3, check=positive),
            "truth_k_seed": Field(int, required=False, default=101),
            "truth_stage_offset_m": Field(float, required=False, default=0.0),
            "seed": Field(int, required=False, default=7),
        },
    ),
    "assimilation": Field(
        required=False,
        default={},
        schema={
            "enabled": Field(bool, required=False, default=True),
            "sigma_background_m": Field(float, required=False, default=0.3, check=positive),
            "length_m": Field(float, required=False, default=1000.0, check=positive),
            "sigma_observation_m": Field(float, required=False, default=0.03, check=positive),
            "kernel": Field(
                str, required=False, default="exponential", choices=("exponential", "gaussian")
            ),
        },
    ),
    "output": Field(
        required=False,
        default={},
        schema={
            "hydrograph_wells": Field(list, required=False, default=[]),
            "hydrographs": Field(int, required=False, default=4, check=non_negative),
        },
    ),
}


@dataclass
class Scenario:
    """A validated scenario file: its settings with defaults filled in, and where it lives."""

    path: Path
    config: dict[str, Any]

    @property
    def name(self) -> str:
        """The scenario's name (folder name of its runs)."""
        return self.config["scenario"]["name"]

    def resolve(self, relative: str) -> Path:
        """A path given in the file, relative to the file's folder."""
        p = Path(relative).expanduser()
        return p if p.is_absolute() else self.path.parent / p

    def clock(self, end: str | None = None) -> Clock:
        """The run's clock from ``start`` to ``end``, or to the ``end`` override: a duration from
        the start (``HH:MM``, ``90s``, ``30m``, ``6h``, ``2d``) or an ISO 8601 UTC time."""
        s = self.config["scenario"]
        try:
            stop = parse_end(end, s["start"]) if end else s["end"]
            return Clock(s["start"], stop)
        except TwinError as exc:
            raise ConfigError(f"{self.path}: 'scenario.start'/'end': {exc}") from None

    def with_readings(self, path: str | Path) -> Scenario:
        """This scenario with its readings replaced by the uplink file ``path`` (``--readings``)."""
        config = {
            **self.config,
            "readings": {
                **self.config["readings"],
                "source": "jsonl",
                "path": str(Path(path).resolve()),
                "simulated": None,  # a file given on the command line: its origin is not stated
            },
        }
        return Scenario(self.path, config)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a ground-water scenario; a bad file raises one clear ConfigError."""
    path = Path(path)
    data = load_toml(path)
    for section in ("seepage", "edges", "pumping", "readings", "assimilation", "output"):
        if not isinstance(data.get(section, {}), dict):
            raise ConfigError(f"{path}: '{section}' must be a table")
        data.setdefault(section, {})  # so that its defaults are filled in too
    cfg = validate(data, SCHEMA, file=path)
    sc = cfg["scenario"]
    if parse_utc(sc["end"]) <= parse_utc(sc["start"]):
        raise ConfigError(f"{path}: 'scenario.end' must come after 'scenario.start'")
    river = cfg.get("river")
    if river is not None:
        if not river["stage"]:
            raise ConfigError(f"{path}: 'river.stage' needs at least one {{time, stage}} entry")
        times = [parse_utc(e["time"]) for e in river["stage"]]
        if any(b <= a for a, b in zip(times, times[1:], strict=False)):
            raise ConfigError(f"{path}: 'river.stage' times must increase")
        if any(e["stage"] <= river["bottom"] for e in river["stage"]):
            raise ConfigError(f"{path}: 'river.stage' values must lie above 'river.bottom'")
    aq = cfg["aquifer"]
    if isinstance(aq["top"], int | float) and aq["top"] <= aq["bottom"]:
        raise ConfigError(f"{path}: 'aquifer.top' must lie above 'aquifer.bottom'")
    rd = cfg["readings"]
    if rd["source"] in ("jsonl", "store") and not rd.get("path"):
        raise ConfigError(
            f"{path}: 'readings.path' is needed when 'readings.source' is {rd['source']!r}"
        )
    ext = cfg["grid"].get("extent")
    if ext is not None and (ext[2] <= ext[0] or ext[3] <= ext[1]):
        raise ConfigError(f"{path}: 'grid.extent' must be [xmin, ymin, xmax, ymax] with max > min")
    return Scenario(path=path, config=cfg)


# -- the model a scenario describes -----------------------------------------------------------


@dataclass
class Setup:
    """A scenario turned into arrays: the model, terrain, wells and the stress time series."""

    scenario: Scenario
    grid: Grid
    model: Model
    terrain: np.ndarray
    sealed: np.ndarray
    wells: dict[str, np.ndarray]
    pumping: list[tuple[str, float, float, float]]  # name, x, y, unscaled rate (m3/s)
    base_recharge: np.ndarray
    clock: Clock
    stage_times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    stage_values: np.ndarray = field(default_factory=lambda: np.zeros(0))
    river_name: str | None = None
    steps: int = 0  # implicit steps from start to end (see step_count)
    memory_bytes: float = 0.0  # the run's estimated peak (see run_bytes)
    hydrographs: list[tuple[str, float, float]] = field(default_factory=list)  # name, x, y
    pack: Any = None  # the data pack (twin.city.pack.DataPack): its sensor layers for a replay

    def recharge_at(self, t: float, factor: float = 1.0) -> np.ndarray:
        """Recharge (m/s) at model time ``t``: base field x monthly factor x scale x ``factor``."""
        rc = self.scenario.config["recharge"]
        month = self.clock.to_datetime(t).month
        return self.base_recharge * (rc["monthly_factors"][month - 1] * rc["scale"] * factor)

    def mean_recharge(self, factor: float = 1.0) -> np.ndarray:
        """The initial steady state's recharge: monthly factors averaged x ``steady_scale``."""
        rc = self.scenario.config["recharge"]
        return self.base_recharge * (np.mean(rc["monthly_factors"]) * rc["steady_scale"] * factor)

    def stage_at(self, t: float) -> float | None:
        """The river stage (m) at model time ``t``, linear between the given points."""
        if self.river_name is None:
            return None
        return float(np.interp(t, self.stage_times, self.stage_values))

    def apply(self, model: Model, t: float, *, recharge_factor: float = 1.0,
              stage_offset: float = 0.0, steady: bool = False) -> None:  # fmt: skip
        """Set ``model``'s stresses for the step ending at ``t`` (or the initial steady state)."""
        model.set_recharge(
            self.mean_recharge(recharge_factor) if steady else self.recharge_at(t, recharge_factor)
        )
        pumping = self.scenario.config["pumping"]
        scale = pumping["steady_scale"] if steady else pumping["scale"]
        for name, _, _, rate in self.pumping:
            model.set_well_rate(name, rate * scale)
        if self.river_name is not None:
            stage = self.stage_at(t)
            if steady:
                river = self.scenario.config["river"]
                stage = river.get("steady_stage") or float(np.mean(self.stage_values))
            model.set_river_stage(stage + stage_offset, self.river_name)


def _read_pumping_table(scenario: Scenario) -> list[dict[str, Any]]:
    """The wells of ``pumping.table`` (CSV: name,x,y,rate_m3_per_day), each with its line."""
    path = scenario.resolve(scenario.config["pumping"]["table"])
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise ConfigError(f"{scenario.path}: 'pumping.table': file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{scenario.path}: 'pumping.table': cannot read {path}: {exc}") from None
    out = []
    for n, row in enumerate(rows, start=2):
        try:
            well = {
                "name": row["name"].strip(),
                "x": float(row["x"]),
                "y": float(row["y"]),
                "rate_m3_per_day": float(row["rate_m3_per_day"]),
                "where": f"'pumping.table' ({path.name} line {n})",
            }  # fmt: skip
        except (KeyError, TypeError, ValueError, AttributeError):
            well = None
        if well is None or not all(math.isfinite(well[k]) for k in ("x", "y", "rate_m3_per_day")):
            raise DataError(
                f"{path}: line {n}: expected columns name, x, y, rate_m3_per_day with finite numbers"
            )
        out.append(well)
    return out


def lognormal_field(
    grid: Grid, mean: float, log10_sd: float, length: float, seed: int
) -> np.ndarray:
    """A correlated log-normal field: white noise smoothed by a Gaussian of ``length`` metres."""
    if log10_sd == 0.0:
        return np.full(grid.shape, mean)
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    noise = gaussian_filter(rng.standard_normal(grid.shape), length / grid.cell, mode="reflect")
    noise -= noise.mean()
    sd = noise.std()
    if sd > 0:
        noise /= sd
    return mean * 10.0 ** (log10_sd * noise)


def river_cells(grid: Grid, line: list[list[float]], width: float) -> tuple[np.ndarray, np.ndarray]:
    """Cells whose centre lies within ``width / 2`` of the polyline, and the river area in each.

    The river area of a cell is approximated as the cell's share of the band (min(width, cell) x
    cell for a cell on the centre line); at least the cells the line crosses are taken.
    """
    xs, ys = grid.centres()
    pts = np.asarray(line, dtype=float)
    dist = np.full(grid.shape, np.inf)
    for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:], strict=True):
        dx, dy = x1 - x0, y1 - y0
        seg = dx * dx + dy * dy
        t = np.clip(((xs - x0) * dx + (ys - y0) * dy) / seg if seg > 0 else 0.0, 0.0, 1.0)
        dist = np.minimum(dist, np.hypot(xs - (x0 + t * dx), ys - (y0 + t * dy)))
    half = max(width / 2.0, grid.cell / 2.0)
    mask = dist <= half
    # river area per cell: the band's total area spread over the cells of the band
    length = float(sum(np.hypot(*(b - a)) for a, b in zip(pts[:-1], pts[1:], strict=True)))
    area = np.zeros(grid.shape)
    if mask.any():
        area[mask] = min(width * length, mask.sum() * grid.area) / mask.sum()
    return mask, area


def _resample(path: Path, grid: Grid, what: str) -> np.ndarray:
    """Average a product raster onto the model grid (row 0 south); cells without data are NaN."""
    import rasterio
    from rasterio.warp import Resampling

    from twin.city.raster import resample_to

    out = resample_to(path, rasterio.Affine(*grid.transform()), grid.shape, "EPSG:25832",
                      Resampling.average, what)  # fmt: skip
    return grid.from_north_up(out)


def _raster_or(
    scenario: Scenario, raster: str | None, grid: Grid, default: float, what: str
) -> np.ndarray:
    """A parameter field: a GeoTIFF averaged onto the grid (gaps take ``default``) or constant."""
    if not raster:
        return np.full(grid.shape, float(default))
    values = _resample(scenario.resolve(raster), grid, what)
    if not np.isfinite(values).any():
        raise DataError(f"{scenario.resolve(raster)}: the {what} raster does not cover the grid")
    return np.where(np.isfinite(values), values, default)


def step_count(duration_s: float, step_s: float) -> float:
    """Implicit steps a run makes over ``duration_s`` (at least one; a float, it may be huge)."""
    steps = duration_s / step_s
    return max(1.0, float(math.ceil(steps - 1e-9))) if math.isfinite(steps) else math.inf


def run_bytes(cells: int, steps: float) -> float:
    """The estimated memory peak of a run: per cell, plus per cell and step (see MAX_RUN_BYTES)."""
    return cells * (BYTES_PER_CELL + BYTES_PER_CELL_STEP * (steps + 1))


def _size(n: float) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:,.0f} B"


def _grid(scenario: Scenario, extent: tuple[float, ...], where: str) -> Grid:
    """The model grid, refused before any array exists when it has more cells than MAX_CELLS."""
    cell = scenario.config["grid"]["cell"]
    try:
        ny, nx = Grid.covering_shape(tuple(extent), cell)
    except GroundwaterError as exc:
        raise ConfigError(f"{scenario.path}: 'grid.cell': {exc}") from None
    if nx * ny > MAX_CELLS:
        raise ConfigError(
            f"{scenario.path}: 'grid.cell' = {cell:g} m over {where} gives {ny:,} x {nx:,} = "
            f"{nx * ny:,} cells, more than the limit of {MAX_CELLS:,} cells (about "
            f"{_size(nx * ny * BYTES_PER_CELL)} before any step is kept); use larger cells or a "
            "smaller 'grid.extent'"
        )
    return Grid.covering(tuple(extent), cell)


def _check_memory(scenario: Scenario, grid: Grid, clock: Clock) -> tuple[int, float]:
    """Steps and estimated bytes of the run; refused above MAX_RUN_BYTES, the numbers named."""
    hours = scenario.config["scenario"]["time_step_hours"]
    steps = step_count(clock.duration or 0.0, hours * 3600.0)
    need = run_bytes(grid.size, steps)
    if need > MAX_RUN_BYTES:
        count = f"{steps:,.0f}" if math.isfinite(steps) else "too many"
        raise ConfigError(
            f"{scenario.path}: 'scenario.time_step_hours' = {hours:g} h and 'grid.cell' = "
            f"{grid.cell:g} m: {count} steps x {grid.size:,} cells would hold about "
            f"{_size(need)} ({BYTES_PER_CELL_STEP} B per cell and step + {BYTES_PER_CELL} B per "
            f"cell), more than the limit of {_size(MAX_RUN_BYTES)}; use a longer step, a shorter "
            "period or larger cells"
        )
    return int(steps), need


def _pumping_wells(scenario: Scenario, grid: Grid) -> list[dict[str, Any]]:
    """The wells of ``pumping.wells`` and ``pumping.table``; each must lie inside the grid."""
    cfg = scenario.config["pumping"]
    wells = [{**w, "where": f"'pumping.wells[{i}]'"} for i, w in enumerate(cfg.get("wells") or [])]
    if cfg.get("table"):
        wells += _read_pumping_table(scenario)
    for w in wells:
        if not grid.contains(np.array([w["x"]]), np.array([w["y"]]))[0]:
            raise ConfigError(
                f"{scenario.path}: {w['where']}: pumping well {w['name']!r} at ({w['x']:.1f}, "
                f"{w['y']:.1f}) lies outside the model grid "
                f"{tuple(round(v, 1) for v in grid.extent)} (xmin, ymin, xmax, ymax)"
            )
    return wells


def _check_files(scenario: Scenario) -> None:
    """Every file the scenario names (rasters, readings) exists, named with its key."""
    cfg = scenario.config
    named = [(f"aquifer.{k}", cfg["aquifer"].get(k)) for k in
             ("k_raster", "sy_raster", "bottom_raster")]  # fmt: skip
    if cfg["readings"]["source"] in ("jsonl", "store"):
        named.append(("readings.path", cfg["readings"].get("path")))
    for key, value in named:
        if value and not scenario.resolve(value).is_file():
            raise ConfigError(
                f"{scenario.path}: '{key}': file not found: {scenario.resolve(value)}"
            )


def logger_wells(config: dict[str, Any], wells: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The logger wells whose readings a run uses: all, or ``readings.wells`` of them (seeded)."""
    rd = config["readings"]
    n = len(wells.get("id", ()))
    if rd["wells"] and rd["wells"] < n:
        rng = np.random.default_rng(rd["seed"])
        keep = np.sort(rng.choice(n, rd["wells"], replace=False))
        wells = {k: v[keep] for k, v in wells.items()}
    return wells


def hydrograph_wells(
    scenario: Scenario, wells: dict[str, np.ndarray], pumping: list[dict[str, Any]]
) -> list[tuple[str, float, float]]:
    """The wells a run draws hydrographs for (``output``): each named one must exist.

    With readings, the logger wells are those read (:func:`logger_wells`); without, all inside.
    """
    out_cfg = scenario.config["output"]
    if scenario.config["readings"]["source"] != "none":
        wells = logger_wells(scenario.config, wells)
    ids = wells.get("id", np.zeros(0))
    xs, ys = wells.get("x", np.zeros(0)), wells.get("y", np.zeros(0))
    lookup = {str(i): (float(x), float(y)) for i, x, y in zip(ids, xs, ys, strict=True)}
    lookup.update({w["name"]: (w["x"], w["y"]) for w in pumping})
    chosen: list[tuple[str, float, float]] = []
    for n, w in enumerate(out_cfg["hydrograph_wells"]):
        if str(w) not in lookup:
            raise ConfigError(
                f"{scenario.path}: 'output.hydrograph_wells[{n}]' names {w!r}, which is neither a "
                f"logger well inside the grid nor a pumping well{_close(str(w), lookup)}"
            )
        chosen.append((str(w), *lookup[str(w)]))
    if not out_cfg["hydrograph_wells"] and len(ids):
        order = np.argsort(ids.astype(str))
        step = max(1, len(order) // max(out_cfg["hydrographs"], 1))
        for n in order[::step][: out_cfg["hydrographs"]]:
            chosen.append((str(ids[n]), float(xs[n]), float(ys[n])))
    return chosen


def _close(name: str, known: dict[str, Any]) -> str:
    import difflib

    hint = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


def build_setup(
    scenario: Scenario,
    *,
    pack: Path | None = None,
    build_dir: Path | None = None,
    end: str | None = None,
    progress: Progress | None = None,
) -> Setup:
    """Check everything a run needs, build the data products and the model; solve nothing.

    `twin groundwater check` and `run` both come here, so what one accepts the other starts:
    files, the grid's size and the run's memory (refused before any array exists), wells inside
    the grid, hydrograph wells, the aquifer against the terrain. Errors name the file and key.
    ``progress`` sees the data build's stages (its counts are not the run's steps).
    """
    from twin.city.build import run_build
    from twin.city.catalogue import read_wells
    from twin.city.pack import load_pack
    from twin.city.steps import city_steps

    cfg = scenario.config
    progress = as_progress(progress)
    pack_file = Path(pack) if pack else scenario.resolve(cfg["scenario"]["pack"])
    if not (pack_file.is_file() or (pack_file / "pack.toml").is_file()):
        key = "--pack" if pack else f"{scenario.path}: 'scenario.pack'"
        raise ConfigError(f"{key}: no data pack at {pack_file}")
    data_pack = load_pack(pack_file)
    products = (build_dir or scenario.resolve(cfg["scenario"]["build_dir"])) / data_pack.name

    extent = cfg["grid"].get("extent")
    where = "'grid.extent'" if extent else f"the pack's extent ({data_pack.file})"
    grid = _grid(scenario, tuple(extent or data_pack.extent), where)
    clock = scenario.clock(end)
    steps, need = _check_memory(scenario, grid, clock)
    pumping = _pumping_wells(scenario, grid)
    _check_files(scenario)
    wells = read_wells(data_pack.layers["wells"].path)
    inside = grid.contains(wells["x"], wells["y"])
    wells = {key: values[inside] for key, values in wells.items()}
    hydrographs = hydrograph_wells(scenario, wells, pumping)

    run_build(data_pack, city_steps(), products, only=["terrain", "landcover"],
              progress=progress.stage)  # fmt: skip
    terrain = _resample(products / "terrain.tif", grid, "terrain")
    sealed = np.nan_to_num(_resample(products / "sealed.tif", grid, "sealed-fraction"), nan=0.0)
    missing = ~np.isfinite(terrain)
    if missing.all():
        raise DataError(f"{products / 'terrain.tif'}: the terrain does not cover the model grid")
    terrain_filled = np.where(missing, np.nanmean(terrain), terrain)

    aq = cfg["aquifer"]
    top = terrain_filled if aq["top"] == "terrain" else np.full(grid.shape, float(aq["top"]))
    bottom = _raster_or(scenario, aq.get("bottom_raster"), grid, aq["bottom"], "aquifer base")
    if (top - bottom <= 0).any():
        key = "aquifer.bottom_raster" if aq.get("bottom_raster") else "aquifer.bottom"
        raise ConfigError(
            f"{scenario.path}: '{key}' ({aq['bottom']} m) must lie below the aquifer top "
            f"everywhere; the lowest top is {top.min():.1f} m, the highest base "
            f"{bottom.max():.1f} m"
        )
    if aq.get("k_raster"):
        k = _raster_or(scenario, aq["k_raster"], grid, aq["k"], "hydraulic conductivity")
    else:
        k = lognormal_field(grid, aq["k"], aq["k_log10_sd"], aq["k_correlation_m"], aq["seed"])
    sy = _raster_or(scenario, aq.get("sy_raster"), grid, aq["sy"], "specific yield")
    try:
        model = Model(grid, k=k, top=top, bottom=bottom, ss=aq["ss"], sy=sy,
                      confined=aq["confined"], min_saturation=aq["min_saturation"])  # fmt: skip
    except GroundwaterError as exc:  # the model's own rules on its parameters
        raise ConfigError(f"{scenario.path}: 'aquifer': {exc}") from None
    if missing.any():
        model.set_inactive(missing)

    rc = cfg["recharge"]
    open_rate = rc["precipitation_mm_per_year"] / 1000.0 / SECONDS_PER_YEAR
    base = open_rate * (rc["open_fraction"] * (1.0 - sealed) + rc["sealed_fraction"] * sealed)

    edges = cfg["edges"]
    for side, head in edges.items():
        if head == "no-flow":
            continue
        mask = np.zeros(grid.shape, dtype=bool)
        {"west": mask[:, 0:1], "east": mask[:, -1:], "south": mask[0:1, :],
         "north": mask[-1:, :]}[side][...] = True  # fmt: skip
        model.set_fixed_head(mask & ~missing, float(head))

    setup = Setup(scenario, grid, model, terrain_filled, sealed, wells, [], base, clock,
                  steps=steps, memory_bytes=need, hydrographs=hydrographs,
                  pack=data_pack)  # fmt: skip
    river = cfg.get("river")
    if river is not None:
        mask, area = river_cells(grid, river["line"], river["width_m"])
        mask &= ~missing
        if not mask.any():
            raise ConfigError(f"{scenario.path}: 'river.line' does not cross the model grid")
        cond = area * river["bed_leakance_per_day"] / SECONDS_PER_DAY
        times = np.array([clock.to_seconds(e["time"]) for e in river["stage"]])
        values = np.array([e["stage"] for e in river["stage"]], dtype=float)
        model.add_river(mask, float(values.mean()), cond, river["bottom"], name=river["name"])
        setup.stage_times, setup.stage_values, setup.river_name = times, values, river["name"]

    seep = cfg["seepage"]
    if seep["enabled"] and aq["top"] == "terrain":
        on = model.kind == 1
        for river in model.rivers.values():
            on[river.rows, river.cols] = False
        cond = np.full(grid.shape, grid.area * seep["leakance_per_day"] / SECONDS_PER_DAY)
        model.add_drain(on, terrain_filled, cond, name="seepage")

    for w in pumping:
        rate = w["rate_m3_per_day"] / SECONDS_PER_DAY  # scaled by Setup.apply
        model.add_well(w["x"], w["y"], rate, name=w["name"])
        setup.pumping.append((w["name"], w["x"], w["y"], rate))
    return setup


def parse_time(value: str | datetime) -> datetime:
    """An ISO 8601 UTC time (for CLI overrides); naive times are refused."""
    return parse_utc(value, field="time")
