"""`twin run SCENARIO.toml`: a coupled scenario, its models driven by one Coupler, one run folder.

A coupled scenario names its models, each with its own scenario file and settings, and the fields
they exchange (see ``simulations/krefeld-coupled.toml``, where every key is documented)::

    [scenario]     name, title, start (UTC), end (a duration from the start or a UTC time)
    [models.sensors]      the readings: replay (a JSONL uplink file), store, simulate = {seed},
                          or source = "mqtt://host:port" (live, the clock following the readings)
    [models.groundwater]  scenario = "groundwater-today.toml", time_step_hours = 1
    [models.traffic]      scenario = "bus-bike-priority", variant, seed, window, warmup
    [[exchange]]          from = "sensors.groundwater_head", to = "groundwater.observed_head",
                          transform = "by_id" (optional, from TRANSFORMS)

The run folder comes from the run layer (``runs/<scenario>/<stamp>/``, kind "coupled") with a
subfolder per model named after it, holding what that model's stand-alone run writes
(``groundwater/head_end.tif``, ``traffic/kpis.csv``, ``sensors/sensors.sqlite``), the coupled
report (``report.html``) and, with ``--checkpoint-every``, ``checkpoints/`` from which
``twin run --resume RUN`` continues a run that was interrupted or failed.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from twin import runs
from twin.config import Field, load_toml, validate
from twin.core import Clock, Coupler, format_utc, parse_utc
from twin.errors import ConfigError, TwinError
from twin.progress import Progress, as_progress

KIND = "coupled"
CHECKPOINTS = "checkpoints"
MODELS = ("sensors", "groundwater", "traffic", "heat")  # the model kinds a coupled run may hold
OPTIONS = "options"  # status.json key: what the run was started with (for --resume)


def _utc(value: Any) -> str | None:
    try:
        parse_utc(value)
    except TwinError:
        return "an ISO 8601 UTC time such as '2024-03-01T06:00:00Z'"
    return None


def _positive(value: Any) -> str | None:
    return None if value > 0 else "a positive number of seconds"


SCHEMA: dict[str, Field] = {
    "scenario": Field(schema={
        "name": Field(str),
        "title": Field(str, required=False, default=""),
        "description": Field(str, required=False, default=""),
        "start": Field(str, check=_utc, doc="UTC"),
        "end": Field(str, doc="a duration from the start (6h, 2d, HH:MM) or an ISO 8601 UTC time"),
    }),
    "models": Field(schema={
        "sensors": Field(required=False, schema={
            "replay": Field(str, required=False, doc="a JSONL file of uplinks"),
            "store": Field(str, required=False, doc="an existing sensor store (SQLite)"),
            "source": Field(str, required=False,
                            doc="mqtt://host:port[?topic=...]: readings ingested live"),
            "simulate": Field(required=False, schema={
                "seed": Field(int, required=False, default=1),
                "lead": Field(str, required=False, default="1h"),
                "format": Field(str, required=False, default="tts", choices=("tts", "chirpstack")),
                "clean": Field(bool, required=False, default=True),
            }),
            "quantities": Field(list, required=False, default=["groundwater_head"]),
            "time_step_s": Field(float, required=False, default=900.0),
            "max_age_s": Field(float, required=False, default=10800.0),
            "gap_s": Field(float, required=False, default=3600.0),
            "wait_s": Field(float, required=False, default=1800.0, check=_positive,
                            doc="live: wall-clock seconds to wait for a newer reading"),
            "connect_timeout_s": Field(float, required=False, default=10.0, check=_positive),
        }),
        "groundwater": Field(required=False, schema={
            "scenario": Field(str, doc="a ground-water scenario TOML, relative to this file"),
            "time_step_hours": Field(float, required=False, doc="overrides the scenario's"),
        }),
        "traffic": Field(required=False, schema={
            "scenario": Field(str, doc="a traffic scenario: a name in this folder or a path"),
            "variant": Field(str, required=False, default="baseline"),
            "seed": Field(int, required=False),
            "window": Field(str, required=False, doc="traffic runs this long from the start"),
            "warmup": Field(str, required=False, doc="overrides the scenario's warm-up"),
            "coupling_step": Field(str, required=False, default="60s",
                                   doc="how often the coupler meets it (SUMO steps its own)"),
        }),
        "heat": Field(required=False, schema={
            "scenario": Field(str, doc="a heat scenario TOML, relative to this file"),
            "variant": Field(str, required=False, default="baseline"),
            "time_step_s": Field(float, required=False, doc="overrides the scenario's"),
            "extent": Field(list, required=False, doc="overrides the scenario's grid extent"),
        }),
    }),
    "exchange": Field(required=False, default=[], items={
        "from": Field(str, doc="model.output"),
        "to": Field(str, doc="model.input"),
        "transform": Field(str, required=False),
    }),
}  # fmt: skip


@dataclass
class CoupledScenario:
    """A validated coupled scenario file."""

    path: Path
    config: dict[str, Any]

    @property
    def name(self) -> str:
        """The scenario's name (the folder of its runs)."""
        return self.config["scenario"]["name"]

    @property
    def models(self) -> dict[str, dict[str, Any]]:
        """The models' sections, in the order sensors, ground water, traffic (those present)."""
        given = self.config["models"]
        return {k: given[k] for k in MODELS if given.get(k)}

    def resolve(self, relative: str) -> Path:
        """A path given in the file, relative to the file's folder."""
        p = Path(relative).expanduser()
        return p if p.is_absolute() else self.path.parent / p

    def clock(self, end: str | None = None) -> Clock:
        """The run's clock: the scenario's start to its end (or ``end``, by the one --end rule)."""
        from twin.core.clock import parse_end

        sc = self.config["scenario"]
        start = parse_utc(sc["start"])
        field_name = "--end" if end else f"{self.path}: 'scenario.end'"
        try:
            return Clock(start, parse_end(end or sc["end"], start, field=field_name))
        except TwinError as exc:
            raise ConfigError(str(exc)) from None


def load(path: str | Path) -> CoupledScenario:
    """Read and validate a coupled scenario; a bad file raises one ConfigError naming the key."""
    path = Path(path)
    data = load_toml(path)
    cfg = validate(data, SCHEMA, file=path)
    models = cfg["models"]
    if not any(models.get(k) for k in MODELS):
        raise ConfigError(f"{path}: 'models': name at least one of {', '.join(MODELS)}")
    sensors = models.get("sensors")
    if sensors:
        given = [k for k in ("replay", "store", "source", "simulate") if sensors.get(k) is not None]
        if len(given) > 1:
            raise ConfigError(
                f"{path}: 'models.sensors': give one of replay, store, source or simulate, "
                f"not {' and '.join(given)}"
            )
        if sensors.get("source") is not None:
            from twin.app.live import check_source

            check_source(sensors["source"], path)
        if not given:
            sensors["simulate"] = validate({}, SCHEMA["models"].schema["sensors"].schema["simulate"]
                                           .schema, file=path)  # fmt: skip
    sc = CoupledScenario(path, cfg)
    sc.clock()  # start and end checked now
    for i, ex in enumerate(cfg["exchange"]):
        for key in ("from", "to"):
            model, _, var = ex[key].partition(".")
            if model not in sc.models or not var:
                raise ConfigError(
                    f"{path}: 'exchange[{i}].{key}': expected 'model.variable' with a model of "
                    f"this scenario ({', '.join(sc.models)}), got {ex[key]!r}"
                )
        if ex.get("transform") is not None and ex["transform"] not in TRANSFORMS:
            raise ConfigError(
                f"{path}: 'exchange[{i}].transform': expected one of {', '.join(TRANSFORMS)}, "
                f"got {ex['transform']!r}"
            )
    return sc


# -- transforms: the named conversions an exchange may declare ------------------------------------


def _point_ids(model: Any, name: str) -> list[str]:
    """The ids of the points a variable lives on: a sensor feed's devices or a model's wells."""
    if hasattr(model, "device_ids"):
        return list(model.device_ids(name.split("_weight")[0].split("_quality")[0]))
    wells = getattr(model, "wells", None)
    if wells is not None:
        return [str(w) for w in wells["id"]]
    raise ConfigError(f"transform 'by_id': model {model.name!r} has no ids for {name!r}")


def _by_id(source: Any, output: str, target: Any, input_: str) -> Callable:
    """Points matched by id (a feed's devices -> a model's wells); a missing one is NaN, or 0 for
    a weight."""
    from twin.core.transforms import by_id

    spec = target.input_variable(input_)
    fill = 0.0 if spec.standard_name.endswith("_weight") else math.nan
    return by_id(_point_ids(source, output), _point_ids(target, input_), fill)


def _regrid(source: Any, output: str, target: Any, input_: str) -> Callable:
    """A raster onto the target's raster grid (bilinear; NaN outside the source)."""
    from twin.core.transforms import regrid

    return regrid(source.output_variable(output).grid, target.input_variable(input_).grid)


TRANSFORMS: dict[str, Callable[[Any, str, Any, str], Callable]] = {"by_id": _by_id,
                                                                   "regrid": _regrid}  # fmt: skip
"""Transforms an exchange may name: each builds the link's function from its two ends."""


# -- the run's models ------------------------------------------------------------------------------


@dataclass
class Options:
    """What a run was started with (kept in status.json, so --resume starts the same run)."""

    end: str | None = None
    readings: str | None = None
    checkpoint_every: str | None = None
    pack: str | None = None
    build_dir: str = "build"


@dataclass
class Parts:
    """The models of one run as built, with what their outputs need afterwards."""

    coupler: Coupler
    folder: Path
    clock: Clock
    readings: dict[str, Any] = field(default_factory=dict)
    groundwater: Any = None  # twin.app.coupled_report.GroundwaterPart
    traffic: Any = None  # twin.app.coupled_report.TrafficPart
    heat: Any = None  # twin.app.coupled_report.HeatPart
    feed: Any = None  # the SensorFeed
    stops: list[float] = field(default_factory=list)  # checkpoint times (s)


def _seconds(text: str, start: datetime, what: str) -> float:
    from twin.core.clock import parse_end

    try:
        return (parse_end(text, start, field=what) - start).total_seconds()
    except TwinError as exc:
        raise ConfigError(str(exc)) from None


def _pack(scenario: CoupledScenario, options: Options):
    from twin.app.pack import resolve_pack

    return resolve_pack(options.pack)


def _sensors(sc: CoupledScenario, options: Options, clock: Clock, folder: Path, parts: Parts,
             pack: Any) -> None:  # fmt: skip
    """The sensor feed: a replayed uplink file (given, or simulated now) or an existing store."""
    from twin.sensors.devices import pack_catalogue
    from twin.sensors.feed import SensorFeed

    cfg = sc.models["sensors"]
    out = folder / "sensors"
    out.mkdir(exist_ok=True)
    feed_cfg: dict[str, Any] = {"quantities": list(cfg["quantities"]),
                                "time_step": cfg["time_step_s"], "max_age_s": cfg["max_age_s"],
                                "gap_s": cfg["gap_s"]}  # fmt: skip
    if cfg.get("source") and not options.readings:
        _live(sc, cfg, feed_cfg, folder, parts, pack)
        return
    if cfg.get("store") and not options.readings:
        store = sc.resolve(cfg["store"])
        if not store.is_file():
            raise ConfigError(f"{sc.path}: 'models.sensors.store': no sensor store at {store}")
        feed_cfg["store"] = str(store)
        parts.readings = {"source": f"sensor store {store}", "kind": "store", "path": str(store)}
    else:
        catalogue = pack_catalogue(pack, parking=False)
        store = out / "sensors.sqlite"
        if options.readings:
            path = Path(options.readings)
            source = f"replayed uplink file {path} (given with --readings)"
        elif cfg.get("replay"):
            path = sc.resolve(cfg["replay"])
            source = f"replayed uplink file {path}"
        else:
            sim = cfg["simulate"]
            path = out / "uplinks.jsonl"
            lead = _seconds(sim["lead"], clock.start, f"{sc.path}: 'models.sensors.simulate.lead'")
            base = _model_heads(parts)
            if not path.is_file():
                _simulate(path, catalogue, clock, lead, sim, base)
            around = ", heads around the ground-water model's steady state" if base else ""
            source = (f"replayed uplink file {path.name} (simulated stream: twin sensors "
                      f"simulate, seed {sim['seed']}, from {lead / 3600:g} h before the start"
                      f"{around})")  # fmt: skip
        if not path.is_file():
            raise ConfigError(f"--readings: no uplink file at {path}")
        feed_cfg.update(replay=str(path), catalogue=catalogue, store=str(store))
        shown = path.relative_to(folder) if path.is_relative_to(folder) else path
        parts.readings = {"source": source, "kind": "replay", "path": str(shown),
                          **window_counts(path, clock)}  # fmt: skip
    feed = SensorFeed()
    parts.coupler.add("sensors", feed, feed_cfg)
    parts.feed = feed


def _live(sc: CoupledScenario, cfg: dict[str, Any], feed_cfg: dict[str, Any], folder: Path,
          parts: Parts, pack: Any) -> None:  # fmt: skip
    """The live feed: an MQTT broker's stream ingested into the run-local store as the run goes on
    (twin.app.live); the persistent session is the run's own, so a resumed run gets what was
    queued for it."""
    from twin.app.live import LiveFeed, describe
    from twin.sensors.devices import pack_catalogue

    store = folder / "sensors" / "sensors.sqlite"
    feed_cfg.update(source=cfg["source"], catalogue=pack_catalogue(pack, parking=False),
                    store=str(store), wait_s=cfg["wait_s"],
                    connect_timeout_s=cfg["connect_timeout_s"],
                    client_id=f"twin-run-{sc.name}-{runs.stamp_of(folder)}")  # fmt: skip
    parts.readings = {"source": describe(cfg["source"]), "kind": "live",
                      "path": str(store.relative_to(folder))}  # fmt: skip
    feed = LiveFeed()
    try:
        parts.coupler.add("sensors", feed, feed_cfg)
    except ConfigError as exc:  # the broker could not be reached
        raise ConfigError(f"{sc.path}: 'models.sensors.source': {exc}") from None
    parts.feed = feed


def _model_heads(parts: Parts) -> dict[str, float] | None:
    """The ground-water model's steady heads at its logger wells, when the run has that model:
    a simulated stream around them starts from the model's aquifer, so the analyses show the
    stream's dynamics (river wave, pumping) instead of the offset between two invented aquifers."""
    gw = parts.groundwater
    if gw is None:
        return None
    ids = [str(w) for w in gw.model.wells["id"]]
    heads = [float(h) for h in gw.model.get_value("head_at_wells")]
    return {i: h for i, h in zip(ids, heads, strict=True) if math.isfinite(h)}


def _simulate(path: Path, catalogue: Any, clock: Clock, lead: float, sim: dict[str, Any],
              base_heads: dict[str, float] | None = None) -> None:  # fmt: skip
    """A simulated uplink stream of the wells over the run's window (as `twin sensors simulate`)."""
    from twin.sensors.devices import Catalogue
    from twin.sensors.profiles import DEFAULT_PROFILES, load_profiles
    from twin.sensors.simulate import simulate, stream

    wells = Catalogue(catalogue.of_kind("wells"))
    start = clock.start.timestamp() - lead
    minutes = (lead + (clock.duration or 0.0)) / 60.0
    events = simulate(wells, load_profiles(DEFAULT_PROFILES), start=start, minutes=minutes,
                      seed=sim["seed"], clean=sim["clean"], base_heads=base_heads)  # fmt: skip
    tmp = path.with_name(path.name + ".part")
    with tmp.open("wb") as f:
        for _, _, body in stream(events, sim["format"]):
            f.write(body + b"\n")
    tmp.replace(path)


def window_counts(path: Path, clock: Clock) -> dict[str, int]:
    """Messages of an uplink file before the run's start, inside its window and after its end.

    Those before the start are taken in at the start (the latest of them may be a device's
    reading then); those after the end are never taken in: both are counted, none dropped unseen.
    """
    from twin.sensors.replay import read_jsonl
    from twin.sensors.uplink import message_time

    start, end = clock.start.timestamp(), (clock.end or clock.start).timestamp()
    counts = {"messages": 0, "before_start": 0, "in_window": 0, "after_end": 0, "no_time": 0}
    for line in read_jsonl(path):
        counts["messages"] += 1
        try:
            t = message_time(json.loads(line))
        except (ValueError, TypeError, AttributeError):
            t = None
        if t is None or not math.isfinite(t):
            counts["no_time"] += 1
        elif t < start:
            counts["before_start"] += 1
        elif t > end:
            counts["after_end"] += 1
        else:
            counts["in_window"] += 1
    return counts


def build(sc: CoupledScenario, options: Options, folder: Path,
          progress: Progress | None = None) -> Parts:  # fmt: skip
    """Every model of the scenario added to one Coupler and linked; nothing stepped yet
    (``progress`` sees a stage per model set up)."""
    from twin.app.coupled_report import GroundwaterPart, HeatPart, TrafficPart

    progress = as_progress(progress)
    clock = sc.clock(options.end)
    coupler = Coupler(clock)
    parts = Parts(coupler, folder, clock)
    if options.checkpoint_every:
        every = _seconds(options.checkpoint_every, clock.start, "--checkpoint-every")
        n = int((clock.duration or 0.0) / every - 1e-9)
        parts.stops = [k * every for k in range(1, n + 1)]
    try:
        pack = _pack(sc, options)
        # the ground water before the sensors: a stream simulated for the run starts from its heads
        # and the heat model before traffic, whose waste heat goes onto the heat grid
        order = sorted(sc.models, key=lambda n: (n == "sensors" and "groundwater" in sc.models,
                                                 n == "traffic"))  # fmt: skip
        for name in order:
            progress.stage(f"setting up {name}")
            if name == "sensors":
                _sensors(sc, options, clock, folder, parts, pack)
            elif name == "groundwater":
                parts.groundwater = GroundwaterPart.add(sc, options, clock, folder, coupler, pack)
            elif name == "heat":
                parts.heat = HeatPart.add(sc, options, clock, folder, coupler, pack)
            elif name == "traffic":
                parts.traffic = TrafficPart.add(sc, options, clock, folder, coupler, pack, parts)
        for i, ex in enumerate(sc.config["exchange"]):
            src, out = ex["from"].split(".", 1)
            dst, inp = ex["to"].split(".", 1)
            transform = None
            if ex.get("transform"):
                models = coupler.models
                transform = TRANSFORMS[ex["transform"]](models[src], out, models[dst], inp)
            try:
                coupler.link((src, out), (dst, inp), transform)
            except TwinError as exc:
                raise ConfigError(f"{sc.path}: 'exchange[{i}]': {exc}") from None
    except BaseException:
        coupler.close()
        raise
    return parts


# -- running ---------------------------------------------------------------------------------------


def _checkpoint_path(folder: Path, clock: Clock, t: float) -> Path:
    stamp = clock.to_datetime(t).strftime("%Y%m%dT%H%M%SZ")
    return folder / CHECKPOINTS / f"{stamp}.npz"


def last_checkpoint(folder: Path) -> Path | None:
    """The latest complete checkpoint of a run folder, or None."""
    found = sorted(p for p in (Path(folder) / CHECKPOINTS).glob("*.npz") if p.name.count(".") == 1)
    return found[-1] if found else None


def _gaps(parts: Parts) -> list[dict[str, Any]]:
    """Stretches without readings: {start, end, quantities, wells} per outage (end None: open)."""
    if parts.feed is None:
        return []
    from twin.core.transforms import outages

    feed = parts.feed
    every = [d for q in feed._devices for d in feed.device_ids(q)]
    out = [
        {
            "start": o["start"],
            "end": o["end"],
            "quantities": list(feed._devices),
            "wells": len(every),
            "devices": every,
            "stream": o["cause"],
        }
        for o in getattr(feed, "outages", lambda: [])()
    ]  # a live stream's silent stretches
    for q in feed._devices:
        for o in outages(feed.gaps(q)):
            out.append({"start": o["start"], "end": o["end"], "quantities": [q],
                        "wells": len(o["wells"]), "devices": o["wells"]})  # fmt: skip
    return sorted(out, key=lambda g: g["start"])


def _readings_status(parts: Parts) -> dict[str, Any]:
    info = dict(parts.readings)
    if parts.feed is not None:
        live = getattr(parts.feed, "live_counts", None)
        info["ingest"] = live() if live is not None else parts.feed.replay_counts()
    return info


def _step(parts: Parts, until: float, progress: Progress, run_folder: Path) -> None:
    """Advance every model to ``until`` with a checkpoint at each stop on the way."""
    coupler, clock = parts.coupler, parts.clock
    total = clock.duration or 0.0
    last = [0.0]

    def report(p: Any) -> None:
        now = time.monotonic()
        if now - last[0] > 0.5 or p.committed >= total:
            last[0] = now
            progress.advance(p.committed, total)

    for stop in [s for s in parts.stops if s > coupler.time + 1e-6] + [until]:
        coupler.step_to(stop, report)
        if stop < until:
            path = _checkpoint_path(run_folder, clock, stop)
            path.parent.mkdir(exist_ok=True)
            if parts.groundwater is not None:
                parts.groundwater.save_history(path.with_suffix(".groundwater.npz"))
            coupler.checkpoint(path)
            runs.write_status(run_folder, checkpoint=path.name, simulated_to=clock.isoformat(stop),
                              gaps=_gaps(parts), readings=_readings_status(parts))  # fmt: skip


def run(path: str | Path, *, options: Options | None = None, runs_dir: Path = Path("runs"),
        progress: Progress | None = None) -> Path:  # fmt: skip
    """Run a coupled scenario into a new run folder; returns the finished run's folder.

    ``progress`` sees the stages and the simulated seconds done of all."""
    options = options or Options()
    sc = load(path)
    clock = sc.clock(options.end)
    if options.checkpoint_every:
        _seconds(options.checkpoint_every, clock.start, "--checkpoint-every")
    inputs = {"scenario": sc.path}
    if options.readings:
        if not Path(options.readings).is_file():
            raise ConfigError(f"--readings: no uplink file at {options.readings}")
        inputs["readings"] = Path(options.readings)
    folder = runs.create(runs_dir, sc.name, KIND, inputs=inputs, title=sc.config["scenario"]["title"],
                         models=list(sc.models), start=format_utc(clock.start),
                         end=format_utc(clock.end), **{OPTIONS: vars(options)})  # fmt: skip
    shutil.copyfile(sc.path, folder / "scenario.toml")
    return _execute(sc, options, folder, None, as_progress(progress))


def resume(run_folder: str | Path, *, progress: Progress | None = None) -> Path:
    """Continue an interrupted or failed coupled run from its last checkpoint, in its own folder
    (``progress`` as for :func:`run`)."""
    folder = Path(run_folder).resolve()
    status = runs.read_status(folder)
    if status.get("kind") != KIND:
        raise ConfigError(f"--resume {folder}: not a coupled run (kind {status.get('kind')!r})")
    state = status.get("state")
    if state == "finished":
        raise ConfigError(f"--resume {folder}: the run has finished; nothing to resume")
    if state == "running" and runs.process_alive(status.get("pid"), status.get("host"),
                                                 status.get("pid_started")) is not False:  # fmt: skip
        raise ConfigError(f"--resume {folder}: the run is still running (pid {status.get('pid')})")
    checkpoint = last_checkpoint(folder)
    if checkpoint is None:
        raise ConfigError(
            f"--resume {folder}: no checkpoint in {CHECKPOINTS}/ (start it again with "
            "--checkpoint-every to be able to resume)"
        )
    options = Options(**status.get(OPTIONS, {}))
    sc = load(folder / "scenario.toml")
    sc.path = Path(status["inputs"]["scenario"]["path"])  # relative paths as in the original
    partial = folder.with_name(f".{runs.stamp_of(folder)}{runs.PARTIAL}")
    if partial != folder:
        os.replace(folder, partial)
    checkpoint = partial / CHECKPOINTS / checkpoint.name
    stat = runs._proc_stat(os.getpid())
    runs.write_status(partial, state="running", error=None, finished_utc=None, pid=os.getpid(),
                      host=socket.gethostname(), pid_started=stat[1] if stat else None,
                      resumed_from=checkpoint.name, resumed_utc=runs.now_utc())  # fmt: skip
    return _execute(sc, options, partial, checkpoint, as_progress(progress))


def _execute(sc: CoupledScenario, options: Options, folder: Path, checkpoint: Path | None,
             progress: Progress) -> Path:  # fmt: skip
    from twin.app.coupled_report import finish_outputs

    t0 = time.perf_counter()
    parts: Parts | None = None
    with runs.signals_interrupt() as interrupts:
        try:
            parts = build(sc, options, folder, progress)
            if checkpoint is not None:
                progress.stage(f"resuming from {checkpoint.name}")
                if parts.groundwater is not None:
                    parts.groundwater.load_history(checkpoint.with_suffix(".groundwater.npz"))
                parts.coupler.restore(checkpoint)
            progress.stage("running")
            _step(parts, parts.clock.duration or 0.0, progress, folder)
            if parts.groundwater is not None:
                parts.groundwater.final_analysis(parts.coupler)
            parts.coupler.close()
            metrics = finish_outputs(sc, parts, time.perf_counter() - t0, gaps=_gaps(parts),
                                     readings=_readings_status(parts))  # fmt: skip
            return runs.finish(folder, metrics=metrics, gaps=_gaps(parts),
                               readings=_readings_status(parts))  # fmt: skip
        except BaseException as exc:
            interrupts.settle()
            cause = interrupts.cause(exc)
            extra: dict[str, Any] = {}
            if parts is not None:
                parts.coupler.close()
                try:
                    extra = {"gaps": _gaps(parts), "readings": _readings_status(parts)}
                except Exception:  # the state to describe may be what failed
                    extra = {}
            runs.end(folder, cause, **extra)
            if cause is not exc:
                raise cause from exc
            raise


def list_variables_text(configs: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """Every model kind's inputs and outputs with units and standard names (no model started)."""
    from twin.core import list_variables

    rows = list_variables(configs=configs)
    lines = []
    kind = None
    for r in rows:
        if r.model != kind:
            kind = r.model
            lines.append(f"{kind}")
        opt = " (optional)" if r.optional else ""
        lines.append(f"  {r.direction:6s} {r.name:28s} [{r.units}] {r.grid:7s} {r.standard_name}"
                     f"{opt}")  # fmt: skip
    return "\n".join(lines)


def describe_duration(seconds: float) -> str:
    """Seconds as text such as '3:00:00'."""
    return str(timedelta(seconds=round(seconds)))


__all__ = ["TRANSFORMS", "CoupledScenario", "Options", "build", "last_checkpoint", "load",
           "list_variables_text", "resume", "run", "window_counts"]  # fmt: skip
