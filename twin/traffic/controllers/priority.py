"""Transit signal priority: green extension and early green for buses and trams at SUMO signals.

SUMO has no priority for public transport at actuated signals (eclipse-sumo/sumo #9163), and the
documented work-around with custom switching rules fails when two buses come from conflicting
directions or when the detection distance is shorter than minimum green plus amber (#15226). This
engine handles both:

* Detection. A priority vehicle is tracked from its departure; its next signals come from SUMO's
  ``VAR_NEXT_TLS`` (signal, link index, distance), so the request names the exact link it will use
  and the distance along its route. This costs one query per priority vehicle (buses are few),
  instead of per-lane vehicle lists on every approach of every signal, and needs no detectors
  written into the scenario. A vehicle far from its next treated signal is only looked at again
  when it could have reached the detection distance.
* Actions, one per signal and step, on the original program only through
  ``setPhaseDuration``: extension holds the last green phase that serves the link (up to
  ``max_extension_s`` per green and the phase's maximum); early green shortens green phases that
  do not serve the link, never below their minimum, while every clearance phase (amber, all-red,
  pedestrian clearance) runs in full. Phases are never skipped, so the safety monitor's limits hold.
* Conflicts. Requests are served first come, first served: an action that would hurt an older
  request (extending a phase an older request is waiting to end, or shortening the phase an
  older request needs) is deferred. Extensions are capped per green and requests expire after
  ``request_timeout_s``, so no direction starves. An extension no longer needed is handed back.
* Short detection. When the detection distance takes less time to travel than the worst-case time
  to green (minimum green + clearance, :meth:`SignalProgram.lead_time`), a warning names the links;
  ``short_detection="precompute"`` (default) moves the request point upstream far enough (a
  virtual pre-registration, as on-board transit computers send it), ``"extension_only"`` keeps the
  physical detection distance and grants only extensions there.

Conditional priority (transit priority's defaults; bike priority keeps ``condition="always"``), as
signal controllers of real transit systems grant it:

* Need. With ``condition="late"`` a vehicle checked in at a signal (its request, above) asks for an
  action only while it is late by at least ``lateness_threshold_s``: against its timetable where its
  stops carry ``until``/``arrival`` times (the pack's synthetic lines do; lateness at the last stop's
  departure plus the time lost since), otherwise against free-flow travel time (SUMO's time loss
  since departure, as for foreign scenarios whose buses have no timetable). Vehicles of
  ``always_vclasses`` (trams by default) ask regardless; ``levels`` ranks modes, so a tram's request
  goes before a bus's at the same signal. A vehicle on time gets at most a green extension
  (``on_time_extension``; it takes no green from anyone, it only delays the next phases), never an
  early green, and yields to vehicles in need. Check-out is the passage of the stop line (the vehicle's
  next signal changes) or its arrival.
* At most one intervention per signal cycle (``one_per_cycle``): after an extension or early green
  for a vehicle the signal serves no new vehicle's request until a cycle of its program has run.
* Compensation (``compensate``): a green phase cut short by an early green is lengthened by the
  lost time, within its maximum, the next time it runs. A later early green may take that extra
  time back for a vehicle in need (then only the part of the phase's own green it cuts is owed).
  An extension takes no green from other phases (they run in full, later), so it owes nothing.
"""

from __future__ import annotations

import csv
import heapq
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from traci import constants as tc

from twin.traffic.controllers.base import (
    Controller,
    Param,
    boolean,
    choice,
    id_list,
    number,
    text,
)
from twin.traffic.controllers.program import SignalProgram, traffic_lights_of
from twin.traffic.controllers.safety import active_program, crossing_links

if TYPE_CHECKING:
    from twin.traffic.sim import Simulation

__all__ = ["SignalPriority", "TransitPriority", "common_params", "conditional_params"]

log = logging.getLogger(__name__)

_SUPPORTED_TYPES = (
    tc.TRAFFICLIGHT_TYPE_STATIC,
    tc.TRAFFICLIGHT_TYPE_ACTUATED,
    tc.TRAFFICLIGHT_TYPE_DELAYBASED,
)
_RAIL_TYPES = (1, 2)  # TLS type codes of rail signals and rail crossings
_TL_VARS = (tc.TL_CURRENT_PHASE, tc.TL_NEXT_SWITCH, tc.TL_SPENT_DURATION, tc.TL_CURRENT_PROGRAM)
_VEH_VARS = (tc.VAR_SPEED, tc.VAR_STOPSTATE, tc.VAR_NEXT_TLS)
_MAX_APPROACH_SPEED = 25.0  # m/s; bounds how soon a far vehicle can reach the detection point
_HALT_SPEED = 0.1  # m/s; SUMO's own threshold for a waiting vehicle


def _first(items: list[str], n: int = 5, sep: str = ", ") -> str:
    """The first few items for a log line (all are in the action log)."""
    text = sep.join(items[:n])
    return text + (f"{sep}... {len(items) - n} more" if len(items) > n else "")


@dataclass
class _Request:
    vehicle: str
    tls: str
    link: int
    first_t: float
    dist: float = math.inf
    speed: float = 0.0
    eta: float = math.inf
    wait_s: float = 0.0
    paused: bool = False
    expired: bool = False
    extended: bool = False
    early: bool = False
    denied: bool = False
    deferred: bool = False
    level: int = 0
    needed: bool = True
    lateness_base: float | None = None  # lateness at check-in minus the time lost by then (s)
    next_check: float = 0.0
    limited: bool = False


@dataclass
class _Signal:
    program: SignalProgram
    links: frozenset[int]
    speed: dict[int, float]
    reach: dict[int, float]  # request distance per link (m)
    short: frozenset[int] = frozenset()
    ext_phase: int | None = None
    ext_used: float = 0.0
    nominal_end: float | None = None
    ext_for: set[str] = field(default_factory=set)
    cycle_s: float = 0.0
    last_t: float = -math.inf  # start of the last intervention for a new vehicle
    last_for: set[str] = field(default_factory=set)
    debt: dict[int, float] = field(default_factory=dict)  # green phase -> seconds owed
    debt_t: dict[int, float] = field(default_factory=dict)  # when the phase lost them
    comp_phase: int | None = None  # phase running a compensation
    comp_s: float = 0.0  # ... of this many seconds (an early green cutting it owes only the rest)


@dataclass
class _Unit:
    """The requests waiting for one link (oldest first); buses usually come one per link."""

    link: int
    reqs: list[_Request]

    @property
    def first_t(self) -> float:
        """Time of the oldest request for this link."""
        return self.reqs[0].first_t

    @property
    def needed(self) -> bool:
        """True when a vehicle of the unit is late enough (or always entitled) to ask."""
        return any(r.needed for r in self.reqs)

    @property
    def level(self) -> int:
        """Highest mode level among the requests (tram over bus)."""
        return max(r.level for r in self.reqs)

    @property
    def eta(self) -> float:
        """Earliest estimated arrival at the stop line (s)."""
        return min(r.eta for r in self.reqs)


def common_params(distance: float, extension: float, vclasses: list[str]) -> dict[str, Param]:
    """Spec keys shared by the signal priority controllers, with their defaults."""
    return {
        "junctions": id_list("auto", default="auto"),
        "detection_distance_m": number(1.0, default=distance),
        "max_extension_s": number(0.0, default=extension),
        "min_green_s": number(0.0, default=5.0),
        "pedestrian_min_green_s": number(0.0, default=7.0),
        "vclasses": id_list(default=vclasses),
        "request_timeout_s": number(1.0, default=180.0),
        "short_detection": choice(("extension_only", "precompute"), default="precompute"),
        "margin_s": number(0.0, default=2.0),
        "approach_speed_mps": number(0.5, default=None),
        "early_green": boolean(default=True),
        "extension": boolean(default=True),
    }


def conditional_params() -> dict[str, Param]:
    """Spec keys of conditional transit priority, with the defaults transit priority uses."""
    return {
        "condition": choice(("always", "late"), default="late"),
        "lateness_threshold_s": number(0.0, default=30.0),
        "always_vclasses": id_list(default=["tram"], allow_empty=True),
        "levels": Param(
            lambda v: (
                isinstance(v, dict)
                and all(isinstance(k, str) and isinstance(x, int) for k, x in v.items())
            ),
            "a table vClass -> integer level",
            {"tram": 2, "bus": 1},
        ),
        "one_per_cycle": boolean(default=True),
        "compensate": boolean(default=True),
        "on_time_extension": boolean(default=True),
    }


class SignalPriority(Controller):
    """Priority engine shared by transit and bike priority (see the module docstring)."""

    kind = "signal_priority"
    params: ClassVar[dict[str, Param]] = {}

    def __init__(
        self,
        *,
        name: str,
        junctions: str | list[str] = "auto",
        detection_distance_m: float = 150.0,
        max_extension_s: float = 20.0,
        min_green_s: float = 5.0,
        pedestrian_min_green_s: float = 7.0,
        vclasses: list[str] | tuple[str, ...] = ("bus", "tram"),
        request_timeout_s: float = 180.0,
        short_detection: str = "precompute",
        margin_s: float = 2.0,
        early_green: bool = True,
        extension: bool = True,
        min_vehicles: int = 1,
        waiting_speed_mps: float | None = None,
        approach_speed_mps: float | None = None,
        condition: str = "always",
        lateness_threshold_s: float = 30.0,
        always_vclasses: list[str] | tuple[str, ...] = (),
        levels: dict[str, int] | None = None,
        one_per_cycle: bool = False,
        compensate: bool = False,
        on_time_extension: bool = False,
    ) -> None:
        self.name = name
        self.junctions = junctions
        self.detection_distance_m = float(detection_distance_m)
        self.max_extension_s = float(max_extension_s)
        self.min_green_s = float(min_green_s)
        self.pedestrian_min_green_s = float(pedestrian_min_green_s)
        self.vclasses = frozenset(vclasses)
        self.request_timeout_s = float(request_timeout_s)
        self.short_detection = short_detection
        self.margin_s = float(margin_s)
        self.early_green = early_green
        self.extension = extension
        self.min_vehicles = int(min_vehicles)
        # early green only for units with min_vehicles waiting at or below this speed (bikes)
        self.waiting_threshold_speed = waiting_speed_mps
        # speed assumed on the approach (default: the lane's limit; cyclists are slower)
        self.approach_speed_mps = approach_speed_mps
        self.condition = condition
        self.lateness_threshold_s = float(lateness_threshold_s)
        self.always_vclasses = frozenset(always_vclasses)
        self.levels = dict(levels or {})
        self.one_per_cycle = one_per_cycle
        self.compensate = compensate
        self.on_time_extension = on_time_extension
        self._vclass: dict[str, str] = {}
        self._debtors: set[str] = set()  # signals owing compensation
        self._signals: dict[str, _Signal] = {}
        self._tracked: dict[str, float] = {}  # vehicle -> sim time of its next look
        self._due: list[tuple[float, str]] = []  # heap of (next look, vehicle)
        self._req: dict[str, _Request] = {}
        self._extended: set[str] = set()  # signals holding a granted extension
        self._read: dict[int, Any] = {}
        self._rows: list[tuple] = []
        self._counts = dict.fromkeys(
            (
                "requests",
                "extensions",
                "early_greens",
                "denied",
                "deferred",
                "expired",
                "passed",
                "not_needed",
                "cycle_limited",
                "compensations",
            ),
            0,
        )
        self._extension_s = 0.0
        self._compensation_s = 0.0
        self._waits: list[float] = []
        self._conn: Any = None
        self._dt = 1.0
        self._t0 = 0.0
        self._t = 0.0

    # -- set-up -------------------------------------------------------------------------------
    def _resolve_junctions(self, conn: Any) -> list[str]:
        if self.junctions == "auto":
            return list(conn.trafficlight.getIDList())
        return traffic_lights_of(conn, self.junctions, self.name)

    def _lane_allows(self, conn: Any, lane: str, cache: dict[str, bool]) -> bool:
        ok = cache.get(lane)
        if ok is None:
            allowed = set(conn.lane.getAllowed(lane))
            ok = not allowed or "all" in allowed or bool(allowed & self.vclasses)
            cache[lane] = ok
        return ok

    def attach(self, sim: Simulation) -> None:
        """Pick the signals, analyse their programs and detection distances, track vehicles."""
        conn = sim.conn
        self._conn = conn
        self._dt = sim.step_length
        self._t0 = self._t = sim.time
        allow_cache: dict[str, bool] = {}
        speed_cache: dict[str, float] = {}
        short_report: list[str] = []
        unsupported: list[str] = []
        for tls in self._resolve_junctions(conn):
            logic = active_program(conn, tls)
            if not logic.phases or int(logic.type) in _RAIL_TYPES:
                continue  # rail signals and rail crossings follow the trains, not a program
            if int(logic.type) not in _SUPPORTED_TYPES:
                unsupported.append(tls)
                continue
            links: set[int] = set()
            speeds: dict[int, float] = {}
            for index, conns in enumerate(conn.trafficlight.getControlledLinks(tls)):
                for in_lane, _out, _via in conns:
                    if in_lane.startswith(":") or not self._lane_allows(conn, in_lane, allow_cache):
                        continue
                    links.add(index)
                    v = speed_cache.get(in_lane)
                    if v is None:
                        v = float(conn.lane.getMaxSpeed(in_lane))
                        if self.approach_speed_mps is not None:
                            v = min(v, self.approach_speed_mps)
                        speed_cache[in_lane] = v
                    speeds[index] = max(speeds.get(index, 0.0), v)
            if not links:
                if self.junctions != "auto":
                    log.warning(
                        "%s: no link of signal %s admits %s", self.name, tls, sorted(self.vclasses)
                    )
                continue
            program = SignalProgram(
                tls,
                logic,
                min_green_s=self.min_green_s,
                max_extension_s=self.max_extension_s,
                pedestrian_min_green_s=self.pedestrian_min_green_s,
                crossing_links=crossing_links(conn, tls),
            )
            reach = dict.fromkeys(links, self.detection_distance_m)
            short: set[int] = set()
            ever = program.links_ever_green()
            for link in sorted(links & ever):
                speed = max(speeds.get(link, 13.9), 1.0)
                lead = program.lead_time(link)
                if self.detection_distance_m / speed < lead:
                    short.add(link)
                    if self.short_detection == "precompute":
                        reach[link] = (lead + self.margin_s) * speed
            if short:
                short_report.append(f"{tls}: links {sorted(short)}")
                for link in sorted(short):
                    self._rows.append((sim.time, tls, link, "", "short_detection", -1, reach[link]))
            cycle = sum(p.duration for p in program.phases)
            self._signals[tls] = _Signal(
                program, frozenset(links), speeds, reach, frozenset(short), cycle_s=cycle
            )
            sim.watch("trafficlight", tls, _TL_VARS)
        if unsupported:
            log.warning(
                "%s: %d signals with program types other than static, actuated or delay_based "
                "are left alone (%s)",
                self.name,
                len(unsupported),
                _first(unsupported),
            )
        if short_report:
            log.warning(
                "%s: detection distance %.0f m is shorter than minimum green plus clearance "
                "(travel time < lead time) at %d signals (%s); %s",
                self.name,
                self.detection_distance_m,
                len(short_report),
                _first(short_report, sep="; "),
                "only extensions there"
                if self.short_detection == "extension_only"
                else "request points moved upstream",
            )
        self._short_links = sum(len(s.short) for s in self._signals.values())
        sim.watch_simulation(tc.VAR_DEPARTED_VEHICLES_IDS, tc.VAR_ARRIVED_VEHICLES_IDS)
        self._read = {var: sim.reader("trafficlight", var) for var in _TL_VARS} | {
            var: sim.reader("vehicle", var) for var in _VEH_VARS
        }
        if self._signals:
            for vid in conn.vehicle.getIDList():
                self._consider(sim, vid)

    def _consider(self, sim: Simulation, vid: str) -> None:
        vclass = sim.vehicle_class(vid)
        if vclass in self.vclasses:
            self._vclass[vid] = vclass
            self._schedule(vid, sim.time)
            sim.watch("vehicle", vid, _VEH_VARS)

    def _schedule(self, vid: str, when: float) -> None:
        """Look at a vehicle without request again at sim time ``when``."""
        self._tracked[vid] = when
        heapq.heappush(self._due, (when, vid))

    # -- stepping -------------------------------------------------------------------------------
    def step(self, sim: Simulation, t: float) -> None:
        """Update requests from the tracked vehicles, then act on each signal with requests."""
        self._t = t
        if not self._signals:
            return
        departed = sim.sim_value(tc.VAR_DEPARTED_VEHICLES_IDS)
        if departed:
            for vid in departed:
                self._consider(sim, vid)
        arrived = sim.sim_value(tc.VAR_ARRIVED_VEHICLES_IDS)
        if arrived and self._tracked:
            for vid in arrived:
                self._vclass.pop(vid, None)
                if self._tracked.pop(vid, None) is not None:
                    req = self._req.pop(vid, None)
                    if req is not None:
                        self._finish(req, t, "arrived")
        if not self._tracked:
            if self._extended:
                self._settle_extensions(sim, t, {})
            return
        active: dict[str, list[_Request]] = {}
        read_speed = self._read[tc.VAR_SPEED]
        read_stop = self._read[tc.VAR_STOPSTATE]
        read_next = self._read[tc.VAR_NEXT_TLS]
        # vehicles with a request are looked at every step, the others when they are due
        look = list(self._req)
        heap, tracked = self._due, self._tracked
        while heap and heap[0][0] <= t:
            when, vid = heapq.heappop(heap)
            if tracked.get(vid) == when and vid not in self._req:
                look.append(vid)
        for vid in look:
            req = self._req.get(vid)
            upcoming = read_next(vid)
            if upcoming is None:  # no results yet (TraCI subscription made this step)
                self._schedule(vid, t + self._dt)
                continue
            speed, stop = read_speed(vid), read_stop(vid)
            entry = None
            for item in upcoming:
                if item[0] in self._signals:
                    entry = item
                    break
            if req is not None and (entry is None or entry[0] != req.tls or entry[1] != req.link):
                self._finish(req, t, "passed")
                del self._req[vid]
                req = None
            if entry is None:
                self._schedule(vid, t + 30.0)
                continue
            tls, link, dist = entry[0], int(entry[1]), float(entry[2])
            sig = self._signals[tls]
            reach = sig.reach.get(link, self.detection_distance_m)
            if req is None:
                if dist > reach:
                    self._schedule(vid, t + max(self._dt, (dist - reach) / _MAX_APPROACH_SPEED))
                    continue
                req = _Request(vid, tls, link, t, level=self.levels.get(self._vclass.get(vid), 0))
                self._req[vid] = req
                self._counts["requests"] += 1
                self._rows.append((t, tls, link, vid, "request", -1, round(dist, 1)))
                if self.condition == "late" and self._vclass.get(vid) not in self.always_vclasses:
                    req.needed = False
                    req.lateness_base = self._lateness_base(sim, vid)
            if not req.needed and t >= req.next_check:
                self._check_need(sim, req, t)
            req.dist, req.speed = dist, speed
            req.paused = bool(stop & 1)
            lane_speed = sig.speed.get(link, 13.9)
            req.eta = dist / max(speed, 0.4 * lane_speed, 2.0)
            if speed < _HALT_SPEED and not req.paused:
                req.wait_s += self._dt
            if not req.expired and t - req.first_t > self.request_timeout_s:
                req.expired = True
                self._counts["expired"] += 1
                self._rows.append((t, tls, link, vid, "expired", -1, round(t - req.first_t, 1)))
            if not req.paused and not req.expired and (req.needed or self.on_time_extension):
                active.setdefault(tls, []).append(req)
        if self._debtors:
            self._compensate(sim, t, active)
        if self._extended:
            self._settle_extensions(sim, t, active)
        for tls, reqs in active.items():
            self._decide(sim, tls, self._signals[tls], reqs, t)

    def _lateness_base(self, sim: Simulation, vid: str) -> float:
        """Timetable lateness at the last stop's departure minus the time lost by then (0 if none).

        Lateness now is this plus the time lost so far; without a timetable it is the time lost
        against free-flow travel (SUMO's time loss since departure).
        """
        conn = sim.conn
        try:
            past = conn.vehicle.getStops(vid, -1)
        except Exception:  # noqa: BLE001 - a vehicle that left or a backend without stop data
            return 0.0
        for stop in reversed(past):
            until, depart = float(stop.until), float(stop.depart)
            arrival, planned = float(stop.arrival), float(stop.intendedArrival)
            if until >= 0 and depart >= 0:
                late = depart - until
            elif planned >= 0 and arrival >= 0:
                late = arrival - planned
            else:
                continue
            return late - float(conn.vehicle.getTimeLoss(vid))
        return 0.0

    def _check_need(self, sim: Simulation, req: _Request, t: float) -> None:
        """Let the request act once the vehicle is late beyond the threshold (re-checked every 2 s)."""
        try:
            late = (req.lateness_base or 0.0) + float(sim.conn.vehicle.getTimeLoss(req.vehicle))
        except Exception:  # noqa: BLE001 - the vehicle left this step
            return
        if late >= self.lateness_threshold_s:
            req.needed = True
            self._rows.append((t, req.tls, req.link, req.vehicle, "needed", -1, round(late, 1)))
        else:
            req.next_check = t + 2.0
            if req.next_check - req.first_t <= 2.0 + 1e-9:
                self._counts["not_needed"] += 1
                self._rows.append(
                    (t, req.tls, req.link, req.vehicle, "not_needed", -1, round(late, 1))
                )

    def _compensate(self, sim: Simulation, t: float, active: dict[str, list[_Request]]) -> None:
        """Give a phase cut short by an early green its lost time back the next time it runs."""
        for tls in list(self._debtors):
            sig = self._signals[tls]
            st = self._tls_state(sim, tls, t)
            if st is None:
                continue
            phase, spent, remaining = st
            if sig.comp_phase is not None and sig.comp_phase != phase:
                sig.comp_phase = None
            owed = sig.debt.get(phase)
            if owed is None or t - spent <= sig.debt_t[phase] + 1e-9:
                if not sig.debt and sig.comp_phase is None:
                    self._debtors.discard(tls)
                continue
            cur = sig.program.phases[phase]
            give = max(0.0, min(owed, cur.max_s - (spent + remaining)))
            del sig.debt[phase], sig.debt_t[phase]
            if give >= 1.0:
                self._set_duration(sim, tls, remaining + math.floor(give))
                sig.comp_phase, sig.comp_s = phase, float(math.floor(give))
                self._counts["compensations"] += 1
                self._compensation_s += math.floor(give)
                self._rows.append((t, tls, -1, "", "compensation", phase, math.floor(give)))

    def _finish(self, req: _Request, t: float, how: str) -> None:
        if how == "passed":
            self._counts["passed"] += 1
            self._waits.append(req.wait_s)
        self._rows.append((t, req.tls, req.link, req.vehicle, how, -1, round(req.wait_s, 1)))

    def _tls_state(self, sim: Simulation, tls: str, t: float) -> tuple[int, float, float] | None:
        read = self._read
        if read[tc.TL_CURRENT_PROGRAM](tls) != self._signals[tls].program.program_id:
            return None  # another program runs (or no results yet): leave it alone
        return (
            int(read[tc.TL_CURRENT_PHASE](tls)),
            float(read[tc.TL_SPENT_DURATION](tls)),
            read[tc.TL_NEXT_SWITCH](tls) - t,
        )

    def _settle_extensions(
        self, sim: Simulation, t: float, active: dict[str, list[_Request]]
    ) -> None:
        """Forget extensions of phases that have ended; hand back extensions no longer needed."""
        for tls in list(self._extended):
            sig = self._signals[tls]
            st = self._tls_state(sim, tls, t)
            if st is None or st[0] != sig.ext_phase:
                sig.ext_phase, sig.ext_used, sig.nominal_end = None, 0.0, None
                sig.ext_for.clear()
                self._extended.discard(tls)
                continue
            phase, spent, remaining = st
            waiting = {r.vehicle for r in active.get(tls, ()) if sig.program.serves(phase, r.link)}
            if sig.nominal_end is not None and not (sig.ext_for & waiting):
                cur = sig.program.phases[phase]
                back = max(sig.nominal_end - t, cur.min_s - spent, 0.0)
                if back < remaining - 0.5:
                    self._set_duration(sim, tls, back)
                    self._rows.append((t, tls, -1, "", "extension_returned", phase, round(back, 1)))
                sig.nominal_end = None

    def _claims(self, sim: Simulation) -> dict[str, tuple[str, int, str, float]]:
        return sim.shared.setdefault("signal_claims", {})

    def _blocked_by_claim(self, sim: Simulation, tls: str, phase: int, kind: str, t: float) -> bool:
        claim = self._claims(sim).get(tls)
        if claim is None:
            return False
        owner, c_phase, c_kind, until = claim
        return owner != self.name and c_phase == phase and c_kind != kind and until > t

    def _set_duration(self, sim: Simulation, tls: str, remaining: float) -> None:
        sim.conn.trafficlight.setPhaseDuration(tls, max(0.0, remaining))

    def _decide(
        self, sim: Simulation, tls: str, sig: _Signal, reqs: list[_Request], t: float
    ) -> None:
        st = self._tls_state(sim, tls, t)
        if st is None:
            return
        phase, spent, remaining = st
        prog = sig.program
        by_link: dict[int, list[_Request]] = {}
        for r in sorted(reqs, key=lambda r: (r.first_t, r.vehicle)):
            by_link.setdefault(r.link, []).append(r)
        units = sorted(
            (_Unit(k, v) for k, v in by_link.items()),
            key=lambda u: (not u.needed, -u.level, u.first_t, u.link),
        )
        for idx, unit in enumerate(units):
            action = self._action_for(unit, sig, phase, spent, remaining, t)
            if action is None:
                continue
            kind, new_remaining = action
            if kind == "extension":
                harmed = [u for u in units[:idx] if not prog.serves(phase, u.link)]
            else:
                harmed = [u for u in units[:idx] if prog.serves(phase, u.link)]
            if self._cycle_limited(sig, unit, t):
                self._hold(unit, "limited", "cycle_limited", t, tls, phase)
                continue
            if harmed or self._blocked_by_claim(sim, tls, phase, kind, t):
                self._hold(unit, "deferred", "deferred", t, tls, phase)
                continue
            self._apply(sim, tls, sig, unit, kind, phase, remaining, new_remaining, t)
            return

    def _hold(self, unit: _Unit, flag: str, what: str, t: float, tls: str, phase: int) -> None:
        """Count and log, once per request, why a unit's requests wait (``flag`` marks them)."""
        for r in unit.reqs:
            if not getattr(r, flag):
                setattr(r, flag, True)
                self._counts[what] += 1
                self._rows.append((t, tls, unit.link, r.vehicle, what, phase, 0.0))

    def _cycle_limited(self, sig: _Signal, unit: _Unit, t: float) -> bool:
        """True when the signal already intervened for another vehicle within one cycle."""
        if not self.one_per_cycle or t - sig.last_t >= sig.cycle_s:
            return False
        return not any(r.vehicle in sig.last_for for r in unit.reqs)

    def _action_for(
        self, unit: _Unit, sig: _Signal, phase: int, spent: float, remaining: float, t: float
    ) -> tuple[str, float] | None:
        prog = sig.program
        cur = prog.phases[phase]
        link = unit.link
        if prog.serves(phase, link):
            if not self.extension:
                return None
            need = unit.eta + self.margin_s
            if need <= prog.green_left(link, phase, remaining) + 1e-9:
                return None
            if cur.clearance or not prog.is_last_green(phase, link):
                return None
            extra = math.ceil(need - remaining)
            used = sig.ext_used if sig.ext_phase == phase else 0.0
            cap = min(self.max_extension_s - used, cur.max_s - (spent + remaining))
            if extra > cap + 1e-9:
                for r in unit.reqs:
                    if not r.denied and not r.extended:
                        r.denied = True
                        self._counts["denied"] += 1
                        self._rows.append(
                            (t, sig.program.tls_id, link, r.vehicle, "denied", phase, extra)
                        )
                return None
            return "extension", remaining + extra
        if not self.early_green or cur.clearance or not unit.needed:
            return None
        if link in sig.short and self.short_detection == "extension_only":
            return None
        if self.waiting_threshold_speed is not None:
            waiting = sum(1 for r in unit.reqs if r.speed <= self.waiting_threshold_speed)
            if waiting < self.min_vehicles:
                return None
        elif len(unit.reqs) < self.min_vehicles:
            return None
        natural = prog.time_to_green(link, phase, remaining, spent, shortest=False)
        fastest = prog.time_to_green(link, phase, remaining, spent, shortest=True)
        eta = unit.eta
        if not math.isfinite(natural) or eta >= natural or fastest >= natural - 0.5:
            return None
        target = max(fastest, eta - self.margin_s)
        floor = max(0.0, cur.min_s - spent)
        new_remaining = max(floor, math.floor(remaining - (natural - target)))
        if new_remaining >= remaining - 0.5:
            return None
        return "early_green", float(new_remaining)

    def _apply(
        self,
        sim: Simulation,
        tls: str,
        sig: _Signal,
        unit: _Unit,
        kind: str,
        phase: int,
        remaining: float,
        new_remaining: float,
        t: float,
    ) -> None:
        self._set_duration(sim, tls, new_remaining)
        vehicles = {r.vehicle for r in unit.reqs}
        if not (vehicles & sig.last_for):
            sig.last_t, sig.last_for = t, vehicles
        else:
            sig.last_for |= vehicles
        if kind == "early_green" and self.compensate:
            lost = remaining - new_remaining - (sig.comp_s if phase == sig.comp_phase else 0.0)
            if lost >= 1.0:
                sig.debt[phase] = sig.debt.get(phase, 0.0) + lost
                sig.debt_t[phase] = t
                self._debtors.add(tls)
        if kind == "extension":
            if sig.ext_phase != phase:
                sig.ext_phase, sig.ext_used, sig.nominal_end = phase, 0.0, t + remaining
                sig.ext_for.clear()
                self._extended.add(tls)
            elif sig.nominal_end is None:
                sig.nominal_end = t + remaining
            extra = new_remaining - remaining
            sig.ext_used += extra
            self._extension_s += extra
            sig.ext_for.update(r.vehicle for r in unit.reqs)
            for r in unit.reqs:
                if not r.extended:
                    r.extended = True
                    self._counts["extensions"] += 1
        else:
            for r in unit.reqs:
                if not r.early:
                    r.early = True
                    self._counts["early_greens"] += 1
        self._claims(sim)[tls] = (
            self.name,
            phase,
            kind,
            t + new_remaining + (0.0 if kind == "extension" else 1.0),
        )
        who = next((r.vehicle for r in unit.reqs if r.needed), unit.reqs[0].vehicle)
        self._rows.append((t, tls, unit.link, who, kind, phase, round(new_remaining, 1)))

    # -- outputs --------------------------------------------------------------------------------
    def results(self) -> dict[str, tuple[float, str]]:
        """Requests, granted and refused actions, extension time and waits at the signal."""
        c = self._counts
        waits = self._waits
        return {
            self._kpi("signals"): (float(len(self._signals)), "1"),
            self._kpi("short_detection_links"): (float(getattr(self, "_short_links", 0)), "1"),
            self._kpi("requests"): (float(c["requests"]), "1"),
            self._kpi("extensions_granted"): (float(c["extensions"]), "1"),
            self._kpi("early_greens_granted"): (float(c["early_greens"]), "1"),
            self._kpi("extensions_denied"): (float(c["denied"]), "1"),
            self._kpi("requests_deferred"): (float(c["deferred"]), "1"),
            self._kpi("requests_expired"): (float(c["expired"]), "1"),
            self._kpi("extension_time"): (self._extension_s, "s"),
            self._kpi("vehicles_passed"): (float(c["passed"]), "1"),
            self._kpi("mean_wait_at_signal"): (sum(waits) / len(waits) if waits else 0.0, "s"),
            self._kpi("requests_not_needed"): (float(c["not_needed"]), "1"),
            self._kpi("requests_cycle_limited"): (float(c["cycle_limited"]), "1"),
            self._kpi("compensations"): (float(c["compensations"]), "1"),
            self._kpi("compensation_time"): (self._compensation_s, "s"),
        }

    @property
    def actions(self) -> list[dict[str, Any]]:
        """The action log as dicts (time_s, tls, link, vehicle, action, phase, value)."""
        keys = ("time_s", "tls", "link", "vehicle", "action", "phase", "value")
        return [dict(zip(keys, row, strict=True)) for row in self._rows]

    def write_outputs(self, folder: Path) -> None:
        """<name>_actions.csv: every request, action and passage."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / f"{self.name}_actions.csv").open("w", newline="", encoding="utf-8") as fh:
            wr = csv.writer(fh)
            wr.writerow(["time_s", "tls", "link", "vehicle", "action", "phase", "value"])
            for row in self._rows:
                wr.writerow([f"{row[0]:g}", *row[1:]])


class TransitPriority(SignalPriority):
    """Conditional green extension and early green for buses and trams (vClasses ``bus``, ``tram``):
    for late buses and every tram, one intervention per cycle, cut phases compensated."""

    kind = "transit_priority"
    params = {
        "name": text(default="transit_priority"),
        **common_params(150.0, 20.0, ["bus", "tram"]),
        **conditional_params(),
    }

    def __init__(self, *, name: str = "transit_priority", **kwargs: Any) -> None:
        kwargs.setdefault("vclasses", ("bus", "tram"))
        for key, param in conditional_params().items():
            kwargs.setdefault(key, param.default)
        super().__init__(name=name, **kwargs)
