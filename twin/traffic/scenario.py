"""Traffic scenarios (`simulations/*.toml`): a baseline and variants over one demand, validated on load.

A variant overrides parts of the baseline's demand (deep merge) and/or sets its own controllers. Names of
streets, edges, junctions, gates, stops and lines are checked against the built net before SUMO starts, so
a typo gives one message naming the file, the key and what exists.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from twin.config import Field, load_toml, numbers, positive, validate
from twin.errors import ConfigError

BASELINE = "baseline"
EMISSION_MODELS = ("HBEFA4", "HBEFA3", "PHEMlight5")

# A weekday profile of motor traffic in a German city centre, as factors per local hour (0..23) of the
# hourly demand stated in a scenario (peak hour = 1.0). Shape after the typical double-peak day curve of
# urban counts (morning peak 7-8 h, afternoon peak 16-17 h); the values are synthetic, not Krefeld counts.
WEEKDAY_PROFILE = [
    0.08, 0.05, 0.04, 0.04, 0.07, 0.2, 0.55, 0.95, 1.0, 0.75, 0.65, 0.68,
    0.72, 0.7, 0.72, 0.82, 0.95, 1.0, 0.85, 0.6, 0.42, 0.3, 0.2, 0.13,
]  # fmt: skip
# Port lorry traffic: terminal gates open from 5 to 22 h, peaks in the morning and early afternoon.
FREIGHT_PROFILE = [
    0.0, 0.0, 0.0, 0.0, 0.05, 0.45, 0.85, 1.0, 0.95, 0.9, 0.85, 0.8,
    0.8, 0.9, 0.95, 0.85, 0.7, 0.55, 0.4, 0.3, 0.2, 0.1, 0.0, 0.0,
]  # fmt: skip
CYCLE_PROFILE = [
    0.03, 0.02, 0.01, 0.01, 0.03, 0.1, 0.4, 0.9, 1.0, 0.6, 0.5, 0.55,
    0.65, 0.6, 0.6, 0.75, 0.95, 1.0, 0.8, 0.55, 0.35, 0.2, 0.1, 0.05,
]  # fmt: skip

_HHMM = re.compile(r"^(\d{1,3}):([0-5]\d)$")


def parse_hhmm(text: str, *, what: str = "time") -> float:
    """'HH:MM' (hours may exceed 24) as seconds; a clear ConfigError otherwise."""
    m = _HHMM.match(str(text).strip())
    if not m:
        raise ConfigError(f"{what}: expected HH:MM (e.g. 01:30), got {text!r}")
    return int(m.group(1)) * 3600.0 + int(m.group(2)) * 60.0


def _hhmm_check(value: Any) -> str | None:
    return None if isinstance(value, str) and _HHMM.match(value.strip()) else "HH:MM (e.g. 02:00)"


def _profile_check(value: Any) -> str | None:
    bad = numbers(24)(value)
    if bad:
        return "an array of 24 hourly factors (local hours 0..23)"
    return None if all(v >= 0 for v in value) else "24 factors that are not negative"


def _share(value: Any) -> str | None:
    return None if 0.0 <= value <= 1.0 else "a share from 0 to 1"


def _not_negative(value: Any) -> str | None:
    return None if value >= 0 else "zero or more"


def _strings(value: Any) -> str | None:
    ok = isinstance(value, list) and all(isinstance(v, str) and v for v in value)
    return None if ok else "an array of names (strings)"


def _seeds(value: Any) -> str | None:
    ok = (
        isinstance(value, list)
        and value
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**31 for v in value)
    )
    return None if ok and len(set(value)) == len(value) else "an array of distinct integers >= 0"


# A line by `ref` alone is a line of the net (its OSM route relations) or, where the net has none, of
# the fallback table; with `stops` (and `mode`) it is the scenario's own line on those stop names.
_LINE = {
    "ref": Field(str, doc="line number, e.g. '041'"),
    "headway_min": Field(float, required=False, default=None, check=positive),
    "mode": Field(str, required=False, default=None, choices=("bus", "tram")),
    "stops": Field(
        list,
        required=False,
        default=None,
        check=_strings,
        doc="stop names in order (one direction)",
    ),
    "name": Field(str, required=False, default=""),
    "both_directions": Field(bool, required=False, default=True),
}

DEMAND_SCHEMA: dict[str, Field] = {
    "background": Field(
        required=False,
        default=None,
        schema={
            "cars_per_hour": Field(float, check=_not_negative, doc="car trips per peak hour"),
            "profile": Field(list, required=False, default=WEEKDAY_PROFILE, check=_profile_check),
            "fringe_factor": Field(float, required=False, default=5.0, check=positive),
            "min_distance_m": Field(float, required=False, default=300.0, check=_not_negative),
        },
    ),
    "cyclists": Field(
        required=False,
        default=None,
        schema={
            "per_hour": Field(float, check=_not_negative),
            "profile": Field(list, required=False, default=CYCLE_PROFILE, check=_profile_check),
            "min_distance_m": Field(float, required=False, default=400.0, check=_not_negative),
            "max_distance_m": Field(float, required=False, default=4000.0, check=positive),
        },
    ),
    "transit": Field(
        required=False,
        default=None,
        schema={
            "lines": Field(items=_LINE, required=False, default=None),
            "headway_min": Field(float, required=False, default=10.0, check=positive),
            "stop_duration_s": Field(float, required=False, default=20.0, check=positive),
        },
    ),
    "trucks": Field(
        required=False,
        default=None,
        schema={
            "per_day": Field(float, check=_not_negative, doc="lorry trips per day at the gates"),
            "profile": Field(list, required=False, default=FREIGHT_PROFILE, check=_profile_check),
            "inbound_share": Field(float, required=False, default=0.5, check=_share),
            "gates": Field(list, required=False, default=None, check=_strings),
            "gate_service_s": Field(float, required=False, default=75.0, check=positive),
            "gate_service_sd_s": Field(float, required=False, default=25.0, check=_not_negative),
            "routing": Field(str, required=False, default="free", choices=("free", "network")),
            "network_refs": Field(list, required=False, default=[], check=_strings),
            "network_streets": Field(list, required=False, default=[], check=_strings),
            "network_types": Field(
                list,
                required=False,
                default=["motorway", "motorway_link", "trunk", "trunk_link", "primary"],
                check=_strings,
            ),
            "network_penalty": Field(float, required=False, default=5.0, check=positive),
            "slot_booking": Field(bool, required=False, default=False),
            "slot_minutes": Field(float, required=False, default=30.0, check=positive),
            "slot_capacity": Field(int, required=False, default=0, check=_not_negative),
        },
    ),
    "zone": Field(
        required=False,
        default=None,
        schema={
            "streets": Field(list, check=_strings, doc="streets of the restricted zone"),
            "through_per_hour": Field(float, required=False, default=0.0, check=_not_negative),
            "delivery_per_hour": Field(float, required=False, default=0.0, check=_not_negative),
            "taxi_per_hour": Field(float, required=False, default=0.0, check=_not_negative),
            "delivery_stop_s": Field(float, required=False, default=180.0, check=positive),
        },
    ),
}

DEFAULT_OCCUPANCY = {
    "car": 1.3,
    "taxi": 1.5,
    "delivery": 1.1,
    "truck": 1.0,
    "bus": 25.0,
    "tram": 60.0,
    "bike": 1.0,
}

_SCENARIO = {
    "name": Field(str, required=False, default=""),
    "title": Field(str),
    "description": Field(str, required=False, default=""),
    "start": Field(
        datetime, doc="UTC start as a TOML date-time with offset, e.g. 2026-03-10T06:00:00Z"
    ),
    "duration": Field(str, check=_hhmm_check, doc="simulated time as HH:MM"),
    "warmup": Field(str, required=False, default="00:00", check=_hhmm_check),
    "seeds": Field(list, check=_seeds),
    "step_length": Field(float, required=False, default=1.0, check=positive),
    "timezone": Field(str, required=False, default="Europe/Berlin"),
    "emission_model": Field(str, required=False, default="HBEFA4", choices=EMISSION_MODELS),
    "teleport_s": Field(float, required=False, default=300.0, check=positive),
}

_KPIS = {
    "occupancy": Field(dict, required=False, default=None),
    "punctual_early_s": Field(float, required=False, default=60.0, check=_not_negative),
    "punctual_late_s": Field(float, required=False, default=180.0, check=_not_negative),
}

_VARIANT = {
    "label": Field(str, required=False, default=""),
    "description": Field(str, required=False, default=""),
    "demand": Field(dict, required=False, default=None),
    "controllers": Field(list, required=False, default=None),
}

_TOP = {
    "scenario": Field(schema=_SCENARIO),
    "demand": Field(dict, required=False, default=None),
    "kpis": Field(schema=_KPIS, required=False, default=None),
    "baseline": Field(schema=_VARIANT, required=False, default=None),
    "variants": Field(dict, required=False, default=None),
}


@dataclass
class Variant:
    """One variant of a scenario: its full demand (after merging) and its controllers."""

    name: str
    label: str
    description: str
    demand: dict[str, Any]
    controllers: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Scenario:
    """A validated traffic scenario: timing, seeds, KPI settings and variants (baseline first)."""

    file: Path
    name: str
    title: str
    description: str
    start_utc: datetime
    duration_s: float
    warmup_s: float
    seeds: list[int]
    step_length: float
    timezone: str
    emission_model: str
    teleport_s: float
    occupancy: dict[str, float]
    punctual_window_s: tuple[float, float]
    variants: dict[str, Variant]
    sumocfg: Path | None = None

    @property
    def baseline(self) -> Variant:
        """The variant every other one is compared with."""
        return self.variants[BASELINE]

    def seeds_for(self, n: int | None) -> list[int]:
        """The first `n` seeds (more than listed continue the last one by +1, deterministically)."""
        if n is None:
            return list(self.seeds)
        if n < 1:
            raise ConfigError(f"--seeds must be at least 1, got {n}")
        seeds = list(self.seeds[:n])
        while len(seeds) < n:
            seeds.append(seeds[-1] + 1)
        return seeds

    @property
    def origin_utc(self) -> datetime:
        """UTC time of simulation time 0: the start less the warm-up."""
        return self.start_utc - timedelta(seconds=self.warmup_s)

    def local_hour(self, t: float) -> int:
        """Local hour of day (0..23) at simulation time `t` (seconds after `origin_utc`)."""
        return (self.origin_utc + timedelta(seconds=t)).astimezone(ZoneInfo(self.timezone)).hour

    def variant(self, name: str) -> Variant:
        """A variant by name; an unknown one gives a ConfigError listing those that exist."""
        if name not in self.variants:
            raise ConfigError(
                f"{self.file}: no variant '{name}'{_hint(name, self.variants)}; "
                f"variants: {', '.join(self.variants)}"
            )
        return self.variants[name]


def _hint(name: str, known: Mapping[str, Any] | list[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _check_known_keys(
    data: Mapping[str, Any], schema: Mapping[str, Field], *, file: Path, where: str
) -> None:
    for key, value in data.items():
        if key not in schema:
            raise ConfigError(
                f"{file}: unknown key '{where}{key}'{_hint(key, schema)}; "
                f"expected one of: {', '.join(sorted(schema))}"
            )
        sub = schema[key].schema
        if sub is not None and isinstance(value, Mapping):
            _check_known_keys(value, sub, file=file, where=f"{where}{key}.")


def validate_demand(data: Mapping[str, Any], *, file: Path, where: str) -> dict[str, Any]:
    """Validate a demand table (every part optional); returns it with defaults filled in."""
    _check_known_keys(data, DEMAND_SCHEMA, file=file, where=where)
    out = validate(_drop_none(data), DEMAND_SCHEMA, file=file, where=where)
    lines = (out.get("transit") or {}).get("lines") or []
    seen: set[tuple[str, str | None]] = set()
    for i, line in enumerate(lines):
        at = f"{where}transit.lines[{i}]"
        if line["stops"] is not None and line["mode"] is None:
            raise ConfigError(
                f"{file}: '{at}.mode': a line with its own stops needs a mode (bus or tram)"
            )
        if (line["ref"], line["mode"]) in seen:
            raise ConfigError(f"{file}: '{at}.ref': line '{line['ref']}' is named twice")
        seen.add((line["ref"], line["mode"]))
    return {k: v for k, v in out.items() if v is not None}


def _drop_none(data: Any) -> Any:
    """A copy without keys whose value is None (defaults filled in by an earlier validation)."""
    if isinstance(data, list):
        return [_drop_none(v) for v in data]
    if not isinstance(data, Mapping):
        return data
    return {k: _drop_none(v) for k, v in data.items() if v is not None}


def _controllers(value: Any, *, file: Path, where: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(c, dict) for c in value):
        raise ConfigError(f"{file}: '{where}' must be an array of tables ([[...controllers]])")
    from twin.traffic.controllers import CONTROLLER_TYPES  # the kinds the controllers provide

    for i, spec in enumerate(value):
        kind = spec.get("type")
        if kind not in CONTROLLER_TYPES:
            raise ConfigError(
                f"{file}: '{where}[{i}].type' must be one of {', '.join(sorted(CONTROLLER_TYPES))}, "
                f"got {kind!r}"
            )
    return copy.deepcopy(value)


def load_scenario(path: str | Path) -> Scenario:
    """Load and validate a scenario TOML file (one clear ConfigError naming file and key otherwise)."""
    path = Path(path)
    raw = load_toml(path)
    cfg = validate(raw, _TOP, file=path)
    sc = cfg["scenario"]
    start = sc["start"]
    if start.tzinfo is None:
        raise ConfigError(
            f"{path}: 'scenario.start' must carry a UTC offset (e.g. 2026-03-10T06:00:00Z), got {start}"
        )
    try:
        ZoneInfo(sc["timezone"])
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{path}: 'scenario.timezone' must be an IANA zone such as 'Europe/Berlin', "
            f"got {sc['timezone']!r}"
        ) from None
    duration = parse_hhmm(sc["duration"], what=f"{path}: 'scenario.duration'")
    if duration <= 0:
        raise ConfigError(f"{path}: 'scenario.duration' must be longer than 00:00")
    base_demand = validate_demand(cfg["demand"] or {}, file=path, where="demand.")
    kp = cfg["kpis"] or validate({}, _KPIS, file=path, where="kpis.")
    occupancy = dict(DEFAULT_OCCUPANCY)
    for key, value in (kp["occupancy"] or {}).items():
        if key not in DEFAULT_OCCUPANCY:
            raise ConfigError(
                f"{path}: unknown key 'kpis.occupancy.{key}'{_hint(key, DEFAULT_OCCUPANCY)}; "
                f"expected one of: {', '.join(DEFAULT_OCCUPANCY)}"
            )
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"{path}: 'kpis.occupancy.{key}' must be a number > 0, got {value!r}")
        occupancy[key] = float(value)
    base = cfg["baseline"] or validate({}, _VARIANT, file=path, where="baseline.")
    if base["demand"]:
        raise ConfigError(f"{path}: 'baseline.demand': the baseline's demand is the [demand] table")
    variants = {
        BASELINE: Variant(
            name=BASELINE,
            label=base["label"] or "Baseline",
            description=base["description"],
            demand=base_demand,
            controllers=_controllers(
                base["controllers"] or [], file=path, where="baseline.controllers"
            ),
        )
    }
    for name, spec in (cfg["variants"] or {}).items():
        where = f"variants.{name}."
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name) or name == BASELINE:
            raise ConfigError(
                f"{path}: variant name '{name}' must be letters, digits, '-' or '_' (and not 'baseline')"
            )
        if not isinstance(spec, dict):
            raise ConfigError(f"{path}: '{where[:-1]}' must be a table")
        v = validate(spec, _VARIANT, file=path, where=where)
        override = v["demand"] or {}
        _check_known_keys(override, DEMAND_SCHEMA, file=path, where=f"{where}demand.")
        demand = validate_demand(_merge(base_demand, override), file=path, where=f"{where}demand.")
        controllers = (
            _controllers(v["controllers"], file=path, where=f"{where}controllers")
            if v["controllers"] is not None
            else copy.deepcopy(variants[BASELINE].controllers)
        )
        variants[name] = Variant(name, v["label"] or name, v["description"], demand, controllers)
    return Scenario(
        file=path,
        name=sc["name"] or path.stem,
        title=sc["title"],
        description=sc["description"],
        start_utc=start.astimezone(UTC),
        duration_s=duration,
        warmup_s=parse_hhmm(sc["warmup"], what=f"{path}: 'scenario.warmup'"),
        seeds=list(sc["seeds"]),
        step_length=sc["step_length"],
        timezone=sc["timezone"],
        emission_model=sc["emission_model"],
        teleport_s=sc["teleport_s"],
        occupancy=occupancy,
        punctual_window_s=(kp["punctual_early_s"], kp["punctual_late_s"]),
        variants=variants,
    )


def sumocfg_scenario(
    cfg: Path, *, junctions: list[str] | None, duration_s: float | None, seeds: list[int]
) -> Scenario:
    """A scenario around an existing SUMO config: its own demand, baseline vs. conditional transit
    priority (the controller's defaults: late buses and every tram, one intervention per cycle,
    compensation), checked by the safety monitor."""
    cfg = Path(cfg)
    if not cfg.is_file():
        raise ConfigError(f"{cfg}: SUMO configuration not found")
    spec: dict[str, Any] = {"type": "transit_priority", "junctions": junctions or "auto"}
    monitor: dict[str, Any] = {"type": "safety_monitor"}
    return Scenario(
        file=cfg,
        name=cfg.parent.name or cfg.stem,
        title=f"Transit signal priority on {cfg.parent.name}/{cfg.name}",
        description="An existing SUMO scenario run as it is (baseline) and with conditional "
        "bus/tram priority on the signals its buses and trams pass.",
        start_utc=datetime(2026, 1, 1, tzinfo=UTC),
        duration_s=duration_s or 3600.0,
        warmup_s=0.0,
        seeds=seeds,
        step_length=1.0,
        timezone="UTC",
        emission_model="as in the scenario's vehicle types",
        teleport_s=300.0,
        occupancy=dict(DEFAULT_OCCUPANCY),
        punctual_window_s=(60.0, 180.0),
        variants={
            BASELINE: Variant(BASELINE, "As given (no priority)", "", {}, []),
            "priority": Variant(
                "priority", "Conditional transit priority", "", {}, [spec, monitor]
            ),
        },
        sumocfg=cfg,
    )


def find_scenario(name_or_path: str, folder: Path) -> Path:
    """A scenario file from a path or a name in `folder` (simulations/)."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise ConfigError(f"{p}: scenario file not found")
        return p
    candidate = folder / f"{name_or_path}.toml"
    if candidate.is_file():
        return candidate
    known = sorted(f.stem for f in folder.glob("*.toml")) if folder.is_dir() else []
    raise ConfigError(
        f"no scenario '{name_or_path}' in {folder}{_hint(name_or_path, known)}; "
        f"known: {', '.join(known) or 'none'}"
    )


# -- checks against the built net ----------------------------------------------------------------------


@dataclass
class NetIndex:
    """Names and ids of a built net the scenario may refer to."""

    edges: set[str]
    junctions: set[str]
    signals: set[str]
    streets: dict[str, list[str]]  # street name -> edge ids
    signal_streets: dict[str, set[str]]  # street name -> ids of signals controlling its edges
    gates: list[str]
    stops: dict[str, list[str]]  # stop name -> stop ids
    lines: dict[str, set[str]] | None = None  # line ref -> modes (the net's lines; None: unknown)


def net_index(
    net: Any,
    *,
    gates: list[str] = (),
    stops: dict[str, list[str]] | None = None,
    lines: list[dict[str, Any]] | None = None,
) -> NetIndex:
    """Collect what a scenario may name from a sumolib net (`lines`: `demand.read_lines`)."""
    streets: dict[str, list[str]] = {}
    signal_streets: dict[str, set[str]] = {}
    for edge in net.getEdges():
        if edge.getFunction():
            continue
        name = edge.getName()
        if name:
            streets.setdefault(name, []).append(edge.getID())
    for tls in net.getTrafficLights():
        for edge in tls.getEdges():
            if edge.getName():
                signal_streets.setdefault(edge.getName(), set()).add(tls.getID())
    return NetIndex(
        edges={e.getID() for e in net.getEdges()},
        junctions={n.getID() for n in net.getNodes()},
        signals={t.getID() for t in net.getTrafficLights()},
        streets={k: sorted(v) for k, v in streets.items()},
        signal_streets=signal_streets,
        gates=list(gates),
        stops=dict(stops or {}),
        lines=None if lines is None else _line_modes(lines),
    )


def built_net_index(products: Path) -> tuple[Any, NetIndex]:
    """The built net of a build folder (sumolib) and what a scenario may name in it: its streets,
    signals, gates (netfacts), stops (ptstops) and lines (ptlines). A missing product is a
    ConfigError naming it."""
    from twin.traffic.demand import read_lines, read_stops
    from twin.traffic.network import (
        FACTS_FILE,
        NET_FILE,
        PTLINES_FILE,
        PTSTOPS_FILE,
        NetworkFacts,
        read_net,
    )

    for f in (products / NET_FILE, products / FACTS_FILE, products / PTSTOPS_FILE):
        if not f.exists():
            raise ConfigError(f"{f}: not built; run `twin data build` first")
    facts = NetworkFacts.from_json(products / FACTS_FILE)
    stops = {k: [s["id"] for s in v] for k, v in read_stops(products / PTSTOPS_FILE).items()}
    net = read_net(products / NET_FILE)
    lines = read_lines(products / PTLINES_FILE)
    return net, net_index(net, gates=[g.name for g in facts.gates], stops=stops, lines=lines)


def _line_modes(lines: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Line ref -> modes of the bus and tram lines a net provides."""
    out: dict[str, set[str]] = {}
    for ln in lines:
        if ln["mode"]:
            out.setdefault(ln["ref"], set()).add(ln["mode"])
    return out


def _unknown(
    file: Path, key: str, what: str, name: str, known: list[str] | set[str]
) -> ConfigError:
    known = sorted(known)
    listed = ", ".join(known[:12]) + (" ..." if len(known) > 12 else "")
    return ConfigError(
        f"{file}: '{key}': unknown {what} '{name}'{_hint(name, known)}; known: {listed}"
    )


def resolve_controllers(
    specs: list[dict[str, Any]], index: NetIndex, *, file: Path, where: str
) -> list[dict[str, Any]]:
    """Controller specs with street selectors turned into ids, every id checked against the net.

    `corridor_streets` -> `junctions` (signals on those streets; the bike green wave keeps the names
    too); `zone_streets` -> `zone_edges`. Each resolved spec is then checked by its controller's
    own parameter rules, so `twin traffic check` refuses every value a run would refuse.
    """
    from twin.traffic.controllers import check_spec, is_gate

    out = []
    for i, spec in enumerate(specs):
        spec = copy.deepcopy(spec)
        at = f"{where}[{i}]"
        streets = spec.pop("corridor_streets", None)
        if streets is not None:
            found: set[str] = set()
            for s in streets:
                if s not in index.signal_streets:
                    raise _unknown(
                        file, f"{at}.corridor_streets", "signalised street", s, index.signal_streets
                    )
                found |= index.signal_streets[s]
            given = spec.get("junctions")
            spec["junctions"] = sorted(found | set(given if isinstance(given, list) else []))
            if spec.get("type") == "bike_green_wave":
                spec["corridor_streets"] = list(streets)  # it follows the streets between signals
        zone = spec.pop("zone_streets", None)
        if zone is not None:
            edges: list[str] = list(spec.get("zone_edges", []))
            for s in zone:
                if s not in index.streets:
                    raise _unknown(file, f"{at}.zone_streets", "street", s, index.streets)
                edges.extend(index.streets[s])
            spec["zone_edges"] = sorted(set(edges))
        for key, value in spec.items():
            if key == "junctions" and isinstance(value, list):
                for j in value:
                    if j not in index.signals:
                        raise _unknown(
                            file, f"{at}.junctions", "signalised junction", j, index.signals
                        )
            elif key.endswith("edges") and isinstance(value, list):
                for e in value:
                    if e not in index.edges:
                        raise _unknown(file, f"{at}.{key}", "edge", e, index.edges)
            elif key == "gates" and isinstance(value, list):
                for g in value:
                    if not isinstance(g, str) or not is_gate(g, index.edges):
                        raise _unknown(file, f"{at}.gates", "edge or lane", g, index.edges)
        check_spec(spec, where=f"{file}: '{at}'")  # the controller's own rules on its values
        out.append(spec)
    return out


def check_demand(demand: Mapping[str, Any], index: NetIndex, *, file: Path, where: str) -> None:
    """Every street, gate and stop named in a demand exists in the net."""
    zone = demand.get("zone")
    if zone:
        for s in zone["streets"]:
            if s not in index.streets:
                raise _unknown(file, f"{where}zone.streets", "street", s, index.streets)
    trucks = demand.get("trucks")
    if trucks and trucks["per_day"] > 0:
        if not index.gates:
            raise ConfigError(
                f"{file}: '{where}trucks': the net has no terminal gates (OSM barrier=gate)"
            )
        for g in trucks["gates"] or []:
            if g not in index.gates:
                raise _unknown(file, f"{where}trucks.gates", "gate", g, index.gates)
        for s in trucks["network_streets"]:
            if s not in index.streets:
                raise _unknown(file, f"{where}trucks.network_streets", "street", s, index.streets)
    transit = demand.get("transit")
    if transit is not None:
        _check_transit(transit, index, file=file, where=f"{where}transit.")


def _check_transit(transit: Mapping[str, Any], index: NetIndex, *, file: Path, where: str) -> None:
    """Stops of a scenario's own lines, refs of the net's lines and, where the net has no lines,
    the fallback table's stops (see `demand.transit_lines`) exist in the net."""
    from twin.traffic.demand import DEFAULT_LINES, check_stop_names

    every = transit.get("lines") is None  # no lines named: all lines of the net (or the table)
    lines = transit.get("lines") or []
    for i, line in enumerate(lines):
        if line.get("stops"):
            check_stop_names(
                line["ref"], line["stops"], index.stops, where=f"{file}: '{where}lines[{i}].stops'"
            )
    if index.lines is None:
        return  # the net's lines are not known here; the demand checks them when it is built
    by_ref = index.lines
    if not by_ref:  # no route relations: the fallback table
        by_ref = {ln["ref"]: {ln["mode"]} for ln in DEFAULT_LINES}
        named = {ln["ref"] for ln in lines if not ln.get("stops")}
        for ln in DEFAULT_LINES:
            if every or ln["ref"] in named:
                check_stop_names(
                    ln["ref"], ln["stops"], index.stops,
                    where=f"{file}: '{where}lines': the fallback line table (no route relations in the net)",
                )  # fmt: skip
    for i, line in enumerate(lines):
        if line.get("stops"):
            continue
        modes = by_ref.get(line["ref"], set())
        if not modes or (line.get("mode") and line["mode"] not in modes):
            raise _unknown(file, f"{where}lines[{i}].ref", "line", line["ref"], by_ref)


def check_scenario(scenario: Scenario, index: NetIndex) -> dict[str, list[dict[str, Any]]]:
    """Check every variant against the net; return each variant's resolved controller specs."""
    resolved = {}
    for name, v in scenario.variants.items():
        where = "baseline." if name == BASELINE else f"variants.{name}."
        check_demand(
            v.demand,
            index,
            file=scenario.file,
            where="demand." if name == BASELINE else f"{where}demand.",
        )
        resolved[name] = resolve_controllers(
            v.controllers, index, file=scenario.file, where=f"{where}controllers"
        )
    return resolved
