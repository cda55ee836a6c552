"""Heat scenarios: the TOML schema, its variants, and the set-up a run needs (grid, rasters, forcing).

A scenario names the data pack (terrain, land cover, buildings and trees come from its build
products), the grid (the pack's 10 m grid by default, finer on request over an extent), the
meteorological forcing, the climate-station readings merged into the air field, the parameters of
the air layer and of anthropogenic heat, the outputs, and variants that change the city (trees and
unsealing along streets, green roofs, less traffic). ``simulations/heat-wave.toml`` documents every
key. ``twin heat check`` and ``twin heat run`` both build the set-up here, so what one accepts the
other runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from twin.config import Field, fraction, load_toml, non_negative, numbers, positive, validate
from twin.core.clock import Clock, parse_end, utc_check
from twin.errors import ConfigError, DataError, TwinError
from twin.progress import Progress, as_progress

# What a run may take: a step keeps about 40 float64 fields per cell (state, radiation, fluxes,
# statistics) plus the shading and sky-view work arrays: ~400 B per cell. 5 million cells (the
# whole pack extent at 4.5 m) is ~2 GB.
MAX_CELLS = 5_000_000
BYTES_PER_CELL = 400


def _hours(value: Any) -> str | None:
    ok = isinstance(value, list) and all(
        isinstance(h, int) and not isinstance(h, bool) and 0 <= h <= 23 for h in value
    )
    return None if ok else "an array of local hours from 0 to 23"


def _strings(value: Any) -> str | None:
    ok = isinstance(value, list) and value and all(isinstance(s, str) and s for s in value)
    return None if ok else "a non-empty array of street names"


GREENING = {
    "streets": Field(list, check=_strings, doc="streets (OSM name) along which trees are planted"),
    "buffer_m": Field((int, float), required=False, default=20.0, check=positive),
    "canopy_cover": Field((int, float), required=False, default=0.6, check=fraction),
    "canopy_height_m": Field((int, float), required=False, default=12.0, check=positive),
    "unseal": Field((int, float), required=False, default=0.3, check=fraction,
                    doc="share of the sealed ground in the buffer turned into grass"),
}  # fmt: skip

GREEN_ROOFS = {
    "share": Field((int, float), required=False, default=0.6, check=fraction,
                   doc="share of the roof area of the chosen buildings that is greened"),
    "max_height_m": Field((int, float), required=False, default=25.0, check=positive,
                          doc="buildings up to this height (flat roofs of the pack's blocks)"),
    "water_availability": Field((int, float), required=False, default=0.5, check=fraction,
                                doc="water the substrate holds for evaporation (1 = unlimited)"),
}  # fmt: skip

VARIANT = {
    "label": Field(str, required=False, default=""),
    "greening": Field(dict, required=False, schema=GREENING),
    "green_roofs": Field(dict, required=False, schema=GREEN_ROOFS),
    "traffic_scale": Field((int, float), required=False, default=None,
                           check=non_negative),
}  # fmt: skip

SCHEMA = {
    "scenario": Field(dict, schema={
        "name": Field(str),
        "title": Field(str, required=False, default=""),
        "description": Field(str, required=False, default=""),
        "pack": Field(str, required=False, default="../data/krefeld/pack.toml"),
        "build_dir": Field(str, required=False, default="../build"),
        "start": Field(str, check=utc_check),
        "end": Field(str),
        "time_step_s": Field((int, float), required=False, default=600.0,
                             check=lambda v: None if 10 <= v <= 3600 else "10 to 3600 seconds"),
        "timezone": Field(str, required=False, default="Europe/Berlin"),
    }),
    "grid": Field(dict, required=False, default={}, schema={
        "cell": Field((int, float), required=False, default=None, check=positive,
                      doc="cell size (m); default the pack's resolution"),
        "extent": Field(list, required=False, default=None, check=numbers(4)),
    }),
    "forcing": Field(dict, required=False, default={}, schema={
        "station": Field(str, required=False, default="DWD-05064",
                         doc="the climate-station row of the pack the forcing stands for"),
        "file": Field(str, required=False, default=None, doc="a CSV or EPW forcing file"),
        "store": Field(str, required=False, default=None,
                       doc="a sensor store holding the reference station's readings"),
        "max_gap_s": Field((int, float), required=False, default=3600.0, check=positive,
                           doc="the longest stretch without the station's readings bridged"),
        "synthetic": Field(dict, required=False, default={}, schema={
            "t_max_c": Field(list, required=False, default=[32.0, 35.0, 37.0]),
            "t_min_c": Field(list, required=False, default=[18.0, 20.0, 21.0]),
            "wind_speed": Field(list, required=False, default=[1.0, 3.0], check=numbers(2),
                                doc="night and afternoon wind speed at 10 m (m/s)"),
            "wind_from_deg": Field((int, float), required=False, default=100.0),
        }),
    }),
    "readings": Field(dict, required=False, default={}, schema={
        "source": Field(str, required=False, default="simulated",
                        choices=("simulated", "jsonl", "store", "none")),
        "path": Field(str, required=False, default=None),
        "seed": Field(int, required=False, default=1),
        "time_step_s": Field((int, float), required=False, default=600.0, check=positive),
        "max_age_s": Field((int, float), required=False, default=1800.0, check=positive),
        "gap_s": Field((int, float), required=False, default=3600.0, check=positive),
        "sigma_background_k": Field((int, float), required=False, default=1.0, check=positive),
        "length_m": Field((int, float), required=False, default=1500.0, check=positive),
        "sigma_observation_k": Field((int, float), required=False, default=0.3, check=positive),
        "kernel": Field(str, required=False, default="gaussian",
                        choices=("gaussian", "exponential")),
        "reject_sigma": Field((int, float), required=False, default=5.0, check=positive),
    }),
    "air": Field(dict, required=False, default={}, schema={
        "mixing_height_m": Field((int, float), required=False, default=50.0, check=positive),
        "diffusivity_m2_s": Field((int, float), required=False, default=30.0, check=positive),
        "relaxation_s": Field((int, float), required=False, default=1800.0, check=positive),
        "wind_factor": Field((int, float), required=False, default=0.4, check=fraction,
                             doc="canopy-layer wind / 10 m wind"),
        "boundary": Field(str, required=False, default="open",
                          choices=("open", "closed", "periodic")),
    }),
    "anthropogenic": Field(dict, required=False, default={}, schema={
        "buildings_scale": Field((int, float), required=False, default=1.0,
                                 check=non_negative),
        "traffic": Field(str, required=False, default="streets", choices=("streets", "none")),
        "traffic_scale": Field((int, float), required=False, default=1.0,
                               check=non_negative),
    }),
    "groundwater": Field(dict, required=False, default={}, schema={
        "depth_to_water_m": Field((int, float), required=False, default=3.0, check=positive),
        "raster": Field(str, required=False, default=None,
                        doc="a depth-to-water GeoTIFF, e.g. a ground-water run's"),
    }),
    "vegetation": Field(dict, required=False, default={}, schema={
        "transmissivity": Field((int, float), required=False, default=0.03, check=fraction),
        "trunk_ratio": Field((int, float), required=False, default=0.25, check=fraction),
    }),
    "outputs": Field(dict, required=False, default={}, schema={
        "hours": Field(list, required=False, default=[15, 22], check=_hours,
                       doc="local hours of the maps of the last day"),
        "comfort_every_s": Field((int, float), required=False, default=3600.0, check=positive),
        "utci_threshold_c": Field((int, float), required=False, default=32.0),
        "tropical_night_c": Field((int, float), required=False, default=20.0),
        "hotspots": Field(int, required=False, default=10, check=positive),
    }),
    "variants": Field(dict, required=False, default={}, extra_keys=True),
}  # fmt: skip


@dataclass(frozen=True)
class Scenario:
    """A validated heat scenario: its settings with defaults, where it lives, and one variant."""

    path: Path
    config: dict[str, Any]
    variant: str = "baseline"

    @property
    def name(self) -> str:
        """The scenario's name (folder name of its runs)."""
        return self.config["scenario"]["name"]

    @property
    def variants(self) -> list[str]:
        """The baseline and every variant, in file order."""
        return ["baseline", *self.config["variants"]]

    def variant_config(self, name: str | None = None) -> dict[str, Any]:
        """The settings of a variant (the baseline's are empty)."""
        name = name or self.variant
        return {} if name == "baseline" else self.config["variants"][name]

    def with_variant(self, name: str) -> Scenario:
        """This scenario with ``name`` as the variant to run; an unknown name is refused."""
        if name not in self.variants:
            import difflib

            near = difflib.get_close_matches(name, self.variants, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ConfigError(
                f"{self.path}: variant {name!r} is not in the scenario (known: "
                f"{', '.join(self.variants)}){hint}"
            )
        return replace(self, variant=name)

    def resolve(self, relative: str) -> Path:
        """A path given in the file, relative to the file's folder."""
        p = Path(relative).expanduser()
        return p if p.is_absolute() else self.path.parent / p

    def clock(self, end: str | None = None) -> Clock:
        """The run's clock from ``start`` to ``end`` or to the ``--end`` override (one rule)."""
        s = self.config["scenario"]
        try:
            stop = parse_end(end or s["end"], s["start"], field="--end" if end else "scenario.end")
            return Clock(s["start"], stop)
        except TwinError as exc:
            raise ConfigError(f"{self.path}: 'scenario.start'/'end': {exc}") from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a heat scenario; a bad file raises one clear ConfigError."""
    path = Path(path)
    data = load_toml(path)
    for section in ("grid", "forcing", "readings", "air", "anthropogenic", "groundwater",
                    "vegetation", "outputs"):  # fmt: skip
        if not isinstance(data.get(section, {}), dict):
            raise ConfigError(f"{path}: '{section}' must be a table")
        data.setdefault(section, {})  # so that its defaults are filled in too
    if isinstance(data["forcing"], dict):
        data["forcing"].setdefault("synthetic", {})
    cfg = validate(data, SCHEMA, file=path)
    variants = {}
    for name, body in cfg["variants"].items():
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: 'variants.{name}' must be a table")
        if name == "baseline":
            raise ConfigError(f"{path}: 'variants.baseline': the baseline is the file itself")
        variants[name] = validate(body, VARIANT, file=path, where=f"variants.{name}.")
    cfg["variants"] = variants
    syn = cfg["forcing"]["synthetic"]
    for key in ("t_max_c", "t_min_c"):
        if not syn[key] or numbers(len(syn[key]))(syn[key]) is not None:
            raise ConfigError(f"{path}: 'forcing.synthetic.{key}': expected an array of numbers")
    if len(syn["t_max_c"]) != len(syn["t_min_c"]):
        raise ConfigError(f"{path}: 'forcing.synthetic': t_max_c and t_min_c need one value a day")
    rd = cfg["readings"]
    if rd["source"] in ("jsonl", "store") and not rd["path"]:
        raise ConfigError(f"{path}: 'readings.path': source {rd['source']!r} needs a path")
    sc = Scenario(path, cfg)
    sc.clock()  # a bad start or end fails here, naming the keys
    return sc


# -- the grid and the city's rasters on it ----------------------------------------------------


@dataclass(frozen=True)
class HeatGrid:
    """A north-up raster grid in EPSG:25832: ``shape`` (ny, nx), cell size, west and north edges."""

    shape: tuple[int, int]
    cell: float
    west: float
    north: float

    @property
    def transform(self) -> Any:
        """rasterio's affine transform of the grid."""
        from rasterio import Affine

        return Affine(self.cell, 0.0, self.west, 0.0, -self.cell, self.north)

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) in metres."""
        ny, nx = self.shape
        return (self.west, self.north - ny * self.cell, self.west + nx * self.cell, self.north)

    @property
    def cells(self) -> int:
        """Number of cells."""
        return self.shape[0] * self.shape[1]

    def index(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row, column and inside-the-grid mask of points."""
        col = np.floor((np.asarray(x) - self.west) / self.cell).astype(int)
        row = np.floor((self.north - np.asarray(y)) / self.cell).astype(int)
        inside = (row >= 0) & (row < self.shape[0]) & (col >= 0) & (col < self.shape[1])
        return row, col, inside


@dataclass
class Setup:
    """Everything a heat run needs, checked and read: grid, city rasters, forcing, stations."""

    scenario: Scenario
    clock: Clock
    grid: HeatGrid
    pack: Any
    products: Path
    terrain: np.ndarray
    building_height: np.ndarray
    canopy_height: np.ndarray
    canopy_cover: np.ndarray
    landcover: np.ndarray
    classes: list[dict[str, Any]]
    depth_to_water: np.ndarray
    traffic_heat: np.ndarray
    forcing: Any
    stations: dict[str, np.ndarray]
    lat: float
    lon: float
    green_roof: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    unseal: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    changed: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=bool))

    @property
    def steps(self) -> int:
        """Model steps from the start to the end."""
        dt = self.scenario.config["scenario"]["time_step_s"]
        return int(math.ceil((self.clock.duration or 0.0) / dt - 1e-9))


def _grid(scenario: Scenario, pack: Any) -> HeatGrid:
    g = scenario.config["grid"]
    cell = float(g["cell"] or pack.resolution)
    xmin, ymin, xmax, ymax = (float(v) for v in (g["extent"] or pack.extent))
    where = "'grid.extent'" if g["extent"] else f"the pack's extent ({pack.file})"
    px = pack.extent
    if not (xmax > xmin and ymax > ymin):
        raise ConfigError(f"{scenario.path}: {where}: expected [xmin, ymin, xmax, ymax]")
    if xmin < px[0] or ymin < px[1] or xmax > px[2] or ymax > px[3]:
        raise ConfigError(
            f"{scenario.path}: {where} reaches beyond the pack's extent {list(px)}; the city "
            "rasters cover only that"
        )
    nx, ny = int(round((xmax - xmin) / cell)), int(round((ymax - ymin) / cell))
    if nx < 8 or ny < 8:
        raise ConfigError(f"{scenario.path}: {where}: at least 8 x 8 cells of {cell:g} m needed")
    if nx * ny > MAX_CELLS:
        raise ConfigError(
            f"{scenario.path}: 'grid': {ny} x {nx} = {nx * ny:,} cells of {cell:g} m is more than "
            f"{MAX_CELLS:,} (about {MAX_CELLS * BYTES_PER_CELL / 2**30:.0f} GiB); choose a "
            "larger cell or a smaller extent"
        )
    return HeatGrid((ny, nx), cell, xmin, ymax)


def _read(path: Path, grid: HeatGrid, what: str, categorical: bool = False) -> np.ndarray:
    """A product raster on the heat grid: nearest where the grid is as fine or finer, else an
    average (the mode for classes); cells the raster does not cover are NaN."""
    import rasterio
    from rasterio.warp import Resampling

    from twin.city.raster import resample_to

    try:
        with rasterio.open(path) as src:
            pack_cell = abs(src.transform.a)
    except rasterio.errors.RasterioIOError as exc:
        raise DataError(f"{path}: cannot open the {what} raster: {exc}") from None
    finer = grid.cell <= pack_cell + 1e-9
    method = (
        Resampling.nearest if finer else (Resampling.mode if categorical else Resampling.average)
    )
    return resample_to(path, grid.transform, grid.shape, "EPSG:25832", method, what)


def _streets(products: Path) -> dict[str, Any]:
    """The street centre lines of the build (streets.gpkg) with their names and classes."""
    from twin.city.vector import read_vector

    return read_vector(products / "streets.gpkg", "EPSG:25832", fields=["name", "highway"],
                       what="streets")  # fmt: skip


def _streets_mask(products: Path, grid: HeatGrid, names: list[str], buffer_m: float,
                  path: Path, key: str) -> np.ndarray:  # fmt: skip
    """Cells within ``buffer_m`` of the named streets' centre lines (streets.gpkg)."""
    import shapely
    from rasterio.features import rasterize

    streets = _streets(products)
    geoms, street_names = streets["geometry"], np.asarray(streets["name"], dtype=object)
    mask = np.zeros(grid.shape, dtype=bool)
    for name in names:
        hit = street_names == name
        if not hit.any():
            import difflib

            known = sorted({str(n) for n in street_names if n})
            near = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ConfigError(f"{path}: '{key}': no street named {name!r} in the net{hint}")
        shape = shapely.buffer(shapely.union_all(geoms[hit]), buffer_m)
        mask |= rasterize([(shape, 1)], out_shape=grid.shape, transform=grid.transform,
                          all_touched=False, dtype="uint8").astype(bool)  # fmt: skip
    return mask


def _traffic_heat(products: Path, grid: HeatGrid) -> np.ndarray:
    """Waste heat of traffic (W m-2) estimated from the streets' classes when no traffic model
    runs: a daily mean flow per OSM highway class (vehicles per day, typical German urban counts)
    times 2.5 MJ per vehicle-km (fuel energy of the urban fleet, ~7 l/100 km), spread over the
    carriageway; the model applies the diurnal profile of traffic."""
    import shapely
    from rasterio.features import rasterize

    streets = _streets(products)
    geoms, highway = streets["geometry"], np.asarray(streets["highway"], dtype=object)
    flows = {"motorway": 60000, "trunk": 30000, "primary": 18000, "secondary": 10000,
             "tertiary": 5000, "residential": 1000, "unclassified": 1000, "service": 300}  # fmt: skip
    widths = {"motorway": 25.0, "trunk": 16.0, "primary": 14.0, "secondary": 11.0,
              "tertiary": 9.0}  # fmt: skip
    joules_per_km = 2.5e6
    out = np.zeros(grid.shape)
    for cls, per_day in flows.items():
        hit = highway == cls
        if not hit.any():
            continue
        width = widths.get(cls, 7.0)
        # W per m2 of carriageway: vehicles/s x J per m of road / road width
        flux = per_day / 86400.0 * joules_per_km / 1000.0 / width
        shapes = [(g, 1) for g in shapely.buffer(geoms[hit], width / 2.0)]
        cover = rasterize(shapes, out_shape=grid.shape, transform=grid.transform,
                          dtype="uint8").astype(bool)  # fmt: skip
        out = np.where(cover, np.maximum(out, flux), out)
    return out


def build_setup(scenario: Scenario, *, pack: Path | None = None, build_dir: Path | None = None,
                end: str | None = None, forcing: Any = None, station_readings: Any = None,
                progress: Progress | None = None) -> Setup:  # fmt: skip
    """Check what a run needs, build the data products, read the city onto the heat grid.

    ``forcing`` (a :class:`twin.heat.forcing.Forcing`) replaces the scenario's own;
    ``station_readings`` (a :data:`twin.heat.forcing.StationReader`) reads a sensor store for
    ``[forcing] store``."""
    from twin.city.build import run_build
    from twin.city.catalogue import read_stations
    from twin.city.pack import load_pack
    from twin.city.steps import city_steps
    from twin.geo import utm_to_wgs84

    cfg = scenario.config
    progress = as_progress(progress)
    pack_file = Path(pack) if pack else scenario.resolve(cfg["scenario"]["pack"])
    if not (pack_file.is_file() or (pack_file / "pack.toml").is_file()):
        key = "--pack" if pack else f"{scenario.path}: 'scenario.pack'"
        raise ConfigError(f"{key}: no data pack at {pack_file}")
    data_pack = load_pack(pack_file)
    products = (build_dir or scenario.resolve(cfg["scenario"]["build_dir"])) / data_pack.name
    grid = _grid(scenario, data_pack)
    clock = scenario.clock(end)
    from twin.tiles.rasterize import surface_on_grid  # a pack's surface layer (3D Tiles)

    run_build(data_pack, city_steps(surface_on_grid), products,
              only=["terrain", "landcover", "streets", "building_rasters", "trees"],
              progress=progress.stage)  # fmt: skip

    terrain = _read(products / "terrain.tif", grid, "terrain")
    if not np.isfinite(terrain).any():
        raise DataError(f"{products / 'terrain.tif'}: the terrain does not cover the heat grid")
    terrain = np.where(np.isfinite(terrain), terrain, np.nanmean(terrain))
    height = np.nan_to_num(_read(products / "building_height.tif", grid, "building height"))
    canopy_h = np.nan_to_num(_read(products / "canopy_height.tif", grid, "canopy height"))
    canopy_c = np.nan_to_num(_read(products / "canopy_cover.tif", grid, "canopy cover"))
    landcover = np.nan_to_num(_read(products / "landcover.tif", grid, "land cover", True))
    classes = list(data_pack.layers["landcover"].options.get("classes", []))

    gw = cfg["groundwater"]
    if gw["raster"]:
        raster = scenario.resolve(gw["raster"])
        if not raster.is_file():
            raise ConfigError(f"{scenario.path}: 'groundwater.raster': no file at {raster}")
        depth = _read(raster, grid, "depth to water")
        depth = np.where(np.isfinite(depth), depth, gw["depth_to_water_m"])
    else:
        depth = np.full(grid.shape, float(gw["depth_to_water_m"]))

    ant = cfg["anthropogenic"]
    traffic = _traffic_heat(products, grid) if ant["traffic"] == "streets" else np.zeros(grid.shape)

    catalogue = data_pack.layers["climate_stations"].path
    station = _reference_station(scenario, catalogue)
    if forcing is None:
        forcing = _forcing(scenario, clock, station, station_readings)
    stations = read_stations(catalogue)
    cx, cy = (grid.extent[0] + grid.extent[2]) / 2.0, (grid.extent[1] + grid.extent[3]) / 2.0
    lon, lat = utm_to_wgs84(cx, cy)
    setup = Setup(scenario, clock, grid, data_pack, products, terrain, height, canopy_h, canopy_c,
                  landcover, classes, depth, traffic, forcing, stations, float(lat), float(lon))  # fmt: skip
    return apply_variant(setup)


def apply_variant(setup: Setup) -> Setup:
    """The city as the scenario's variant changes it: trees and unsealing along streets, green
    roofs; the cells changed are kept in ``setup.changed``."""
    sc, grid = setup.scenario, setup.grid
    v = sc.variant_config()
    setup.unseal = np.zeros(grid.shape)
    setup.green_roof = np.zeros(grid.shape)
    setup.changed = np.zeros(grid.shape, dtype=bool)
    if v.get("greening"):
        g = v["greening"]
        mask = _streets_mask(setup.products, grid, g["streets"], g["buffer_m"], sc.path,
                             f"variants.{sc.variant}.greening.streets")  # fmt: skip
        mask &= setup.building_height <= 0.0
        setup.canopy_cover = np.where(mask, np.maximum(setup.canopy_cover, g["canopy_cover"]),
                                      setup.canopy_cover)  # fmt: skip
        setup.canopy_height = np.where(mask, np.maximum(setup.canopy_height,
                                       g["canopy_height_m"]), setup.canopy_height)  # fmt: skip
        setup.unseal = np.where(mask, g["unseal"], 0.0)
        setup.changed |= mask
    if v.get("green_roofs"):
        r = v["green_roofs"]
        roofs = (setup.building_height > 0.0) & (setup.building_height <= r["max_height_m"])
        setup.green_roof = np.where(roofs, r["share"], 0.0)
        setup.changed |= roofs
    return setup


def _reference_station(scenario: Scenario, catalogue: Path) -> dict[str, Any]:
    """The pack's climate-station row the forcing stands for (``forcing.station``)."""
    from twin.heat.forcing import reference_station

    ref = scenario.config["forcing"]["station"]
    try:
        return reference_station(catalogue, ref)
    except DataError as exc:
        raise ConfigError(f"{scenario.path}: 'forcing.station': {ref!r}: {exc}") from None


def _forcing(scenario: Scenario, clock: Clock, station: dict[str, Any],
             station_readings: Any = None) -> Any:  # fmt: skip
    """The scenario's forcing at its reference station: its file (CSV or EPW) or the synthetic
    heat wave over the run."""
    from dataclasses import replace as with_fields

    from twin.heat.forcing import forcing_from_store, read_forcing, synthetic_heat_wave

    f = scenario.config["forcing"]
    t0, t1 = clock.start.timestamp(), clock.end.timestamp()
    if f["file"] and f["store"]:
        raise ConfigError(f"{scenario.path}: 'forcing': give 'file' or 'store', not both")
    if f["store"]:
        path = scenario.resolve(f["store"])
        if station_readings is None:
            raise ConfigError(f"{scenario.path}: 'forcing.store': this caller cannot read a "
                              "sensor store; run it with `twin heat run` or `twin run`")  # fmt: skip
        try:
            return forcing_from_store(station_readings, path, station, t0, t1,
                                      step_s=scenario.config["scenario"]["time_step_s"],
                                      max_gap_s=f["max_gap_s"])  # fmt: skip
        except DataError as exc:
            raise ConfigError(f"{scenario.path}: 'forcing.store': {exc}") from None
    if f["file"]:
        path = scenario.resolve(f["file"])
        if not path.is_file():
            raise ConfigError(f"{scenario.path}: 'forcing.file': no file at {path}")
        forcing = read_forcing(path)
        if forcing.station is None:  # a file without its station stands for the scenario's
            forcing = with_fields(forcing, station=station)
    else:
        syn = f["synthetic"]
        # from the run's start (a coupled run's clock), an hour before it for the readings' lead
        start = clock.start.timestamp()
        forcing = synthetic_heat_wave(start, days=len(syn["t_max_c"]),
                                      t_max_c=tuple(syn["t_max_c"]), t_min_c=tuple(syn["t_min_c"]),
                                      wind_speed=tuple(syn["wind_speed"]),
                                      wind_from_deg=syn["wind_from_deg"],
                                      before_s=3600.0, station=station)  # fmt: skip
    try:
        forcing.window(t0, t1)
    except TwinError as exc:
        raise ConfigError(f"{scenario.path}: 'forcing': {exc}") from None
    return forcing
