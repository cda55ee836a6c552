"""Safety monitor: checks every step that no signal shows less than the program's minimum green,
amber or intergreen (amber + all-red + pedestrian clearance) times, whoever changed the signal.

It reads the red/yellow/green state string of each signal every step (``Simulation.watch``: a
variable subscription with TraCI, a direct call with libsumo) and works only when a state changes.
The limits come from :class:`SignalProgram` applied to the program that is active when the monitor
attaches (re-derived if another program is switched in). Intervals that began before the monitor
attached are not judged.
"""

from __future__ import annotations

import csv
import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from traci import constants as tc

from twin.errors import ConfigError
from twin.traffic.controllers.base import Controller, id_list, number, text
from twin.traffic.controllers.program import AMBER, GREEN, SignalProgram, is_crossing_lane

if TYPE_CHECKING:
    from twin.traffic.sim import Simulation

__all__ = ["SafetyMonitor", "SafetyViolation", "active_program", "crossing_links"]

log = logging.getLogger(__name__)

_TOL = 1e-6
_CHECKED_TYPES = (
    tc.TRAFFICLIGHT_TYPE_STATIC,
    tc.TRAFFICLIGHT_TYPE_ACTUATED,
    tc.TRAFFICLIGHT_TYPE_DELAYBASED,
)


@dataclass(frozen=True)
class SafetyViolation:
    """One breach of a signal limit: when, where, what kind and by how much."""

    time: float
    tls: str
    link: int
    kind: str  # min_green, amber, no_amber, intergreen or conflicting_green
    observed_s: float
    required_s: float
    other_link: int = -1


def active_program(conn: Any, tls_id: str) -> Any:
    """The TraCI Logic of the program a signal runs now."""
    program = conn.trafficlight.getProgram(tls_id)
    for logic in conn.trafficlight.getAllProgramLogics(tls_id):
        if logic.programID == program:
            return logic
    raise ConfigError(f"signal {tls_id!r}: active program {program!r} not found")


def crossing_links(conn: Any, tls_id: str) -> frozenset[int]:
    """Link indices of a signal that lead pedestrians over a crossing."""
    out = set()
    for index, conns in enumerate(conn.trafficlight.getControlledLinks(tls_id)):
        if any(is_crossing_lane(lane) for c in conns for lane in c if lane):
            out.add(index)
    return frozenset(out)


@functools.lru_cache(maxsize=4096)
def _transition(
    old: str, new: str
) -> tuple[tuple[int, ...], frozenset[int], tuple[int, ...], tuple[int, ...]]:
    """Links whose green ended (and those of them that turned amber), whose amber ended and whose
    green began between two state strings. Signals cycle through few states, so this is cached."""
    ended, to_amber, amber_ended, started = [], set(), [], []
    for k, (a, b) in enumerate(zip(old, new, strict=True)):
        if a == b:
            continue
        was_green, is_green = a in GREEN, b in GREEN
        if was_green and not is_green:
            ended.append(k)
            if b in AMBER:
                to_amber.add(k)
        if a in AMBER and b not in AMBER:
            amber_ended.append(k)
        if is_green and not was_green:
            started.append(k)
    return tuple(ended), frozenset(to_amber), tuple(amber_ended), tuple(started)


class _SignalWatch:
    """Per-signal bookkeeping: last state and, per link, when its green/amber began or ended."""

    def __init__(self, program: SignalProgram, state: str, t: float) -> None:
        self.program = program
        self.state = state
        n = len(state)
        self.green_since: list[float | None] = [None] * n  # None: began before we watched
        self.amber_since: list[float | None] = [None] * n
        self.green_end: list[float | None] = [None] * n


class SafetyMonitor(Controller):
    """Records every step where a signal breaks minimum green, amber or intergreen times."""

    kind = "safety_monitor"
    params = {
        "name": text(default="safety_monitor"),
        "junctions": id_list("all", default="all"),
        "min_green_s": number(0.0, default=None),
        "pedestrian_min_green_s": number(0.0, default=7.0),
    }
    default_min_green_s = 5.0

    def __init__(
        self,
        *,
        name: str = "safety_monitor",
        junctions: str | list[str] = "all",
        min_green_s: float | None = None,
        pedestrian_min_green_s: float = 7.0,
    ) -> None:
        self.name = name
        self.junctions = junctions
        self.min_green_s = self.default_min_green_s if min_green_s is None else float(min_green_s)
        self.explicit_min_green = min_green_s is not None
        self.pedestrian_min_green_s = float(pedestrian_min_green_s)
        self.violations: list[SafetyViolation] = []
        self._watch: dict[str, _SignalWatch] = {}
        self._programs: dict[tuple[str, str], SignalProgram] = {}
        self._t0 = 0.0
        self._t = 0.0
        self._conn: Any = None

    def _program(self, tls_id: str, program_id: str) -> SignalProgram:
        key = (tls_id, program_id)
        prog = self._programs.get(key)
        if prog is None:
            logic = active_program(self._conn, tls_id)
            prog = SignalProgram(
                tls_id,
                logic,
                min_green_s=self.min_green_s,
                pedestrian_min_green_s=self.pedestrian_min_green_s,
                crossing_links=crossing_links(self._conn, tls_id),
            )
            self._programs[key] = prog
        return prog

    def attach(self, sim: Simulation) -> None:
        """Analyse the active program of each signal and start reading its state every step."""
        self._conn = sim.conn
        known = set(sim.conn.trafficlight.getIDList())
        if self.junctions == "all":
            ids = sorted(known)
        else:
            missing = [j for j in self.junctions if j not in known]
            if missing:
                raise ConfigError(
                    f"{self.name}: junctions: no traffic light {missing[0]!r} in the network"
                )
            ids = list(self.junctions)
        self._t0 = sim.time
        for tls in ids:
            program_id = sim.conn.trafficlight.getProgram(tls)
            logic = active_program(sim.conn, tls) if program_id != "off" else None
            if logic is None or not logic.phases or int(logic.type) not in _CHECKED_TYPES:
                # switched off, rail signals and crossings (they follow trains), NEMA (its own
                # ring-and-barrier logic is not a phase sequence)
                continue
            prog = self._program(tls, program_id)
            state = sim.conn.trafficlight.getRedYellowGreenState(tls)
            self._watch[tls] = _SignalWatch(prog, state, sim.time)
            sim.watch("trafficlight", tls, (tc.TL_RED_YELLOW_GREEN_STATE, tc.TL_CURRENT_PROGRAM))
        self._state = sim.reader("trafficlight", tc.TL_RED_YELLOW_GREEN_STATE)
        self._program_of = sim.reader("trafficlight", tc.TL_CURRENT_PROGRAM)

    def step(self, sim: Simulation, t: float) -> None:
        """Judge every signal whose state changed in this step."""
        self._t = t
        read = self._state
        for tls, watch in self._watch.items():
            state = read(tls)
            if state == watch.state or state is None:
                continue
            program_id = self._program_of(tls)
            if program_id != watch.program.program_id or len(state) != len(watch.state):
                logic = active_program(self._conn, tls) if program_id != "off" else None
                if logic is None or not logic.phases:
                    watch.state = state
                    continue
                # another program was switched in: judge against that program from now on
                self._watch[tls] = _SignalWatch(self._program(tls, program_id), state, t)
                continue
            self._on_change(tls, watch, state, t)

    def _on_change(self, tls: str, w: _SignalWatch, state: str, t: float) -> None:
        prog = w.program
        ended, to_amber, amber_ended, started = _transition(w.state, state)
        w.state = state
        for k in ended:
            since = w.green_since[k]
            need = prog.min_green.get(k)
            if since is not None and need is not None and t - since < need - _TOL:
                self._record(t, tls, k, "min_green", t - since, need)
            w.green_end[k] = t
            w.green_since[k] = None
            if k in to_amber:
                w.amber_since[k] = t
            else:
                amber = prog.min_amber.get(k, 0.0)
                if amber > 0:
                    self._record(t, tls, k, "no_amber", 0.0, amber)
        for k in amber_ended:
            since = w.amber_since[k]
            need = prog.min_amber.get(k)
            if since is not None and need is not None and t - since < need - _TOL:
                self._record(t, tls, k, "amber", t - since, need)
            w.amber_since[k] = None
        if not started:
            return
        for k in started:
            w.green_since[k] = t
        inter = prog.intergreen
        for j in started:
            for i in prog.conflicts.get(j, ()):
                if state[i] in GREEN:
                    if i not in started or i < j:  # once per pair
                        self._record(t, tls, j, "conflicting_green", 0.0, 0.0, other=i)
                    continue
                end = w.green_end[i]
                need = inter.get((i, j))
                if end is None or need is None:
                    continue
                if t - end < need - _TOL:
                    self._record(t, tls, j, "intergreen", t - end, need, other=i)

    def _record(
        self,
        t: float,
        tls: str,
        link: int,
        kind: str,
        observed: float,
        required: float,
        other: int = -1,
    ) -> None:
        v = SafetyViolation(t, tls, link, kind, observed, required, other)
        if not self.violations:
            log.warning(
                "%s: signal %s link %d %s %.1f s < %.1f s at t=%.0f",
                self.name,
                tls,
                link,
                kind,
                observed,
                required,
                t,
            )
        self.violations.append(v)

    def results(self) -> dict[str, tuple[float, str]]:
        """Signals checked and violations (count and per hour)."""
        hours = max(self._t - self._t0, 0.0) / 3600.0
        return {
            self._kpi("signals_checked"): (float(len(self._watch)), "1"),
            self._kpi("violations"): (float(len(self.violations)), "1"),
            self._kpi("violations_per_hour"): (
                len(self.violations) / hours if hours > 0 else 0.0,
                "1/h",
            ),
        }

    def write_outputs(self, folder: Path) -> None:
        """safety_violations.csv: one row per violation."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        fname = "safety_violations.csv" if self.name == self.kind else f"{self.name}_violations.csv"
        with (folder / fname).open("w", newline="", encoding="utf-8") as fh:
            wr = csv.writer(fh)
            wr.writerow(["time_s", "tls", "link", "kind", "observed_s", "required_s", "other_link"])
            for v in self.violations:
                wr.writerow(
                    [
                        f"{v.time:g}",
                        v.tls,
                        v.link,
                        v.kind,
                        f"{v.observed_s:g}",
                        f"{v.required_s:g}",
                        v.other_link,
                    ]
                )
