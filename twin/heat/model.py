"""The urban heat model behind the twin's model interface (``twin.core.Model``): its stepping loop.

One step of ``dt`` (600 s by default) at the middle of the step: the sun's position, shading of
every cell by buildings and trees, the radiation budget of each cell's surface, the surface energy
balance (storage, ground, sensible and latent heat; anthropogenic heat of buildings and traffic),
the canopy-layer air temperature (the excess of sensible heat over the rural reference surface
heats it; horizontal mixing, advection by the wind and relaxation to the rural background move
and damp it), the climate stations' readings merged into the air field, and the surface
temperature from the sensible heat. Mean radiant temperature and UTCI at street level are
computed every ``outputs.comfort_every_s``. The kernels live in their own modules; this module
only wires them, so each can be tested against its reference. Rasters are north-up.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from twin.core import Grid as CoreGrid
from twin.core import Model as CoreModel
from twin.core import ModelError, VariableSpec, bind

RHO_CP = 1.2 * 1005.0  # volumetric heat capacity of air near the ground, J m-3 K-1
AIR_T = "atmosphere_air__temperature"
WEIGHT = "observation__assimilation_weight"
# The rural reference surface the forcing station stands on: short grass, open sky, sunlit.
RURAL = {"grass": 1.0}
RURAL_Z0 = 0.01  # m, short grass (Wieringa 1993)
CROWN_COVER = 0.5  # share of a cell under crowns from which the cell casts and takes crown shade


class HeatModel(CoreModel):
    """Adapter: the urban heat model stepped by the coupler, station readings merged in.

    ``initialize`` takes ``{"setup": Setup}`` (:func:`twin.heat.scenario.build_setup`) or
    ``{"scenario": path, "variant", "pack", "build_dir", "end"}``. Further keys: ``stations``
    ({"id", "x", "y"}: the climate stations whose readings come as ``observed_air_temperature``;
    default the pack's stations inside the grid, the forcing's own station excluded),
    ``record`` (keep the domain-mean energy balance of every step and the station statistics),
    ``reference`` (step with the NumPy references of the kernels: slow, for comparisons).
    """

    INPUTS = (
        VariableSpec("traffic_heat_flux", "W m-2", "road_traffic__waste_heat_energy_flux", "raster",
                     "waste heat of traffic per cell; replaces the estimate from street classes",
                     optional=True),
        VariableSpec("depth_to_water", "m", "land_surface__depth_to_water_table", "raster",
                     "depth of the water table below ground; limits evaporation of vegetation",
                     optional=True),
        VariableSpec("observed_air_temperature", "degC", AIR_T, "points",
                     "climate stations' air temperature at the current time; NaN = none",
                     optional=True),
        VariableSpec("observation_weight", "1", WEIGHT, "points",
                     "weight in [0, 1] of each station reading (0 = not used)", optional=True),
    )  # fmt: skip
    OUTPUTS = (
        VariableSpec("air_temperature", "degC", AIR_T, "raster", "canopy-layer air temperature"),
        VariableSpec("surface_temperature", "degC", "land_surface__temperature", "raster",
                     "surface temperature of each cell's top surface (roofs on buildings)"),
        VariableSpec("sensible_heat_flux", "W m-2", "land_surface__sensible_heat_energy_flux",
                     "raster", "sensible heat from the surface to the air"),
        VariableSpec("latent_heat_flux", "W m-2", "land_surface__latent_heat_energy_flux",
                     "raster", "latent heat of evaporation"),
        VariableSpec("air_temperature_at_stations", "degC", AIR_T, "points",
                     "model air temperature at the climate stations", optional=True),
    )  # fmt: skip

    # -- set-up --------------------------------------------------------------------------------

    def _initialize(self, config: Mapping[str, Any]) -> None:
        from twin.heat.energy import building_heat
        from twin.heat.surface import cell_properties, cover_fractions

        setup = config.get("setup")
        if setup is None:
            if "scenario" not in config:
                raise ModelError("heat config: give 'setup' or 'scenario' (a TOML file)")
            from twin.heat.scenario import build_setup, load_scenario

            sc = load_scenario(Path(config["scenario"]))
            if config.get("variant"):
                sc = sc.with_variant(config["variant"])
            setup = build_setup(sc, pack=config.get("pack"), build_dir=config.get("build_dir"),
                                end=config.get("end"))  # fmt: skip
        self.setup = setup
        cfg = setup.scenario.config
        self.cfg = cfg
        grid = setup.grid
        self.grid = grid
        self.time_step = float(cfg["scenario"]["time_step_s"])
        self.tz = ZoneInfo(cfg["scenario"]["timezone"])
        self.timings: dict[str, float] = {}
        self.cpu_timings: dict[str, float] = {}
        self._cpu_mark = time.process_time()
        t0 = time.perf_counter()

        self.fractions, self._roof_grass = _fractions(setup, cover_fractions)
        self.albedo, self.emissivity = cell_properties(self.fractions)
        from twin.heat.energy import RadiationTrend
        from twin.heat.surface import COVERS, roughness

        self.z0, self.zd = roughness(self.fractions, setup.building_height, setup.canopy_height)
        # the forcing's wind is measured 10 m above open ground: over the city, 10 m above the
        # displacement height of each cell's roughness elements
        self.z_wind = self.zd + 10.0
        self.vegetation = self.fractions[COVERS.index("grass")] + self.fractions[COVERS.index(
            "trees")]  # fmt: skip
        self.roof = self.fractions[COVERS.index("roof")] + self._roof_grass
        from twin.heat.energy import resistance_terms

        self._resistance = resistance_terms(self.z_wind, self.zd, self.z0, self.vegetation)
        self.trend = RadiationTrend()
        self.trend_ref = RadiationTrend()
        self.building = setup.building_height > 0.0
        self.dsm = (setup.terrain + setup.building_height).astype(np.float64)
        # a 10 m cell casts a crown's shade where crowns cover most of it; cells only partly
        # under crowns keep their trees in the cover fractions (latent heat, albedo) only
        crowns = ~self.building & (setup.canopy_cover >= CROWN_COVER)
        self.canopy = np.where(crowns, setup.canopy_height, 0.0).astype(np.float64)
        veg = cfg["vegetation"]
        self.k = kernels(bool(config.get("reference")))
        self.svf = self.k.svf(self.dsm, grid.cell, canopy=self.canopy,
                                   transmissivity=veg["transmissivity"])  # fmt: skip
        self.svf = np.asarray(self.svf, dtype=np.float64)
        self._building_heat = building_heat
        self._timing("setup", t0)

        # water availability: the ground's from the depth to water, the green roofs' substrate
        self._depth = np.asarray(setup.depth_to_water, dtype=float)
        self._traffic = np.asarray(setup.traffic_heat, dtype=float)
        self._traffic_from_input = False
        self._depth_from_input = False
        v = setup.scenario.variant_config()
        ant = cfg["anthropogenic"]
        scale = v.get("traffic_scale")
        self.traffic_scale = float(ant["traffic_scale"] if scale is None else scale)
        roofs = v.get("green_roofs") or {}
        self._roof_water = float(roofs.get("water_availability", 1.0))
        self._water = self._water_availability()

        n = grid.shape
        # model time 0 is the coupler's epoch (its clock), else the set-up's start
        self._epoch = (self.clock or setup.clock).start.timestamp()
        met = setup.forcing.at(self._epoch)
        self.t_air = np.full(n, float(met["t_air_c"]))
        self.t_surface = self.t_air.copy()
        self.t_ref_surface = float(met["t_air_c"])

        st = config.get("stations")
        if st is None:
            st = _stations_inside(setup)
        self.stations = {k: np.asarray(st[k]) for k in ("id", "x", "y")}
        rows, cols, inside = grid.index(self.stations["x"], self.stations["y"])
        if not inside.all():
            raise ModelError("heat config 'stations': every station must lie inside the grid")
        self._station_rc = (rows, cols)
        self._observed: np.ndarray | None = None
        self._weights = np.ones(len(self.stations["x"]))
        # a variant replays the baseline's analysis increments (time -> station x, y and
        # coefficients) instead of merging the readings itself, so the readings correct the
        # baseline and the variant alike and their difference is the variant's alone
        self._replay = config.get("increments")
        self.increments: dict[float, tuple[np.ndarray, np.ndarray]] = {}

        raster = CoreGrid.raster(grid.shape, tuple(grid.transform)[:6])
        pts = (CoreGrid.points(np.column_stack([self.stations["x"], self.stations["y"]]))
               if len(self.stations["x"]) else None)  # fmt: skip
        self.inputs = bind(self.declared_inputs(config), {"traffic_heat_flux": raster,
                           "depth_to_water": raster, "observed_air_temperature": pts,
                           "observation_weight": pts})  # fmt: skip
        self.outputs = bind(self.declared_outputs(config), {"air_temperature": raster,
                            "surface_temperature": raster, "sensible_heat_flux": raster,
                            "latent_heat_flux": raster, "air_temperature_at_stations": pts})  # fmt: skip
        self.fluxes: dict[str, np.ndarray] = {k: np.zeros(n) for k in
                                              ("sensible", "latent", "storage", "ground")}  # fmt: skip
        self.tmrt = np.full(n, np.nan)
        self.utci = np.full(n, np.nan)
        self._next_comfort = 0.0
        self.record = bool(config.get("record"))
        self.energy_rows: list[dict[str, float]] = []
        self.station_rows: list[dict[str, Any]] = []
        self.max_residual = 0.0
        self.steps_without_readings = 0
        self.steps_with_readings = 0
        self.stats = None
        if self.record:
            from twin.heat.outputs import RunningStats

            out = cfg["outputs"]
            self.stats = RunningStats(n, thresholds={"utci": float(out["utci_threshold_c"])},
                                      tropical_threshold=float(out["tropical_night_c"]))  # fmt: skip
        self.snapshots: dict[str, dict[str, np.ndarray]] = {}

    def _timing(self, key: str, t0: float) -> None:
        """Add the wall seconds since ``t0`` to phase ``key`` (and the CPU seconds of all threads
        since the last call to ``cpu_timings``, which the benchmark compares with SOLWEIG's)."""
        self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - t0
        c = time.process_time()
        self.cpu_timings[key] = self.cpu_timings.get(key, 0.0) + c - self._cpu_mark
        self._cpu_mark = c

    def _water_availability(self) -> np.ndarray:
        """Water for evaporation per cell: the ground's vegetation from the depth to water, the
        green roofs' substrate from the variant, weighted by their shares of the vegetation."""
        from twin.heat.energy import water_availability
        from twin.heat.surface import COVERS

        ground = np.asarray(water_availability(self._depth), dtype=float)
        if not self._roof_grass.any():
            return ground
        f = self.fractions
        veg = f[COVERS.index("grass")] + f[COVERS.index("trees")]
        on_roofs = np.minimum(self._roof_grass, veg)
        share = np.divide(on_roofs, veg, out=np.zeros_like(veg), where=veg > 0)
        return (1.0 - share) * ground + share * self._roof_water

    # -- inputs --------------------------------------------------------------------------------

    def _set_value(self, name: str, values: np.ndarray) -> None:
        if name == "traffic_heat_flux":
            self._traffic = np.asarray(values, dtype=float)
            self._traffic_from_input = True
        elif name == "depth_to_water":
            self._depth = np.where(np.isfinite(values), values, self._depth)
            self._depth_from_input = True
            self._water = self._water_availability()
        elif name == "observed_air_temperature":
            self._observed = np.asarray(values, dtype=float).ravel()
        elif name == "observation_weight":
            self._weights = np.asarray(values, dtype=float).ravel()

    def _get_value(self, name: str) -> Any:
        if name == "air_temperature":
            return self.t_air
        if name == "surface_temperature":
            return self.t_surface
        if name == "sensible_heat_flux":
            return self.fluxes["sensible"]
        if name == "latent_heat_flux":
            return self.fluxes["latent"]
        if name == "air_temperature_at_stations":
            r, c = self._station_rc
            return self.t_air[r, c]
        raise ModelError(f"heat model has no output {name!r}")

    # -- one step ------------------------------------------------------------------------------

    def _local_hour(self, t_unix: float) -> float:
        d = datetime.fromtimestamp(t_unix, self.tz)
        return d.hour + d.minute / 60.0 + d.second / 3600.0

    def _step(self, dt: float) -> None:
        from twin.heat.radiation import sky_longwave, split_global
        from twin.heat.sun import solar_position

        cfg, grid = self.cfg, self.grid
        t_start = self._epoch + self._time
        tm = t_start + dt / 2.0
        met = self.setup.forcing.at(tm)
        t_bg, rh, ws = float(met["t_air_c"]), float(met["rh_percent"]), float(met["wind_speed"])
        alt, az = solar_position(tm, self.setup.lat, self.setup.lon)
        alt, az = float(alt), float(az)

        t0 = time.perf_counter()
        veg = cfg["vegetation"]
        if alt > 0.0:
            sunlit = self.k.shadow(self.dsm, grid.cell, az, alt, canopy=self.canopy,
                                 trunk_ratio=veg["trunk_ratio"],
                                 transmissivity=veg["transmissivity"])  # fmt: skip
            sunlit = np.asarray(sunlit, dtype=np.float64)
        else:
            sunlit = np.zeros(grid.shape)
        self._timing("shadow", t0)
        t0 = time.perf_counter()
        dni, dif = split_global(float(met["global_radiation"]), alt, tm)
        dni, dif = float(dni), float(dif)
        l_sky = float(sky_longwave(t_bg, rh))
        rad = self.k.net_radiation(dni, dif, l_sky, alt, sunlit, self.svf, self.albedo,
                                    self.emissivity, self.t_surface, t_bg)  # fmt: skip
        q_star = np.asarray(rad["q_star"], dtype=float)
        dq = self.trend.update(q_star, dt)
        hour = self._local_hour(tm)
        qf = (cfg["anthropogenic"]["buildings_scale"] * self._building_heat(self.roof, hour)
              + self.traffic_scale * self._traffic * (1.0 if self._traffic_from_input
                                                       else _traffic_profile(hour)))  # fmt: skip
        qf = np.asarray(qf, dtype=float)
        self._timing("radiation", t0)

        t0 = time.perf_counter()
        eb = self.k.energy(q_star, dq, qf, self.fractions, self.t_air, rh, ws, self._water,
                            k_down=rad["k_down"], pressure_hpa=float(met["pressure_hpa"]),
                            measurement_height=self.z_wind, displacement_height=self.zd,
                            roughness_length=self.z0, resistance=self._resistance)  # fmt: skip
        self.fluxes = {k: np.asarray(eb[k], dtype=float) for k in self.fluxes}
        qh_ref = self._rural_sensible(dni, dif, l_sky, alt, t_bg, rh, ws, dt)
        self._timing("energy", t0)

        t0 = time.perf_counter()
        air = cfg["air"]
        wind = ws * air["wind_factor"]
        frm = math.radians(float(met["wind_from_deg"]))
        u, v = -wind * math.sin(frm), -wind * math.cos(frm)
        source = (self.fluxes["sensible"] - qh_ref) / (RHO_CP * air["mixing_height_m"])
        self.t_air = np.asarray(self.k.air(self.t_air, source, t_bg, u, v, cell=grid.cell, dt=dt,
                                         diffusivity=air["diffusivity_m2_s"],
                                         tau_s=air["relaxation_s"],
                                         boundary=air["boundary"]), dtype=float)  # fmt: skip
        self._timing("air", t0)
        t0 = time.perf_counter()
        self._assimilate(t_start + dt)
        self._timing("stations", t0)
        t0 = time.perf_counter()
        # the surface's own emission implicit (the explicit form oscillated on roofs)
        self.t_surface = self.k.surface(self.t_air, self.fluxes["sensible"], self.t_surface,
                                        self.emissivity, self._resistance, ws,
                                        float(met["pressure_hpa"]))  # fmt: skip
        residual = q_star + qf - sum(self.fluxes.values())
        self.max_residual = max(self.max_residual, float(np.max(np.abs(residual))))
        self._timing("surface", t0)
        if self._time + dt >= self._next_comfort - 1e-6:
            self._comfort(dni, dif, l_sky, alt, sunlit, rh, ws)
            self._next_comfort += cfg["outputs"]["comfort_every_s"]
        if self.record:
            t0 = time.perf_counter()
            self.energy_rows.append({
                "time": t_start + dt, "net_radiation": float(q_star.mean()),
                "sensible": float(self.fluxes["sensible"].mean()),
                "latent": float(self.fluxes["latent"].mean()),
                "storage": float(self.fluxes["storage"].mean()),
                "ground": float(self.fluxes["ground"].mean()),
                "anthropogenic": float(qf.mean()), "residual": float(residual.mean()),
            })  # fmt: skip
            fields = {"t_air": self.t_air, "t_surface": self.t_surface}
            if self._comfort_fresh:
                fields.update(tmrt=self.tmrt, utci=self.utci)
            self.stats.update(t_start + dt, dt, fields)
            self._snapshot(t_start + dt)
            self._timing("statistics", t0)
        self._comfort_fresh = False

    _comfort_fresh = False

    def _rural_sensible(self, dni: float, dif: float, l_sky: float, alt: float, t_bg: float,
                        rh: float, ws: float, dt: float) -> float:  # fmt: skip
        """Sensible heat of the rural reference surface (open grass, sunlit) under the same
        weather: the air over it is the background, so only the city's excess heats the air."""
        from twin.heat.energy import energy_balance, surface_temperature
        from twin.heat.radiation import surface_net_radiation
        from twin.heat.surface import COVERS, cell_properties

        f = np.zeros((len(COVERS), 1, 1))
        for name, share in RURAL.items():
            f[COVERS.index(name)] = share
        alb, emi = cell_properties(f)
        one = np.ones((1, 1))
        ts = np.full((1, 1), self.t_ref_surface)
        ta = np.full((1, 1), t_bg)
        rad = surface_net_radiation(dni, dif, l_sky, alt, one, one, alb, emi, ts, t_bg)
        q = np.asarray(rad["q_star"], dtype=float)
        dq = self.trend_ref.update(q, dt)
        z0 = np.full((1, 1), RURAL_Z0)
        eb = energy_balance(q, dq, np.zeros((1, 1)), f, ta, rh, ws, one, k_down=rad["k_down"],
                            roughness_length=z0)  # fmt: skip
        qh = np.asarray(eb["sensible"], dtype=float)
        ts = surface_temperature(ta, qh, ws, roughness_length=z0, vegetation_fraction=1.0)
        self.t_ref_surface = float(np.asarray(ts).ravel()[0])
        return float(qh.ravel()[0])

    def _assimilate(self, t: float) -> None:
        """Merge the station readings set for this time into the air field (see stations.py)."""
        from twin.heat.stations import StationConfig, add_increment, merge_stations

        rd = self.cfg["readings"]
        conf = StationConfig(sigma_background_k=rd["sigma_background_k"], length_m=rd["length_m"],
                             sigma_observation_k=rd["sigma_observation_k"], kernel=rd["kernel"],
                             reject_sigma=rd["reject_sigma"])  # fmt: skip
        observed, self._observed = self._observed, None
        if self._replay is not None:
            entry = self._replay.get(round(t, 3))
            if entry is not None:
                xy, coef = entry
                self.t_air = add_increment(self.t_air, self.grid.transform, xy[:, 0], xy[:, 1],
                                           coef, conf)  # fmt: skip
                self.steps_with_readings += 1
            return
        if observed is None or not len(observed):
            return

        weights = np.where(np.isfinite(observed), self._weights, 0.0)
        if not (weights > 0).any():
            self.steps_without_readings += 1
            return
        result = merge_stations(self.t_air, self.grid.transform, self.stations["x"],
                                self.stations["y"], np.nan_to_num(observed), weights, conf)  # fmt: skip
        self.t_air = np.asarray(result.field, dtype=float)
        self.steps_with_readings += 1
        if len(result.coefficients):
            self.increments[round(t, 3)] = (result.station_xy.copy(), result.coefficients.copy())
        if self.record:
            self.station_rows.append({"time": t, "used": np.asarray(result.used).copy(),
                                      "innovations": np.asarray(result.innovations).copy(),
                                      "residuals_after": np.asarray(result.residuals_after).copy(),
                                      "loo": np.asarray(result.loo_residuals).copy()})  # fmt: skip

    def _comfort(self, dni: float, dif: float, l_sky: float, alt: float, sunlit: np.ndarray,
                 rh: float, ws: float) -> None:  # fmt: skip
        """Mean radiant temperature and UTCI at street level (1.1 m) on the open cells."""
        t0 = time.perf_counter()
        tmrt = np.asarray(self.k.tmrt(dni, dif, l_sky, alt, sunlit, self.svf,
                                                   float(self.t_air.mean()), self.t_surface,
                                                   self.albedo, emissivity_ground=self.emissivity,
                                                   building=self.building), dtype=float)  # fmt: skip
        self.tmrt = np.where(self.building, np.nan, tmrt)
        self._timing("tmrt", t0)
        t0 = time.perf_counter()
        # UTCI is defined with the wind 10 m above ground, as the forcing gives it
        self.utci = np.asarray(self.k.utci(self.t_air, self.tmrt, ws, rh), dtype=float)
        self.utci = np.where(self.building, np.nan, self.utci)
        self._timing("utci", t0)
        self._comfort_fresh = True

    def _snapshot(self, t: float) -> None:
        """Keep the fields at the chosen local hours of each day (maps of the last day)."""
        d = datetime.fromtimestamp(t, self.tz)
        if d.minute * 60 + d.second >= self.time_step or d.hour not in self.cfg["outputs"]["hours"]:
            return
        self.snapshots[f"{d.hour:02d}"] = {
            "date": np.array(d.date().isoformat()),
            "t_air": self.t_air.copy(), "t_surface": self.t_surface.copy(),
            "tmrt": self.tmrt.copy(), "utci": self.utci.copy(),
        }  # fmt: skip

    # -- checkpoints ---------------------------------------------------------------------------

    def _save_state(self) -> Mapping[str, Any]:
        state: dict[str, Any] = {
            "t_air": self.t_air, "t_surface": self.t_surface,
            "t_ref_surface": self.t_ref_surface, "next_comfort": self._next_comfort,
            **_trend_state("trend", self.trend), **_trend_state("trend_ref", self.trend_ref),
            "tmrt": self.tmrt, "utci": self.utci, "depth": self._depth, "traffic": self._traffic,
            "traffic_from_input": self._traffic_from_input, "weights": self._weights,
            **{f"flux_{k}": v for k, v in self.fluxes.items()},
        }  # fmt: skip
        return state

    def _load_state(self, state: Mapping[str, Any]) -> None:
        self.t_air = np.array(state["t_air"], dtype=float)
        self.t_surface = np.array(state["t_surface"], dtype=float)
        self.t_ref_surface = float(state["t_ref_surface"])
        _load_trend(self.trend, "trend", state)
        _load_trend(self.trend_ref, "trend_ref", state)
        self._next_comfort = float(state["next_comfort"])
        self.tmrt = np.array(state["tmrt"], dtype=float)
        self.utci = np.array(state["utci"], dtype=float)
        self._depth = np.array(state["depth"], dtype=float)
        self._traffic = np.array(state["traffic"], dtype=float)
        self._traffic_from_input = bool(state["traffic_from_input"])
        self._weights = np.array(state["weights"], dtype=float)
        self.fluxes = {k: np.array(state[f"flux_{k}"], dtype=float) for k in self.fluxes}
        self._water = self._water_availability()


def kernels(reference: bool = False) -> SimpleNamespace:
    """The model's numerical kernels: the numba ones, or (``reference``) the plain NumPy
    references of the same equations, which the tests compare them with and the benchmark
    times them against."""
    from twin.heat import air, comfort, energy, radiation, shadow

    if reference:
        return SimpleNamespace(shadow=shadow.shadow_mask_reference,
                               svf=shadow.sky_view_factor_reference,
                               net_radiation=radiation.surface_net_radiation_reference,
                               energy=energy.energy_balance_reference,
                               air=air.step_air_reference,
                               tmrt=radiation.mean_radiant_temperature_reference,
                               surface=energy.surface_temperature_implicit_reference,
                               utci=comfort.utci_reference)  # fmt: skip
    return SimpleNamespace(shadow=shadow.shadow_mask, svf=shadow.sky_view_factor,
                           net_radiation=radiation.surface_net_radiation,
                           energy=energy.energy_balance, air=air.step_air,
                           tmrt=radiation.mean_radiant_temperature,
                           surface=energy.surface_temperature_implicit, utci=comfort.utci)  # fmt: skip


def _trend_state(key: str, trend: Any) -> dict[str, Any]:
    """A RadiationTrend's state for a checkpoint (empty arrays before its first step)."""
    none = np.zeros(0)
    return {f"{key}_mean": none if trend.mean is None else trend.mean,
            f"{key}_rate": none if trend.rate is None else trend.rate,
            f"{key}_elapsed": float(trend.elapsed)}  # fmt: skip


def _load_trend(trend: Any, key: str, state: Mapping[str, Any]) -> None:
    mean = np.array(state[f"{key}_mean"], dtype=float)
    trend.mean = None if mean.size == 0 else mean
    rate = np.array(state[f"{key}_rate"], dtype=float)
    trend.rate = None if rate.size == 0 else rate
    trend.elapsed = float(state[f"{key}_elapsed"])


def _traffic_profile(hour: float) -> float:
    """Weekday traffic by local hour relative to the daily mean (mean 1 over 24 h): night low,
    peaks at 08:00 and 17:00 (the shape of German urban counting stations)."""
    base = (
        0.25
        + 1.1 * math.exp(-(((hour - 8.0) / 2.0) ** 2))
        + 1.25 * math.exp(-(((hour - 17.0) / 2.5) ** 2))
    )
    day = 0.9 if 6.0 <= hour <= 21.0 else 0.0
    return (base + day) / 1.33


def _fractions(setup: Any, cover_fractions: Any) -> tuple[np.ndarray, np.ndarray]:
    """Surface-cover fractions of the city with the variant's unsealing and green roofs, and the
    share of each cell that is green roof."""
    from twin.heat.surface import COVERS

    f = np.array(cover_fractions(setup.landcover, setup.classes, setup.building_height,
                                 setup.canopy_cover), dtype=float)  # fmt: skip
    paved, roof, grass = COVERS.index("paved"), COVERS.index("roof"), COVERS.index("grass")
    moved = f[paved] * setup.unseal
    f[paved] -= moved
    f[grass] += moved
    green = f[roof] * setup.green_roof
    f[roof] -= green
    f[grass] += green
    return f, green


def _stations_inside(setup: Any) -> dict[str, np.ndarray]:
    """The pack's climate stations inside the heat grid, the forcing's own station excluded."""
    st = setup.stations
    _, _, inside = setup.grid.index(st["x"], st["y"])
    keep = inside & (st["id"] != setup.scenario.config["forcing"]["station"])
    return {k: np.asarray(st[k])[keep] for k in ("id", "x", "y")}
