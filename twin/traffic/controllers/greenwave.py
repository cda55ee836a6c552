"""Bike green wave: signals with a common cycle and offsets for cyclists' speed.

Cyclists riding a corridor at the progression speed ``v`` should meet green at every signal once
they have passed the first one. The controller finds the chains of signalised junctions along the
corridor streets in one travel direction, gives every signal of a chain a fixed-time program with
the common cycle ``C`` (the extra time goes to the phase that serves the corridor's bike links;
amber, all-red and other clearance phases keep their durations, no green phase drops below its
minimum), and shifts each program so that the corridor green at signal ``i`` starts ``d_i / v`` (mod
``C``, rounded to the simulation step) after the corridor green at the first signal, ``d_i`` being
the distance between their stop lines along the chain.

Why not SUMO's ``tools/tlsCoordinator.py``: it coordinates offline, before the run, the pairs of
signals that vehicle *routes* pass, with travel times from each edge's speed limit times one
``--speed-factor``. A bike speed is only expressible as that factor when every edge has the same
limit; it leaves cycle lengths as they are (the signals must already share one), takes the first
green of the first connection between two route edges (whichever lane that is; and the wrong start
when that green wraps over the end of the cycle) and writes bare offsets for programs that must
exist at load time. Here the common cycle, the bike links, the distances along the corridor and the
switch of a running (e.g. actuated) program are needed, so the offset maths (a sum of distances over
one speed) is done here, on the network the simulation has loaded.

Finding the corridor. Corridor edges are the edges of ``corridor_streets`` with a lane for bicycles;
from each, the path goes on to the corridor edge reached by a bike connection (no U-turns) on the
same street if there is one, else the straightest (ties: the lower edge id). A chain is the sequence
of signals along such a path: a path that closes on itself (a ring road) is cut after its longest
gap between two signals; the other paths start at an edge no path leads to and end where they join a
ring. Given both (as a scenario passes them), only the given signals are coordinated; given only
``junctions``, the corridor streets are the street names found at two or more of those signals.

Two-way streets. Each travel direction is its own chain over the same signals, and one program per
signal serves one progression (the opposite direction would need offsets of ``-d_i / v``). Chains
are therefore taken greedily: the longest first (most signals, then the longest distance, then the
lower id of the first signal), or, with ``direction`` set to a compass word, those heading most
nearly that way first; a signal belongs to the first chain that takes it, and what is left of a
later chain is coordinated where two or more of its signals in a row remain.

Switching. The new program keeps the phase sequence and the current phase, so nothing changes on the
street at the switch; the first cycle is then stretched (green phases lengthened) or, where that is
the smaller change, shortened (green phases cut down to their minimum, never clearances) until the
corridor green starts on time. Every later corridor green start is checked against the target and
re-synchronised the same way if another controller moved it. The programs carry the minimum of each
green phase (``minDur``), so a safety monitor judges them against the same limits as the originals.

Modes. ``mode = "fixed"`` does the above. ``mode = "actuated"`` keeps the running (actuated)
programs and only enforces a wave window: the corridor green must show during
``[T_i + k C, T_i + k C + window_s]`` (``T_i`` the targets above). Just before the window the
phases up to the corridor green are cut to their minimum (the same shortening as above: greens only,
never clearances) so that the corridor green starts in time; a corridor green running into the
window is held to its end (not beyond the phase's maximum; signals whose corridor phase cannot last
``window_s`` are left as they are). Outside the window the actuated logic runs freely.

A wave that works (actuated mode; the scenario's setting). Enforcing a window every cycle costs the
cross directions a cut green each time, whether a cyclist comes or not, and offsets from one speed
and a cycle from the nominal programs miss the cyclists actually riding; so:

* ``offsets = "measured"``: for the first ``learn_s`` the controller only watches. It follows every
  cyclist's next signal (SUMO's ``VAR_NEXT_TLS``) and times those who ride from one coordinated
  signal to the next on the corridor links (time waiting at red taken out); a segment with
  ``min_samples`` rides takes their median, the others the direction's pooled riding speed. The
  cycle is the median of the signals' observed corridor-green intervals (their actuated cycles),
  never shorter than the window plus every other phase's minimum and the clearances.
* ``direction = "both"``: the other travel direction gets windows of its own at every signal whose
  corridor green serves both; a signal whose two directions need different phases keeps one.
* ``call = "bikes"``: a window is enforced only when a cyclist within ``detection_distance_m`` is
  heading into it on the direction's links, and a corridor green is held only until the last of
  them arrives; with no cyclist the actuated programs run as they are.
* Transit first. A signal claimed by another controller (transit priority's ``signal_claims``), or
  one a bus or tram approaches on a link the corridor green does not serve, is left alone: planned
  cuts are dropped, a cut green serving it is given back, a held corridor green ends. Greens of the
  bus and tram lines seen crossing the corridor are never cut, and a signal with such a line is
  never held for the wave.
* Honest report. A direction with fewer than ``min_samples`` rides measured, or fewer than
  ``min_cyclists_per_hour`` per segment, carries no wave: its windows are dropped, the log and
  ``<name>_directions.csv`` say why, the KPIs count ``directions_carried`` / ``_not_carried``.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from twin.errors import ConfigError
from twin.traffic.controllers.base import (
    Controller,
    Param,
    choice,
    id_list,
    integer,
    number,
    text,
    validate_spec,
)
from twin.traffic.controllers.program import SignalProgram, traffic_lights_of
from twin.traffic.controllers.safety import active_program, crossing_links
from twin.traffic.install import import_sumo_module

if TYPE_CHECKING:
    from twin.traffic.sim import Simulation

__all__ = ["BikeGreenWave"]

log = logging.getLogger(__name__)
tc = import_sumo_module("traci.constants")

_SUPPORTED_TYPES = (
    tc.TRAFFICLIGHT_TYPE_STATIC,
    tc.TRAFFICLIGHT_TYPE_ACTUATED,
    tc.TRAFFICLIGHT_TYPE_DELAYBASED,
)
_TL_VARS = (tc.TL_CURRENT_PHASE, tc.TL_SPENT_DURATION, tc.TL_CURRENT_PROGRAM, tc.TL_NEXT_SWITCH)
_BIKE_VARS = (tc.VAR_SPEED, tc.VAR_NEXT_TLS)
_HALT_SPEED = 0.1  # m/s; SUMO's threshold for a waiting vehicle
_TRANSIT = ("bus", "tram", "rail_urban", "coach")
# SUMO's link directions: straight, partly left/right, left/right; U-turns are never followed
_TURN_RANK = {"s": 0, "L": 1, "R": 1, "l": 2, "r": 2}
_COMPASS = {"north": (0.0, 1.0), "east": (1.0, 0.0), "south": (0.0, -1.0), "west": (-1.0, 0.0)}
_EPS = 1e-6


def _street_list(v: Any) -> bool:
    return isinstance(v, list | tuple) and len(v) > 0 and all(isinstance(x, str) and x for x in v)


@dataclass
class _Passage:
    """One signal met along a corridor path."""

    tls: str
    links: set[int]
    dist: float  # metres from the start of the path to this signal's stop line
    pos: tuple[float, float]  # position of the junction


@dataclass
class _Chain:
    passages: list[_Passage]

    @property
    def length(self) -> float:
        """Distance from the first to the last stop line (m)."""
        return self.passages[-1].dist - self.passages[0].dist

    def heading(self) -> tuple[float, float]:
        """Unit vector from the first to the last junction."""
        (x0, y0), (x1, y1) = self.passages[0].pos, self.passages[-1].pos
        n = math.hypot(x1 - x0, y1 - y0)
        return ((x1 - x0) / n, (y1 - y0) / n) if n > 0 else (0.0, 0.0)


@dataclass
class _Wave:
    """One travel direction's window at a signal: its place in the chain and its target."""

    chain: int
    order: int
    distance_m: float
    links: frozenset[int]
    travel_s: float = 0.0  # from the chain's first signal (measured or d / v)
    measured: bool = False  # every segment up to here from measured travel times
    target: float = 0.0
    offset_s: float = 0.0


@dataclass
class _Bike:
    """A tracked cyclist: the signal link ahead, the corridor signal last passed, time waited."""

    ahead: tuple[str, int] | None = None
    passed: tuple[int, int, float] | None = None  # (chain, order, time)
    waited: float = 0.0


@dataclass
class _Signal:
    """A coordinated signal: its new program, its target and the transition still to do."""

    tls: str
    chain: int
    order: int
    distance_m: float
    links: frozenset[int]
    main: frozenset[int]  # the corridor links green throughout the corridor green run
    program: SignalProgram
    corridor_phase: int
    run_start: int  # first phase of the green run of the corridor links
    original_cycle_s: float
    durations: list[float] = field(default_factory=list)
    target: float = 0.0  # a time (s) at which the corridor green starts; others are + k * cycle
    offset_s: float = 0.0
    plan: dict[int, float] = field(default_factory=dict)  # phase -> duration when it starts
    last_phase: int = -1
    switching: bool = True  # until the first corridor green on time
    released: bool = False
    first_sync: float | None = None
    last_error: float | None = None
    cut: float | None = None  # actuated mode: the window (its start) last cut for, held for
    held: float | None = None
    window: float | None = None  # the window being observed (its start) and whether it is met
    window_met: bool = True
    windows: int = 0
    windows_met: int = 0
    waves: list[_Wave] = field(default_factory=list)  # one per direction served (actuated mode)
    need_until: float = 0.0  # actuated mode: the corridor green is needed up to here
    called: float | None = None  # the window (its start) cyclists called
    starts: list[float] = field(default_factory=list)  # corridor green starts while learning


class BikeGreenWave(Controller):
    """A bike green wave along a corridor: fixed-time programs, or windows in the actuated programs
    with measured offsets, both directions and transit first (see the module docstring)."""

    kind = "bike_green_wave"
    params: ClassVar[dict[str, Param]] = {
        "name": text(default="bike_green_wave"),
        "corridor_streets": Param(_street_list, "a list of street names (not empty)", None),
        "junctions": id_list(default=None),
        "speed_kmh": number(1.0, 60.0, default=18.0),
        "cycle_s": number(10.0, 600.0, default=None),
        "direction": choice(("longest", "both", *_COMPASS), default="longest"),
        "min_green_s": number(0.0, default=5.0),
        "pedestrian_min_green_s": number(0.0, default=7.0),
        "mode": choice(("fixed", "actuated"), default="fixed"),
        "window_s": number(1.0, 300.0, default=15.0),
        "offsets": choice(("speed", "measured"), default="speed"),
        "learn_s": number(0.0, 86400.0, default=600.0),
        "min_samples": integer(1, default=3),
        "min_cyclists_per_hour": number(0.0, default=30.0),
        "call": choice(("always", "bikes"), default="always"),
        "detection_distance_m": number(10.0, 2000.0, default=300.0),
    }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], *, where: str) -> BikeGreenWave:
        """Validate the spec; it must name the corridor by streets, signals or both."""
        values = validate_spec(spec, cls.params, where)
        if values["corridor_streets"] is None and values["junctions"] is None:
            raise ConfigError(
                f"{where}: give 'corridor_streets' (street names) or 'junctions' (signal ids)"
            )
        if values["mode"] == "fixed" and (
            values["direction"] == "both"
            or values["offsets"] == "measured"
            or values["call"] == "bikes"
        ):
            raise ConfigError(
                f"{where}: 'direction' = 'both', 'offsets' = 'measured' and 'call' = 'bikes' "
                "need 'mode' = 'actuated' (a fixed-time program serves one progression from the "
                "start)"
            )
        return cls(**values)

    def __init__(
        self,
        *,
        name: str = "bike_green_wave",
        corridor_streets: list[str] | None = None,
        junctions: list[str] | None = None,
        speed_kmh: float = 18.0,
        cycle_s: float | None = None,
        direction: str = "longest",
        min_green_s: float = 5.0,
        pedestrian_min_green_s: float = 7.0,
        mode: str = "fixed",
        window_s: float = 15.0,
        offsets: str = "speed",
        learn_s: float = 600.0,
        min_samples: int = 3,
        min_cyclists_per_hour: float = 30.0,
        call: str = "always",
        detection_distance_m: float = 300.0,
    ) -> None:
        self.name = name
        self.corridor_streets = list(corridor_streets) if corridor_streets else None
        self.junctions = list(junctions) if junctions else None
        self.speed_kmh = float(speed_kmh)
        self.cycle_s = None if cycle_s is None else float(cycle_s)
        self.direction = direction
        self.min_green_s = float(min_green_s)
        self.pedestrian_min_green_s = float(pedestrian_min_green_s)
        self.mode = mode
        self.window_s = float(window_s)
        self.offsets = offsets
        self.learn_s = float(learn_s) if offsets == "measured" else 0.0
        self.min_samples = int(min_samples)
        self.min_cyclists_per_hour = float(min_cyclists_per_hour)
        self.call = call
        self.detection_distance_m = float(detection_distance_m)
        self.cycle = 0.0  # the common cycle in use (s)
        self.signals: dict[str, _Signal] = {}
        self.chains: list[list[str]] = []
        self.streets: list[str] = []
        self._green_starts: list[tuple[float, str, float]] = []  # (time, tls, error)
        self._resyncs = 0
        self._released = 0
        self._dt = 1.0
        self._t0 = 0.0
        self._program_id = name
        self._bikes: dict[str, _Bike] = {}
        self._track = False
        self._start_at: float | None = None  # measured offsets: when the waves start
        self._samples: dict[tuple[int, int], list[float]] = {}  # (chain, order) -> s to order+1
        self._riders: dict[int, int] = {}  # chain -> cyclists seen passing its signals
        self._chain_sigs: list[list[_Signal]] = []
        self._verdicts: list[dict[str, Any]] = []  # per direction: carried or why not
        self._cycle_source = "given"
        self._headings: list[tuple[float, float]] = []
        self._yields = 0  # windows left to a transit claim or an approaching bus or tram
        self._transit: set[str] = set()
        self._transit_links: dict[str, set[int]] = {}  # signal -> links buses/trams approach
        self._transit_seen: dict[str, set[int]] = {}  # signal -> links buses/trams ever used

    @property
    def green_starts(self) -> list[tuple[float, str, float]]:
        """Every corridor green start seen: (time s, signal, error against its target s)."""
        return list(self._green_starts)

    @property
    def speed_mps(self) -> float:
        """Progression speed in m/s."""
        return self.speed_kmh / 3.6

    # -- finding the corridor -------------------------------------------------------------------
    def _key(self) -> str:
        return "corridor_streets" if self.corridor_streets else "junctions"

    def _resolve_junctions(self, conn: Any) -> list[str] | None:
        """Traffic light ids for the given junction ids (None: no junctions given)."""
        if self.junctions is None:
            return None
        return traffic_lights_of(conn, self.junctions, self.name)

    def _corridor_streets(
        self, conn: Any, names: dict[str, str], candidates: list[str] | None
    ) -> list[str]:
        known = set(names.values())
        if self.corridor_streets:
            for s in self.corridor_streets:
                if s not in known:
                    raise ConfigError(
                        f"{self.name}: 'corridor_streets': no street {s!r} in the net"
                    )
            return list(self.corridor_streets)
        # only signals given: the streets that pass two or more of them
        seen: dict[str, set[str]] = {}
        for tls in candidates or []:
            for conns in conn.trafficlight.getControlledLinks(tls):
                for in_lane, _out, _via in conns:
                    street = names.get(conn.lane.getEdgeID(in_lane), "")
                    if street:
                        seen.setdefault(street, set()).add(tls)
        streets = sorted(s for s, t in seen.items() if len(t) >= 2)
        if not streets:
            raise ConfigError(
                f"{self.name}: 'junctions': no street passes two or more of the signals "
                f"{', '.join(candidates or [])}"
            )
        return streets

    def _find_chains(self, conn: Any, candidates: list[str] | None) -> list[_Chain]:
        """All chains of two or more signals along the corridor, in every travel direction."""
        names = {
            e: conn.edge.getStreetName(e) for e in conn.edge.getIDList() if not e.startswith(":")
        }
        streets = self._corridor_streets(conn, names, candidates)
        self.streets = streets
        wanted = set(streets)
        allow_cache: dict[str, bool] = {}

        def bike_lane(lane: str) -> bool:
            ok = allow_cache.get(lane)
            if ok is None:
                allowed = set(conn.lane.getAllowed(lane))
                ok = not allowed or "all" in allowed or "bicycle" in allowed
                allow_cache[lane] = ok
            return ok

        corridor = [e for e, n in names.items() if n in wanted]
        lanes: dict[str, list[str]] = {}
        for e in corridor:
            bikes = [f"{e}_{i}" for i in range(conn.edge.getLaneNumber(e))]
            bikes = [lane for lane in bikes if bike_lane(lane)]
            if bikes:
                lanes[e] = bikes
        if not lanes:
            raise ConfigError(
                f"{self.name}: '{self._key()}': no edge of {', '.join(streets)} admits bicycles"
            )
        ends = {e: (conn.edge.getFromJunction(e), conn.edge.getToJunction(e)) for e in lanes}
        tls_ids = candidates if candidates is not None else list(conn.trafficlight.getIDList())
        link_of: dict[tuple[str, str], tuple[str, int]] = {}
        for tls in tls_ids:
            for index, conns in enumerate(conn.trafficlight.getControlledLinks(tls)):
                for in_lane, out_lane, _via in conns:
                    link_of.setdefault((in_lane, out_lane), (tls, index))
        nxt: dict[str, str] = {}
        step: dict[str, tuple[float, str | None, set[int]]] = {}  # e -> (via length, tls, links)
        for e, bikes in lanes.items():
            options: dict[str, list[tuple[str, str, str, float]]] = {}
            for lane in bikes:
                for item in conn.lane.getLinks(lane):
                    succ, direction, length = item[0], item[6], float(item[7])
                    f = conn.lane.getEdgeID(succ)
                    if f not in lanes or direction not in _TURN_RANK or not bike_lane(succ):
                        continue
                    if ends[f][1] == ends[e][0]:
                        continue  # back the way it came
                    options.setdefault(f, []).append((lane, succ, direction, length))
            if not options:
                continue
            f = min(
                options,
                key=lambda f: (
                    names[f] != names[e],
                    min(_TURN_RANK[o[2]] for o in options[f]),
                    f,
                ),
            )
            nxt[e] = f
            tls, links = None, set()
            for lane, succ, _d, _len in options[f]:
                hit = link_of.get((lane, succ))
                if hit is not None and (tls is None or hit[0] == tls):
                    tls = hit[0]
                    links.add(hit[1])
            step[e] = (min(o[3] for o in options[f]), tls, links)
        length = {e: float(conn.lane.getLength(lanes[e][0])) for e in lanes}
        positions: dict[str, tuple[float, float]] = {}

        def pos(junction: str) -> tuple[float, float]:
            if junction not in positions:
                x, y = conn.junction.getPosition(junction)
                positions[junction] = (float(x), float(y))
            return positions[junction]

        # rings first (paths that close on themselves), then the paths from edges without a
        # predecessor, up to where they join a ring
        state: dict[str, int] = {}  # 1: on the current trail, 2: done
        ring_edges: set[str] = set()
        for e0 in sorted(lanes):
            trail: list[str] = []
            e: str | None = e0
            while e is not None and e not in state:
                state[e] = 1
                trail.append(e)
                e = nxt.get(e)
            if e is not None and state[e] == 1:
                ring_edges.update(trail[trail.index(e) :])
            state.update(dict.fromkeys(trail, 2))

        def walk(start: str, stop: set[str]) -> tuple[list[_Passage], list[str]]:
            """Signals met along the path from ``start`` (and the path's edges)."""
            passages: list[_Passage] = []
            by_tls: dict[str, _Passage] = {}
            path: list[str] = []
            seen: set[str] = set()
            dist = 0.0
            e: str | None = start
            while e is not None and e not in seen and (not path or e not in stop):
                seen.add(e)
                path.append(e)
                dist += length[e]
                via, tls, links = step.get(e, (0.0, None, set()))
                if tls is not None:
                    if tls in by_tls:  # a joined signal met twice: one green for both
                        by_tls[tls].links |= links
                    else:
                        p = _Passage(tls, set(links), dist, pos(ends[e][1]))
                        by_tls[tls] = p
                        passages.append(p)
                dist += via
                e = nxt.get(e)
            return passages, path

        chains: list[_Chain] = []
        covered: set[str] = set()
        for e in sorted(ring_edges):
            if e in covered:
                continue
            passages, path = walk(e, set())
            covered.update(path)
            if len(passages) >= 2:
                total = sum(length[x] + step.get(x, (0.0,))[0] for x in path)
                chains.append(_Chain(_cut_ring(passages, total)))
        has_pred = set(nxt.values())
        for head in sorted(e for e in lanes if e not in has_pred):
            chains.append(_Chain(walk(head, ring_edges)[0]))
        return [c for c in chains if len(c.passages) >= 2]

    def _select(self, chains: list[_Chain]) -> list[_Chain]:
        """Greedy choice of disjoint chains (see "Two-way streets" in the module docstring)."""

        def key(c: _Chain) -> tuple:
            base = (-len(c.passages), -round(c.length, 1), c.passages[0].tls)
            if self.direction in ("longest", "both"):
                return base
            hx, hy = c.heading()
            dx, dy = _COMPASS[self.direction]
            return (-round(hx * dx + hy * dy, 1), *base)

        def greedy(pool: list[_Chain], used: set[int]) -> list[_Chain]:
            taken: set[str] = set()
            out: list[_Chain] = []
            for c in sorted(pool, key=key):
                run: list[_Passage] = []
                for p in [*c.passages, None]:
                    if p is not None and p.tls not in taken:
                        run.append(p)
                        continue
                    if len(run) >= 2:
                        out.append(_Chain(run))
                        used.add(id(c))
                        taken.update(q.tls for q in run)
                    run = []
            return out

        used: set[int] = set()
        first = greedy(chains, used)
        if self.direction != "both":
            return first
        # the other travel direction: the chains not used, over the same signals again
        return first + greedy([c for c in chains if id(c) not in used], set())

    # -- programs -------------------------------------------------------------------------------
    def _analyse(self, conn: Any, tls: str, links: set[int]) -> _Signal | str:
        """The signal's program and corridor phase, or why it cannot run a green wave."""
        logic = active_program(conn, tls)
        if int(logic.type) not in _SUPPORTED_TYPES or not logic.phases:
            return "its program type is not static, actuated or delay_based"
        prog = SignalProgram(
            tls,
            logic,
            min_green_s=self.min_green_s,
            pedestrian_min_green_s=self.pedestrian_min_green_s,
            crossing_links=crossing_links(conn, tls),
        )
        n = len(prog.phases)
        if any(ph.nexts != ((ph.index + 1) % n,) for ph in prog.phases):
            return "its program branches (phase 'next'), it has no fixed cycle"
        corridor = links & prog.links_ever_green()
        best = max(
            (ph for ph in prog.phases if not ph.clearance),
            key=lambda ph: (len(ph.greens & corridor), ph.duration, -ph.index),
            default=None,
        )
        if best is None or not best.greens & corridor:
            return "no phase gives green to the corridor's bike links"
        main = best.greens & corridor
        start = best.index
        for _ in range(n):
            prev = (start - 1) % n
            if not main <= prog.phases[prev].greens:
                break
            start = prev
        else:
            return "the corridor's bike links are always green"
        if self.mode == "actuated" and best.max_s < self.window_s - _EPS:
            return f"'window_s' = {self.window_s:g} s exceeds its corridor green's maximum"
        return _Signal(
            tls=tls,
            chain=0,
            order=0,
            distance_m=0.0,
            links=frozenset(corridor),
            main=frozenset(main),
            program=prog,
            corridor_phase=best.index,
            run_start=start,
            original_cycle_s=sum(ph.duration for ph in prog.phases),
        )

    def _fit_cycle(self, sig: _Signal, cycle: float) -> None:
        """Phase durations for ``cycle``: extra time to the corridor phase, or greens cut."""
        phases = sig.program.phases
        durations = [ph.duration for ph in phases]
        diff = cycle - sum(durations)
        if diff >= -_EPS:
            durations[sig.corridor_phase] += max(diff, 0.0)
        else:
            need = -diff
            slack = {
                ph.index: self._grid(ph.duration - ph.min_s, down=True)
                for ph in phases
                if not ph.clearance
            }
            if sum(slack.values()) < need - _EPS:
                shortest = sum(durations) - sum(slack.values())
                raise ConfigError(
                    f"{self.name}: 'cycle_s' = {cycle:g} s is shorter than the shortest cycle of "
                    f"signal {sig.tls} ({shortest:g} s with minimum greens and full clearances)"
                )
            total = sum(slack.values())
            for k, s in slack.items():
                cut = min(s, self._grid(need * s / total, down=True))
                durations[k] -= cut
                need -= cut
            for k in sorted(slack, key=lambda k: -slack[k]):
                if need <= _EPS:
                    break
                room = durations[k] - phases[k].min_s
                cut = min(room, need)
                durations[k] -= cut
                need -= cut
        sig.durations = durations

    def _logic(self, conn: Any, sig: _Signal, current: int) -> Any:
        tl = conn.trafficlight
        phases = []
        for ph, d in zip(sig.program.phases, sig.durations, strict=True):
            lo = ph.duration if ph.clearance else min(ph.min_s, d)
            phases.append(tl.Phase(d, ph.state, lo, d, (), ""))
        return tl.Logic(self._program_id, tc.TRAFFICLIGHT_TYPE_STATIC, current, phases)

    def _grid(self, value: float, *, down: bool = False) -> float:
        """``value`` on the simulation step grid (rounded, or down)."""
        q = value / self._dt
        return (math.floor(q + _EPS) if down else round(q)) * self._dt

    def _plan(
        self, sig: _Signal, t: float, phase: int, spent: float, remaining: float
    ) -> tuple[float, float]:
        """Durations that bring the next corridor green start onto the target.

        Returns (new remaining time of the current phase, the next corridor green start) and
        fills ``sig.plan`` with the durations of the phases after the current one.
        """
        d, cycle = sig.durations, self.cycle
        path = self._path(sig, phase)
        natural = t + remaining + sum(d[q] for q in path[1:])
        delta = self._grid((sig.target - natural) % cycle)
        if delta >= cycle - _EPS:
            delta = 0.0
        slack = self._slack(sig, path, spent, remaining)
        change = dict.fromkeys(path, 0.0)
        back = cycle - delta
        if not slack:  # only clearances before the corridor green: adjust the cycle after it
            delta = 0.0
        if delta > 0 and back < delta and sum(max(s, 0.0) for s in slack.values()) >= back - _EPS:
            change = self._shorten(sig, path, slack, back)
            delta = -(cycle - delta)
        elif delta > 0:
            receiver = (
                sig.corridor_phase
                if sig.corridor_phase in slack
                else next(q for q in path if q in slack)
            )
            change[receiver] += delta
        sig.plan = {q: d[q] + change[q] for q in path[1:] if change[q] != 0.0}
        return remaining + change[phase], natural + delta

    @staticmethod
    def _path(sig: _Signal, phase: int) -> list[int]:
        """``phase`` and the phases after it up to (without) the corridor green run's start."""
        n = len(sig.program.phases)
        path, q = [phase], (phase + 1) % n
        while q != sig.run_start:
            path.append(q)
            q = (q + 1) % n
        return path

    def _slack(
        self, sig: _Signal, path: list[int], spent: float, remaining: float
    ) -> dict[int, float]:
        """Seconds each green phase of ``path`` may be cut (the first one is running)."""
        phases, slack = sig.program.phases, {}
        for q in path:
            if phases[q].clearance:
                continue
            if q == path[0]:
                slack[q] = self._grid(remaining - max(0.0, phases[q].min_s - spent), down=True)
            else:
                slack[q] = self._grid(sig.durations[q] - phases[q].min_s, down=True)
        return slack

    @staticmethod
    def _shorten(
        sig: _Signal, path: list[int], slack: dict[int, float], need: float
    ) -> dict[int, float]:
        """Cuts (negative changes per phase) of up to ``need`` s: the other directions' greens
        first, the corridor's last, none below its minimum, clearances never."""
        phases, change = sig.program.phases, dict.fromkeys(path, 0.0)
        for q in sorted(path, key=lambda q: bool(phases[q].greens & sig.links)):
            cut = min(max(slack.get(q, 0.0), 0.0), need)
            change[q] -= cut
            need -= cut
        return change

    # -- the controller interface ----------------------------------------------------------------
    def attach(self, sim: Simulation) -> None:
        """Find the chains, switch their signals to the common-cycle programs, start the waves
        (with measured offsets: after ``learn_s`` of observing the cyclists and the signals)."""
        conn = sim.conn
        self._dt = sim.step_length
        t = sim.time
        candidates = self._resolve_junctions(conn)
        chains = self._find_chains(conn, candidates)
        if not chains:
            raise ConfigError(
                f"{self.name}: '{self._key()}': found no two signals in a row along "
                f"{', '.join(self.streets)}"
            )
        chosen: list[list[_Signal]] = []
        skipped: list[str] = []
        by_tls: dict[str, _Signal] = {}
        for c in self._select(chains):
            sigs = []
            for p in c.passages:
                sig = by_tls.get(p.tls)
                if sig is not None:  # the other direction at a signal already taken
                    run = sig.program.phases[sig.corridor_phase].greens
                    corridor = frozenset(p.links & sig.program.links_ever_green())
                    if not corridor or not corridor <= run:
                        skipped.append(f"{p.tls} (the second direction's bike links are not "
                                       "green with the first's)")  # fmt: skip
                        continue
                    sigs.append((sig, p.dist, corridor))
                    continue
                sig = self._analyse(conn, p.tls, p.links)
                if isinstance(sig, str):
                    skipped.append(f"{p.tls} ({sig})")
                    continue
                sig.distance_m = p.dist
                sigs.append((sig, p.dist, sig.links))
            if len(sigs) >= 2:
                for sig, _d, _links in sigs:
                    by_tls.setdefault(sig.tls, sig)
                chosen.append(sigs)
                self._headings.append(c.heading())
        if skipped:
            log.warning("%s: signals left as they are: %s", self.name, "; ".join(skipped))
        if not chosen:
            raise ConfigError(
                f"{self.name}: '{self._key()}': no two signals in a row along "
                f"{', '.join(self.streets)} can be coordinated: {'; '.join(skipped)}"
            )
        self._t0 = t
        for chain_no, sigs in enumerate(chosen, start=1):
            d0 = sigs[0][1]
            for order, (sig, dist, links) in enumerate(sigs, start=1):
                if not sig.waves:  # the signal's first direction: also its fixed-mode fields
                    sig.chain, sig.order, sig.distance_m = chain_no, order, dist - d0
                sig.waves.append(_Wave(chain_no, order, dist - d0, links))
                if sig.tls not in self.signals:
                    self.signals[sig.tls] = sig
                    sig.last_phase = int(conn.trafficlight.getPhase(sig.tls))
                    sim.watch("trafficlight", sig.tls, _TL_VARS)
            self.chains.append([s.tls for s, _d, _l in sigs])
            self._chain_sigs.append([s for s, _d, _l in sigs])
        self._read = {var: sim.reader("trafficlight", var) for var in _TL_VARS}
        self._track = self.mode == "actuated" and (
            self.call == "bikes" or self.offsets == "measured"
        )
        if self._track:
            self._read.update({var: sim.reader("vehicle", var) for var in _BIKE_VARS})
            sim.watch_simulation(tc.VAR_DEPARTED_VEHICLES_IDS, tc.VAR_ARRIVED_VEHICLES_IDS)
            for vid in conn.vehicle.getIDList():
                self._consider(sim, vid)
        if self.learn_s > 0:
            self._start_at = t + self.learn_s
            log.info("%s: measuring cyclists' travel times for %g s first", self.name, self.learn_s)
        else:
            self._start(conn, t)

    def _start(self, conn: Any, t: float) -> None:
        """Choose the cycle, give every signal its targets (d / v or measured) and, in fixed
        mode, its common-cycle program."""
        sigs_all = list(self.signals.values())
        longest = max(s.original_cycle_s for s in sigs_all)
        cycle, self._cycle_source = longest, "longest program"
        if self.cycle_s is not None:
            cycle, self._cycle_source = self.cycle_s, "given"
        elif self.offsets == "measured":
            observed = []
            for s in sigs_all:
                gaps = [b - a for a, b in zip(s.starts[:-1], s.starts[1:], strict=True)]
                if len(gaps) >= 2:
                    observed.append(_median(gaps))
            if observed:
                cycle, self._cycle_source = _median(observed), "measured"
            # never shorter than what every signal needs for the window and its other phases
            shortest = max(self._shortest_cycle(s) for s in sigs_all)
            if shortest > cycle:
                cycle, self._cycle_source = shortest, "measured"
        self.cycle = math.ceil(cycle / self._dt - _EPS) * self._dt
        v = self.speed_mps
        self._t0 = t
        actuated = self.mode == "actuated"
        for chain_no, sigs in enumerate(self._chain_sigs, start=1):
            waves = [next(w for w in s.waves if w.chain == chain_no) for s in sigs]
            # the direction's riding speed from every cyclist measured on it (segments with too
            # few cyclists of their own take it); d / v where the direction has too few
            gaps = [w.distance_m - p.distance_m for p, w in zip(waves[:-1], waves[1:], strict=True)]
            got = {k: self._samples.get((chain_no, k), []) for k in range(1, len(waves))}
            n_samples = sum(len(x) for x in got.values())
            pooled = v
            if n_samples >= self.min_samples:
                riding = sum(sum(x) for x in got.values())
                pooled = sum(gaps[k - 1] * len(x) for k, x in got.items()) / max(riding, _EPS)
            travel = 0.0
            for k, w in enumerate(waves):
                if k:
                    seg = got[k]
                    if len(seg) >= self.min_samples:
                        travel += _median(seg)
                    else:
                        travel += gaps[k - 1] / pooled
                w.travel_s = self._grid(travel)
                w.measured = k > 0 and len(got[k]) >= self.min_samples
            n_measured = sum(1 for x in got.values() if len(x) >= self.min_samples)
            verdict = self._verdict(chain_no, sigs, n_measured, n_samples, pooled)
            self._verdicts.append(verdict)
            if not verdict["carried"]:
                log.warning("%s: direction %d (%s): no green wave: %s", self.name, chain_no,
                            verdict["heading"], verdict["reason"])  # fmt: skip
                for s, w in zip(sigs, waves, strict=True):
                    s.waves.remove(w)
                continue
            first = None
            for sig, w in zip(sigs, waves, strict=True):
                if not actuated:
                    self._fit_cycle(sig, self.cycle)
                elif not sig.durations:  # the program stays: its durations stand for the actuated
                    sig.durations = [ph.duration for ph in sig.program.phases]
                w.offset_s = w.travel_s % self.cycle
                phase = int(conn.trafficlight.getPhase(sig.tls))
                spent = float(conn.trafficlight.getSpentDuration(sig.tls))
                if sig.program.phases[phase].clearance:
                    remaining = max(0.0, float(conn.trafficlight.getNextSwitch(sig.tls)) - t)
                else:
                    remaining = max(0.0, sig.durations[phase] - spent)
                remaining = self._grid(remaining)
                if first is None:  # the first signal keeps its timing: the others follow it
                    w.target = t + remaining + self._natural_rest(sig, phase)
                    first = w.target
                else:
                    w.target = first + w.travel_s
                if w is sig.waves[0]:
                    sig.target, sig.offset_s = w.target, w.offset_s
                if not actuated:
                    new_remaining, _ = self._plan(sig, t, phase, spent, remaining)
                    conn.trafficlight.setProgramLogic(sig.tls, self._logic(conn, sig, phase))
                    conn.trafficlight.setPhaseDuration(sig.tls, new_remaining)
                sig.last_phase = phase
        for sig in sigs_all:
            if not sig.waves:
                sig.released = True  # no direction left here: the signal runs as it was
        if all(s.released for s in sigs_all):
            self._track = False  # no wave to serve: nothing more to follow
        self._start_at = None
        log.info(
            "%s (%s): %d signals in %d chains along %s, cycle %g s (%s), offsets from %s: %s",
            self.name,
            self.mode,
            len(self.signals),
            len(self.chains),
            ", ".join(self.streets),
            self.cycle,
            self._cycle_source,
            "measured travel times" if self.offsets == "measured" else f"{self.speed_kmh:g} km/h",
            "; ".join(" > ".join(c) for c in self.chains),
        )

    def _shortest_cycle(self, sig: _Signal) -> float:
        """The shortest cycle giving ``window_s`` of corridor green and every other phase its
        minimum (clearances in full)."""
        total = self.window_s
        for ph in sig.program.phases:
            if ph.clearance:
                total += ph.duration
            elif not sig.main <= ph.greens:
                total += ph.min_s
        return total

    def _verdict(
        self, chain_no: int, sigs: list[_Signal], n_measured: int, n_samples: int, speed: float
    ) -> dict[str, Any]:
        """Whether a direction carries a wave: with measured offsets it needs ``min_samples``
        cyclists measured riding from one of its signals to the next."""
        hx, hy = self._headings[chain_no - 1]
        heading = max(_COMPASS, key=lambda k: hx * _COMPASS[k][0] + hy * _COMPASS[k][1])
        riders = self._riders.get(chain_no, 0)
        # cyclists per hour riding a segment (signal to signal) of this direction
        rate = n_samples / max(len(sigs) - 1, 1) / max(self.learn_s / 3600.0, _EPS)
        carried, reason = True, ""
        if self.offsets == "measured" and (
            n_samples < self.min_samples or rate < self.min_cyclists_per_hour - _EPS
        ):
            carried = False
            reason = (
                f"too few cyclists ride it: {n_samples} measured from signal to signal in "
                f"{self.learn_s:g} s, {rate:.1f} per hour and segment (at least "
                f"{self.min_samples} and {self.min_cyclists_per_hour:g} per hour needed; "
                f"{riders} passages of its signals)"
            )
        return {
            "chain": chain_no,
            "heading": heading,
            "first": sigs[0].tls,
            "last": sigs[-1].tls,
            "signals": len(sigs),
            "segments_measured": n_measured,
            "travel_time_samples": n_samples,
            "cyclists_per_hour": round(rate, 1) if self.learn_s > 0 else float("nan"),
            "riding_speed_kmh": round(speed * 3.6, 1),
            "riders": riders,
            "carried": carried,
            "reason": reason,
        }

    def _consider(self, sim: Simulation, vid: str) -> None:
        vclass = sim.vehicle_class(vid)
        if vclass == "bicycle":
            self._bikes[vid] = _Bike()
            sim.watch("vehicle", vid, _BIKE_VARS)
        elif vclass in _TRANSIT:
            self._transit.add(vid)
            sim.watch("vehicle", vid, _BIKE_VARS)

    def _follow_bikes(self, sim: Simulation, t: float) -> dict[str, dict[int, list[float]]]:
        """Passages of the corridor signals (travel-time samples between consecutive ones) and
        the cyclists heading to each signal: signal -> wave index -> arrival times."""
        for vid in sim.sim_value(tc.VAR_DEPARTED_VEHICLES_IDS) or ():
            self._consider(sim, vid)
        for vid in sim.sim_value(tc.VAR_ARRIVED_VEHICLES_IDS) or ():
            self._bikes.pop(vid, None)
            self._transit.discard(vid)
        read_next, read_speed = self._read[tc.VAR_NEXT_TLS], self._read[tc.VAR_SPEED]
        calls: dict[str, dict[int, list[float]]] = {}
        self._transit_links.clear()
        for vid in self._transit:  # buses and trams about to use a signal's link
            upcoming = read_next(vid)
            if (
                upcoming
                and upcoming[0][0] in self.signals
                and float(upcoming[0][2]) <= self.detection_distance_m
            ):
                tls, link = upcoming[0][0], int(upcoming[0][1])
                self._transit_links.setdefault(tls, set()).add(link)
                self._transit_seen.setdefault(tls, set()).add(link)
        v = self.speed_mps
        reach = self.detection_distance_m
        for vid, b in self._bikes.items():
            upcoming = read_next(vid)
            if upcoming is None:
                continue
            entry = upcoming[0] if upcoming else None
            ahead = (entry[0], int(entry[1])) if entry else None
            speed = float(read_speed(vid) or 0.0)
            if b.ahead is not None and ahead != b.ahead:
                self._passed(b, b.ahead, t)
            elif b.passed is not None and speed < _HALT_SPEED:
                b.waited += self._dt
            b.ahead = ahead
            if entry is None or float(entry[2]) > reach:
                continue
            sig = self.signals.get(entry[0])
            if sig is None:
                continue
            for k, w in enumerate(sig.waves):
                if ahead[1] in w.links:
                    eta = t + float(entry[2]) / max(speed, v)
                    calls.setdefault(sig.tls, {}).setdefault(k, []).append(eta)
        return calls

    def _passed(self, b: _Bike, ahead: tuple[str, int], t: float) -> None:
        sig = self.signals.get(ahead[0])
        hit = None
        if sig is not None:
            hit = next((w for w in sig.waves if ahead[1] in w.links), None)
        if hit is None:
            b.passed = None
            return
        self._riders[hit.chain] = self._riders.get(hit.chain, 0) + 1
        p = b.passed
        if p is not None and p[0] == hit.chain and p[1] == hit.order - 1:
            self._samples.setdefault((hit.chain, p[1]), []).append(t - p[2] - b.waited)
        b.passed, b.waited = (hit.chain, hit.order, t), 0.0

    def _natural_rest(self, sig: _Signal, phase: int) -> float:
        """Seconds of the phases after ``phase`` up to the corridor green start."""
        return sum(sig.durations[q] for q in self._path(sig, phase)[1:])

    def _window(self, target: float, t: float) -> float:
        """Start of the wave window (of the direction with ``target``) running at ``t``, else of
        the next one."""
        ws = target + math.floor((t - target) / self.cycle + _EPS) * self.cycle
        return ws + self.cycle if t >= ws + self.window_s - _EPS else ws

    def _observe(self, sig: _Signal, t: float, green: bool) -> None:
        """Count the windows (after the first cycle) the corridor green covers, to one step; with
        ``call = "bikes"`` only the windows cyclists called, up to the last one's arrival."""
        if sig.window is not None and t >= sig.window + self.window_s - _EPS:
            if sig.window >= self._t0 + self.cycle - _EPS:
                sig.windows += 1
                sig.windows_met += sig.window_met
            if sig.called == sig.window:
                sig.called = None
            sig.window = None
        if self.call == "bikes":
            ws = sig.called
            if ws is None or ws > t + _EPS:
                return
            until = min(sig.need_until, ws + self.window_s)
        else:
            ws = self._window(sig.target, t)
            if ws > t + _EPS:
                return
            until = ws + self.window_s
        if sig.window != ws:
            sig.window, sig.window_met = ws, True
        if not green and ws + self._dt - _EPS <= t < until - _EPS:
            sig.window_met = False

    def _claimed(self, sim: Simulation, tls: str, t: float) -> bool:
        """Another controller (transit priority) holds a claim on this signal: it goes first."""
        claim = sim.shared.get("signal_claims", {}).get(tls)
        return claim is not None and claim[0] != self.name and claim[3] > t

    def _enforce(
        self,
        sim: Simulation,
        sig: _Signal,
        t: float,
        phase: int,
        spent: float,
        calls: Mapping[int, list[float]],
    ) -> None:
        """Actuated mode: cut the phases before the corridor green just in time for the window,
        hold a corridor green running into it until the window ends (``call = "bikes"``: only for
        a window cyclists heading this way will reach, and only until the last of them arrives).
        A signal another controller has claimed (a bus or tram served), or one a bus or tram
        approaches on a link the corridor green does not serve, is left alone."""
        transit = self._transit_links.get(sig.tls)
        served = sig.program.phases[sig.corridor_phase].greens
        if self._claimed(sim, sig.tls, t) or (transit and not transit <= served):
            self._yield(sim, sig, t, phase, spent, transit or set())
            return
        best: tuple[float, float] | None = None
        for k, w in enumerate(sig.waves):
            ws = self._window(w.target, t)
            if self.call == "always":
                need = ws + self.window_s
            else:
                etas = [e for e in calls.get(k, ()) if e <= ws + self.window_s + _EPS]
                if not etas:
                    continue
                need = min(ws + self.window_s, max(max(etas) + 2 * self._dt, ws + self._dt))
            if best is None or ws < best[0]:
                best = (ws, need)
        if best is None:
            return
        ws, need = best
        if self.call == "bikes":
            sig.called, sig.need_until = ws, need
        ph, tl = sig.program.phases[phase], sim.conn.trafficlight
        served = sig.program.phases[sig.corridor_phase].greens
        lines = self._transit_seen.get(sig.tls, set()) - served  # bus and tram lines crossing
        if sig.main <= ph.greens:
            if lines:  # their green is never delayed for the wave
                return
            if sig.held != need and need - (t - spent) <= ph.max_s + _EPS and need > t + _EPS:
                natural_end = float(self._read[tc.TL_NEXT_SWITCH](sig.tls))
                if self.call == "always" or (ws <= natural_end + _EPS < need):
                    tl.setPhaseDuration(sig.tls, need - t)
                    sig.held = need
            return
        if sig.cut == ws:
            return
        if ph.clearance:
            remaining = self._grid(max(0.0, self._read[tc.TL_NEXT_SWITCH](sig.tls) - t))
        else:
            remaining = self._grid(max(0.0, ph.max_s - spent))
        path = self._path(sig, phase)
        slack = self._slack(sig, path, spent, remaining)
        for q in slack:  # greens of bus or tram lines crossing the corridor are never cut
            if lines & sig.program.phases[q].greens:
                slack[q] = 0.0
        change = self._shorten(sig, path, slack, math.inf)
        earliest = t + remaining + sum(change.values())
        earliest += sum(sig.durations[q] for q in path[1:])
        if earliest + self._dt > ws + _EPS:  # one step later would be too late
            sig.plan = {q: sig.durations[q] + change[q] for q in path[1:] if change[q]}
            if change[phase]:
                tl.setPhaseDuration(sig.tls, remaining + change[phase])
            sig.cut = ws

    def _yield(
        self, sim: Simulation, sig: _Signal, t: float, phase: int, spent: float, transit: set[int]
    ) -> None:
        """A bus or tram first: drop the planned cuts, give back a cut green that serves it and
        end a corridor green held for the wave that keeps it waiting."""
        ph, tl = sig.program.phases[phase], sim.conn.trafficlight
        if sig.cut != -1.0:
            self._yields += 1
            sig.plan.clear()
            if sig.cut is not None and not ph.clearance and transit & ph.greens:
                tl.setPhaseDuration(sig.tls, max(sig.durations[phase], ph.min_s, spent) - spent)
            held = sig.held is not None and sig.held > t + _EPS and sig.main <= ph.greens
            if held and transit - ph.greens:
                tl.setPhaseDuration(sig.tls, max(ph.min_s - spent, 0.0))
            sig.held = None
        sig.cut = -1.0  # yielded: the next window is judged afresh

    def _learn(self, t: float) -> None:
        """Before the waves start: note each signal's corridor green starts (its cycle)."""
        read_phase = self._read[tc.TL_CURRENT_PHASE]
        for tls, sig in self.signals.items():
            phase = read_phase(tls)
            if phase is None:
                continue
            phase = int(phase)
            if phase != sig.last_phase:
                sig.last_phase = phase
                if phase == sig.run_start:
                    sig.starts.append(t - float(self._read[tc.TL_SPENT_DURATION](tls)))

    def step(self, sim: Simulation, t: float) -> None:
        """Apply planned phase durations; check every corridor green start against its target;
        in actuated mode enforce the wave window."""
        calls = self._follow_bikes(sim, t) if self._track else {}
        if self._start_at is not None:
            self._learn(t)
            if t >= self._start_at - _EPS:
                self._start(sim.conn, t)
            return
        read_phase = self._read[tc.TL_CURRENT_PHASE]
        read_program = self._read[tc.TL_CURRENT_PROGRAM]
        actuated = self.mode == "actuated"
        for tls, sig in self.signals.items():
            if sig.released:
                continue
            program = read_program(tls)
            if program is None:
                continue  # no results yet (TraCI subscription made this step)
            if program != (sig.program.program_id if actuated else self._program_id):
                sig.released = True
                self._released += 1
                log.warning("%s: signal %s switched to program %r: left", self.name, tls, program)
                continue
            phase = int(read_phase(tls))
            spent = float(self._read[tc.TL_SPENT_DURATION](tls))
            self._observe(sig, t, sig.main <= sig.program.phases[phase].greens)
            changed = phase != sig.last_phase
            if changed:
                sig.last_phase = phase
                planned = sig.plan.pop(phase, None)
                if planned is not None:
                    sim.conn.trafficlight.setPhaseDuration(tls, max(0.0, planned - spent))
                if phase == sig.run_start:
                    sig.plan.clear()
                    start = t - spent
                    error = (start - sig.target + self.cycle / 2) % self.cycle - self.cycle / 2
                    sig.last_error = error
                    self._green_starts.append((start, tls, error))
            if actuated:
                self._enforce(sim, sig, t, phase, spent, calls.get(tls, {}))
                continue
            if not changed or phase != sig.run_start:
                continue
            error, start = sig.last_error or 0.0, t - spent
            if abs(error) <= self._dt / 2 + _EPS:
                if sig.first_sync is None:
                    sig.first_sync = start
                sig.switching = False
                continue
            # still switching over, or someone moved this signal: bring the next corridor green
            # back onto the target
            if not sig.switching:
                self._resyncs += 1
            remaining = self._grid(max(0.0, sig.durations[phase] - spent))
            new_remaining, _ = self._plan(sig, t, phase, spent, remaining)
            sim.conn.trafficlight.setPhaseDuration(tls, new_remaining)

    def results(self) -> dict[str, tuple[float, str]]:
        """The mode, signals and chains coordinated, the cycle and speed, how well they kept in
        sync (actuated mode: the last window met), the share of windows met, the directions that
        carry a wave and those that cannot (see :attr:`directions`), the travel times measured."""
        sigs = list(self.signals.values())
        in_sync = sum(
            1
            for s in sigs
            if not s.released
            and (
                s.windows > 0 and s.window_met
                if self.mode == "actuated"
                else s.last_error is not None and abs(s.last_error) <= self._dt / 2 + _EPS
            )
        )
        extra = [s.durations[s.corridor_phase] - s.program.phases[s.corridor_phase].duration
                 for s in sigs if s.durations]  # fmt: skip
        length = sum(
            max((w.distance_m for s in sigs for w in s.waves if w.chain == k + 1), default=0.0)
            for k in range(len(self.chains))
        )
        shares = [s.windows_met / s.windows for s in sigs if s.windows]
        carried = sum(1 for v in self._verdicts if v["carried"])
        samples = sum(len(v) for v in self._samples.values())
        return {
            self._kpi("mode_actuated"): (float(self.mode == "actuated"), "1"),
            self._kpi("window"): (self.window_s, "s"),
            self._kpi("window_met_share"): (sum(shares) / len(shares) if shares else 0.0, "1"),
            self._kpi("windows_enforced"): (float(sum(s.windows for s in sigs)), "1"),
            self._kpi("signals_coordinated"): (float(len(sigs)), "1"),
            self._kpi("chains"): (float(len(self.chains)), "1"),
            self._kpi("directions_carried"): (float(carried), "1"),
            self._kpi("directions_not_carried"): (float(len(self._verdicts) - carried), "1"),
            self._kpi("corridor_length"): (length, "m"),
            self._kpi("cycle"): (self.cycle, "s"),
            self._kpi("cycle_measured"): (float(self._cycle_source == "measured"), "1"),
            self._kpi("progression_speed"): (self.speed_kmh, "km/h"),
            self._kpi("travel_time_samples"): (float(samples), "1"),
            self._kpi("segments_measured"): (
                float(sum(v["segments_measured"] for v in self._verdicts)),
                "1",
            ),
            self._kpi("corridor_green_extra_mean"): (
                sum(extra) / len(extra) if extra else 0.0,
                "s",
            ),
            self._kpi("signals_in_sync"): (float(in_sync), "1"),
            self._kpi("resyncs"): (float(self._resyncs), "1"),
            self._kpi("signals_released"): (float(self._released), "1"),
            self._kpi("yields_to_transit"): (float(self._yields), "1"),
        }

    @property
    def directions(self) -> list[dict[str, Any]]:
        """Per travel direction (chain): heading, first and last signal, segments measured,
        cyclists seen, whether it carries a wave and, if not, why (empty before the waves start)."""
        return [dict(v) for v in self._verdicts]

    def write_outputs(self, folder: Path) -> None:
        """<name>_signals.csv (one row per signal and direction), <name>_green_starts.csv,
        <name>_directions.csv (which directions carry a wave, and why not)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / f"{self.name}_signals.csv").open("w", newline="", encoding="utf-8") as fh:
            wr = csv.writer(fh)
            wr.writerow(
                ["chain", "order", "tls", "distance_m", "travel_time_s", "travel_time_measured",
                 "offset_s", "green_start_s", "cycle_s", "original_cycle_s", "corridor_phase",
                 "corridor_green_s", "corridor_links"]
            )  # fmt: skip
            rows = [(w, s) for s in self.signals.values() for w in s.waves]
            for w, s in sorted(rows, key=lambda r: (r[0].chain, r[0].order)):
                green = s.durations[s.corridor_phase] if s.durations else float("nan")
                wr.writerow(
                    [w.chain, w.order, s.tls, f"{w.distance_m:.1f}", f"{w.travel_s:.1f}",
                     int(w.measured), f"{w.offset_s:g}",
                     "" if s.first_sync is None else f"{s.first_sync:g}", f"{self.cycle:g}",
                     f"{s.original_cycle_s:g}", s.corridor_phase,
                     f"{green:g}", " ".join(map(str, sorted(w.links)))]
                )  # fmt: skip
        with (folder / f"{self.name}_green_starts.csv").open(
            "w", newline="", encoding="utf-8"
        ) as fh:
            wr = csv.writer(fh)
            wr.writerow(["time_s", "tls", "error_s"])
            for start, tls, error in self._green_starts:
                wr.writerow([f"{start:g}", tls, f"{error:g}"])
        keys = ["chain", "heading", "first", "last", "signals", "segments_measured",
                "travel_time_samples", "cyclists_per_hour", "riding_speed_kmh", "riders",
                "carried", "reason"]  # fmt: skip
        with (folder / f"{self.name}_directions.csv").open("w", newline="", encoding="utf-8") as fh:
            wr = csv.writer(fh)
            wr.writerow(keys)
            for v in self._verdicts:
                wr.writerow([int(v[k]) if k == "carried" else v[k] for k in keys])


def _median(values: list[float]) -> float:
    """The median of a non-empty list."""
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def _cut_ring(passages: list[_Passage], total: float) -> list[_Passage]:
    """A ring of signals as a chain starting after its longest gap (distances from there)."""
    n = len(passages)
    gaps = [
        (passages[(k + 1) % n].dist - passages[k].dist) % total if n > 1 else total
        for k in range(n)
    ]
    cut = max(range(n), key=lambda k: (gaps[k], -k))
    order = passages[cut + 1 :] + passages[: cut + 1]
    out, dist = [], 0.0
    for k, p in enumerate(order):
        if k:
            dist += (p.dist - order[k - 1].dist) % total
        out.append(_Passage(p.tls, p.links, dist, p.pos))
    return out
