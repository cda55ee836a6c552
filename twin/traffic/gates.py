"""Queues and waits at the port's terminal gates, measured with SUMO detectors, per gate and overall.

Queue: the lane-area detectors (E2) over each gate's approach written by
:func:`twin.traffic.kpis.instruments` (``gates.e2.xml``, per minute). Wait: an instantaneous induction
loop at the start of each approach lane (``gates.e1.xml``) stamps when a lorry joins the approach, and
its check-in stop (``stopinfo.xml``, ``actType="gate:<id>"``) when it reached the gate; the wait is the
time between, less the time to drive that distance at the allowed speed (so a lorry that finds no
queue waits about 0 s). These are what slot booking is meant to shorten.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

GATES_E1 = "gates.e1.xml"  # per-vehicle times at the start of each gate approach
APPROACH_JSON = "gates.approach.json"  # loop id -> gate and free-flow time to the check-in

_UMLAUTS = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})


def gate_slug(name: str) -> str:
    """A gate's name as a KPI suffix: 'Tor 4 Mole Süd' -> 'tor_4_mole_sued'."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower().translate(_UMLAUTS)).strip("_")


def approach_loops(
    net: Any, gate_id: str, parts: list[tuple[str, float, float]]
) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Instant induction loops where a gate's approach begins, and each loop's free-flow time to
    the check-in. ``parts`` are the approach's lanes as (lane, start, end): the gate lane up to
    the check-in first, then the lanes feeding it (see :func:`twin.traffic.kpis.instruments`)."""
    gate_lane, _, checkin = parts[0]
    to_gate = checkin / max(net.getLane(gate_lane).getSpeed(), 0.1)
    starts = parts[1:] or [(gate_lane, 0.0, checkin)]
    lines, info = [], {}
    for k, (lane, start, end) in enumerate(starts):
        loop = f"gatein_{gate_id}_{k}"
        free = (
            to_gate
            if lane == gate_lane
            else (end - start) / max(net.getLane(lane).getSpeed(), 0.1) + to_gate
        )
        lines.append(
            f'    <instantInductionLoop id="{loop}" lane="{lane}" pos="{start:.2f}" '
            f'file="{GATES_E1}" friendlyPos="true"/>'
        )
        info[loop] = {"gate": gate_id, "free_s": round(free, 2)}
    return lines, info


def write_approach_info(folder: Path, info: dict[str, dict[str, Any]]) -> None:
    """Save the approach loops' gates and free-flow times beside the run's outputs."""
    (folder / APPROACH_JSON).write_text(json.dumps(info, indent=1, sort_keys=True) + "\n", "utf-8")


def gate_waits(folder: Path, from_s: float) -> dict[str, list[float]]:
    """Gate id -> wait (s) of every lorry whose check-in started at ``from_s`` or later and that
    was seen joining the gate's approach (the last time before its check-in)."""
    from twin.traffic.kpis import STOPINFO, _iter

    try:
        info = json.loads((folder / APPROACH_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    joined: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for el in _iter(folder / GATES_E1, "instantOut"):
        loop = info.get(el.get("id", ""))
        if loop is not None and el.get("state") == "enter":
            key = (loop["gate"], el.get("vehID", ""))
            joined.setdefault(key, []).append((float(el.get("time", 0)), float(loop["free_s"])))
    out: dict[str, list[float]] = {}
    for el in _iter(folder / STOPINFO, "stopinfo"):
        act = el.get("actType") or ""
        if not act.startswith("gate:"):
            continue
        started = float(el.get("started", -1))
        if started < from_s:
            continue
        gate = act.removeprefix("gate:")
        seen = [(t, free) for t, free in joined.get((gate, el.get("id", "")), []) if t <= started]
        if not seen:
            continue  # joined the approach before the loop could see it (e.g. departed on it)
        t, free = max(seen)
        out.setdefault(gate, []).append(max(0.0, started - t - free))
    return out


def gate_rows(
    folder: Path,
    gates: list[dict[str, Any]],
    queues: dict[str, dict[float, tuple[float, float]]],
    from_s: float,
) -> list[tuple[str, float, str]]:
    """Per gate (suffix: the gate's name, see :func:`gate_slug`) queue mean and maximum and mean
    wait per lorry; overall wait mean and maximum and the lorries measured."""
    waits = gate_waits(folder, from_s)
    rows: list[tuple[str, float, str]] = []
    every = [w for ws in waits.values() for w in ws]
    rows.append(("gate_wait_mean", sum(every) / len(every) if every else math.nan, "s/veh"))
    rows.append(("gate_wait_max", max(every, default=math.nan), "s"))
    rows.append(("gate_wait_lorries", float(len(every)), "veh"))
    for g in gates:
        slug = gate_slug(g.get("name") or g["id"])
        per = queues.get(g["id"], {})
        if per:
            means = [m for m, _ in per.values()]
            rows.append((f"gate_queue_mean_{slug}", sum(means) / len(means), "veh"))
            rows.append((f"gate_queue_max_{slug}", max(p for _, p in per.values()), "veh"))
        ws = waits.get(g["id"], [])
        rows.append((f"gate_wait_mean_{slug}", sum(ws) / len(ws) if ws else math.nan, "s/veh"))
    return rows
