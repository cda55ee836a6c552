"""Analysis of one SUMO signal program: which phase serves which link, and its safety limits.

Signal controllers and the safety monitor share these definitions, all derived from the original
program: a phase with amber ('y'/'u') or without any green is a clearance phase and is never
shortened; a green phase may be shortened to its minimum (its ``minDur`` when the program gives a
range, else ``min_green_s``, never more than its duration; at least ``pedestrian_min_green_s``
when a pedestrian crossing is green) and extended to its maximum (``maxDur`` when the program gives
a range, else its duration plus ``max_extension_s``). From the per-phase minima follow, per link,
the minimum green interval, the minimum amber, and the minimum intergreen time to every link that is
never green together with it. Programs may branch (``next``); the graph is searched with Dijkstra.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from twin.errors import ConfigError

__all__ = ["GREEN", "AMBER", "PhaseInfo", "SignalProgram", "is_crossing_lane", "traffic_lights_of"]

GREEN = frozenset("Gg")
AMBER = frozenset("yY")
_CLEARANCE = frozenset("yYu")


def traffic_lights_of(conn: Any, junctions: Iterable[str], owner: str) -> list[str]:
    """Traffic light ids for junction or traffic light ids (a junction may belong to a joined
    traffic light), in the given order without repeats; an unknown id is a ConfigError."""
    junctions = list(junctions)
    tls_ids = list(conn.trafficlight.getIDList())
    known = set(tls_ids)
    by_junction: dict[str, str] = {}
    if any(j not in known for j in junctions):
        for tls in tls_ids:
            for j in _controlled_junctions(conn, tls):
                by_junction.setdefault(j, tls)
    out: list[str] = []
    for jid in junctions:
        tls = jid if jid in known else by_junction.get(jid)
        if tls is None:
            raise ConfigError(
                f"{owner}: 'junctions': {jid!r} is neither a traffic light nor a signalised "
                "junction of the network"
            )
        if tls not in out:
            out.append(tls)
    return out


def _controlled_junctions(conn: Any, tls: str) -> list[str]:
    """Junctions a traffic light controls: libsumo asks SUMO; the TraCI client has no such call, so
    they come from the internal lanes (':<junction>_<k>_<i>') its links pass."""
    get = getattr(conn.trafficlight, "getControlledJunctions", None)
    if get is not None:
        return list(get(tls))
    found: list[str] = []
    for links in conn.trafficlight.getControlledLinks(tls):
        for _, _, via in links:
            if via.startswith(":"):
                j = via[1:].rsplit("_", 2)[0]
                if j not in found:
                    found.append(j)
    return found


def is_crossing_lane(lane_id: str) -> bool:
    """True for the lane of a pedestrian crossing (SUMO names them ':<junction>_c<k>_<i>')."""
    if not lane_id.startswith(":"):
        return False
    edge = lane_id.rsplit("_", 1)[0]
    tail = edge.rsplit("_", 1)[-1]
    return len(tail) > 1 and tail[0] == "c" and tail[1:].isdigit()


@dataclass(frozen=True)
class PhaseInfo:
    """One phase with its policy limits (seconds)."""

    index: int
    state: str
    duration: float
    min_s: float
    max_s: float
    nexts: tuple[int, ...]
    clearance: bool
    greens: frozenset[int]


class SignalProgram:
    """A signal program (a TraCI ``Logic``) with the limits every controller must respect."""

    def __init__(
        self,
        tls_id: str,
        logic: Any,
        *,
        min_green_s: float = 5.0,
        max_extension_s: float = 20.0,
        pedestrian_min_green_s: float = 7.0,
        crossing_links: Iterable[int] = (),
    ) -> None:
        self.tls_id = tls_id
        self.program_id = str(logic.programID)
        self.type = int(logic.type)
        crossings = frozenset(crossing_links)
        raw = list(logic.phases)
        if not raw:
            raise ValueError(f"signal {tls_id!r} program {self.program_id!r} has no phases")
        n = len(raw)
        self.n_links = len(raw[0].state)
        phases: list[PhaseInfo] = []
        for i, ph in enumerate(raw):
            state = str(ph.state)
            duration = float(ph.duration)
            min_dur = float(ph.minDur) if float(ph.minDur) >= 0 else duration
            max_dur = float(ph.maxDur) if float(ph.maxDur) >= 0 else duration
            greens = frozenset(k for k, c in enumerate(state) if c in GREEN)
            clearance = not greens or any(c in _CLEARANCE for c in state)
            if clearance:
                lo = min(min_dur, duration)
                hi = duration
            else:
                lo = min_dur if min_dur < duration else min(duration, min_green_s)
                if greens & crossings:
                    lo = max(lo, min(duration, pedestrian_min_green_s))
                hi = max_dur if max_dur > duration else duration + max_extension_s
            nexts = tuple(int(x) for x in getattr(ph, "next", ()) or () if 0 <= int(x) < n)
            if not nexts:
                nexts = ((i + 1) % n,)
            phases.append(PhaseInfo(i, state, duration, lo, hi, nexts, clearance, greens))
        self.phases = phases

    # -- basic queries ---------------------------------------------------------------------------
    def serves(self, phase: int, link: int) -> bool:
        """True if ``link`` has green (G or g) in ``phase``."""
        return link in self.phases[phase].greens

    def next_phase(self, phase: int) -> int:
        """The phase that normally follows ``phase`` (the first of its ``next`` list)."""
        return self.phases[phase].nexts[0]

    def is_last_green(self, phase: int, link: int) -> bool:
        """True if ``link`` is green in ``phase`` but not in the phase that follows it."""
        return self.serves(phase, link) and not self.serves(self.next_phase(phase), link)

    def links_ever_green(self) -> frozenset[int]:
        """Links that get green in some phase."""
        out: set[int] = set()
        for ph in self.phases:
            out |= ph.greens
        return frozenset(out)

    def green_left(self, link: int, phase: int, remaining: float) -> float:
        """Seconds of green left for ``link`` along the normal sequence (0 when it is not green)."""
        if not self.serves(phase, link):
            return 0.0
        total = remaining
        q = self.next_phase(phase)
        for _ in range(len(self.phases)):
            if q == phase or not self.serves(q, link):
                break
            total += self.phases[q].duration
            q = self.next_phase(q)
        return total

    def time_to_green(
        self, link: int, phase: int, remaining: float, spent: float, *, shortest: bool
    ) -> float:
        """Seconds until ``link`` turns green along the normal sequence (inf if it never does).

        ``shortest`` cuts every green phase on the way to its minimum (the current one counting
        ``spent`` seconds already shown); clearance phases always run in full.
        """
        if self.serves(phase, link):
            return 0.0
        cur = self.phases[phase]
        if shortest and not cur.clearance:
            total = min(remaining, max(0.0, cur.min_s - spent))
        else:
            total = remaining
        q = self.next_phase(phase)
        for _ in range(len(self.phases)):
            if self.serves(q, link):
                return total
            ph = self.phases[q]
            total += ph.min_s if shortest else ph.duration
            q = self.next_phase(q)
        return math.inf

    def lead_time(self, link: int) -> float:
        """Worst case of the shortest time to green for ``link`` when a request arrives.

        The request may come at the start of any green phase that does not serve the link: that
        phase's minimum plus everything (at minimum) up to the link's green. A detector closer to
        the stop line than this many seconds of travel cannot bring an early green in time (#15226).
        """
        worst = 0.0
        for ph in self.phases:
            if ph.clearance or link in ph.greens:
                continue
            ttg = self.time_to_green(link, ph.index, ph.duration, 0.0, shortest=True)
            if math.isfinite(ttg):
                worst = max(worst, ttg)
        return worst

    # -- safety limits per link -----------------------------------------------------------------
    def _green_exits(self, link: int) -> list[tuple[int, int]]:
        """(phase, successor) pairs where ``link`` loses its green."""
        out = []
        for ph in self.phases:
            if link in ph.greens:
                out.extend((ph.index, q) for q in ph.nexts if link not in self.phases[q].greens)
        return out

    @cached_property
    def min_green(self) -> dict[int, float]:
        """Per link, the shortest green interval the program allows (sum of phase minima)."""
        out: dict[int, float] = {}
        preds: dict[int, list[int]] = {ph.index: [] for ph in self.phases}
        for ph in self.phases:
            for q in ph.nexts:
                preds[q].append(ph.index)
        for link in self.links_ever_green():
            entries = [
                ph.index
                for ph in self.phases
                if link in ph.greens
                and any(link not in self.phases[p].greens for p in preds[ph.index])
            ]
            if not entries:
                continue  # always green: never ends
            dist = {p: self.phases[p].min_s for p in entries}
            heap = [(d, p) for p, d in dist.items()]
            heapq.heapify(heap)
            best = math.inf
            while heap:
                d, u = heapq.heappop(heap)
                if d > dist.get(u, math.inf):
                    continue
                for v in self.phases[u].nexts:
                    if link in self.phases[v].greens:
                        nd = d + self.phases[v].min_s
                        if nd < dist.get(v, math.inf):
                            dist[v] = nd
                            heapq.heappush(heap, (nd, v))
                    else:
                        best = min(best, d)
            if math.isfinite(best):
                out[link] = best
        return out

    @cached_property
    def min_amber(self) -> dict[int, float]:
        """Per link, the shortest amber ('y') the program shows after the link's green ends."""
        out: dict[int, float] = {}
        for link in self.links_ever_green():
            best = math.inf
            for _, q in self._green_exits(link):
                total, r, seen = 0.0, q, set()
                while self.phases[r].state[link] in AMBER and r not in seen:
                    seen.add(r)
                    total += self.phases[r].min_s
                    r = self.next_phase(r)
                best = min(best, total)
            if math.isfinite(best):
                out[link] = best
        return out

    @cached_property
    def conflicts(self) -> dict[int, frozenset[int]]:
        """Per link, the links that are never green in the same phase as it."""
        ever = self.links_ever_green()
        together: dict[int, set[int]] = {k: set() for k in ever}
        for ph in self.phases:
            for k in ph.greens:
                together[k] |= ph.greens
        return {k: frozenset(ever - together[k]) for k in ever}

    @cached_property
    def intergreen(self) -> dict[tuple[int, int], float]:
        """(ending link i, starting link j) -> shortest time from i's green end to j's green start.

        Only for conflicting pairs; paths through a phase where i is green again do not count.
        """
        out: dict[tuple[int, int], float] = {}
        for i in self.links_ever_green():
            targets = self.conflicts[i]
            if not targets:
                continue
            dist: dict[int, float] = {}
            heap: list[tuple[float, int]] = []
            for _, q in self._green_exits(i):
                if dist.get(q, math.inf) > 0.0:
                    dist[q] = 0.0
                    heap.append((0.0, q))
            heapq.heapify(heap)
            while heap:
                d, u = heapq.heappop(heap)
                if d > dist.get(u, math.inf):
                    continue
                ph = self.phases[u]
                for j in ph.greens & targets:
                    if d < out.get((i, j), math.inf):
                        out[(i, j)] = d
                for v in ph.nexts:
                    if i in self.phases[v].greens:
                        continue
                    nd = d + ph.min_s
                    if nd < dist.get(v, math.inf):
                        dist[v] = nd
                        heapq.heappush(heap, (nd, v))
        return out
