"""Traffic controllers stepped with a SUMO run: transit and bike signal priority, a virtual barrier
with camera gates, and a signal safety monitor; ``build_controllers`` makes them from specs.
"""

from __future__ import annotations

import gzip
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twin.errors import ConfigError
from twin.traffic.controllers.barrier import Violation, VirtualBarrier
from twin.traffic.controllers.base import Controller
from twin.traffic.controllers.bike import BikePriority
from twin.traffic.controllers.greenwave import BikeGreenWave
from twin.traffic.controllers.priority import SignalPriority, TransitPriority
from twin.traffic.controllers.program import SignalProgram
from twin.traffic.controllers.safety import SafetyMonitor, SafetyViolation

__all__ = [
    "CONTROLLER_TYPES",
    "BikeGreenWave",
    "BikePriority",
    "Controller",
    "SafetyMonitor",
    "SafetyViolation",
    "SignalPriority",
    "SignalProgram",
    "TransitPriority",
    "Violation",
    "VirtualBarrier",
    "build_controllers",
    "check_spec",
    "is_gate",
]

CONTROLLER_TYPES: dict[str, type[Controller]] = {
    cls.kind: cls
    for cls in (TransitPriority, BikePriority, BikeGreenWave, VirtualBarrier, SafetyMonitor)
}


@dataclass(frozen=True)
class _NetIds:
    edges: frozenset[str]
    signals: frozenset[str]  # traffic light ids and the ids of signalised junctions


def _read_net_ids(net_file: Path) -> _NetIds:
    """Edge, traffic-light and signalised-junction ids of a SUMO net (.net.xml or .net.xml.gz)."""
    edges: set[str] = set()
    signals: set[str] = set()
    opener = gzip.open if net_file.suffix == ".gz" else open
    try:
        with opener(net_file, "rb") as fh:
            for _, el in ET.iterparse(fh, events=("end",)):
                tag = el.tag
                if tag == "edge":
                    if el.get("function") != "internal" and el.get("id"):
                        edges.add(el.get("id", ""))
                elif tag == "tlLogic" or (
                    tag == "junction" and "traffic_light" in el.get("type", "")
                ):
                    signals.add(el.get("id", ""))
                if tag in ("edge", "junction", "connection", "tlLogic"):
                    el.clear()
    except (OSError, ET.ParseError, EOFError) as exc:
        raise ConfigError(f"{net_file}: cannot read the SUMO network: {exc}") from exc
    return _NetIds(frozenset(edges), frozenset(signals))


def is_gate(gate: str, edges: frozenset[str] | set[str]) -> bool:
    """Whether a camera gate id names an edge of the net, or a lane of one ("<edge>_<index>")."""
    return gate in edges or gate.rsplit("_", 1)[0] in edges


def _check_ids(ids: Any, known: frozenset[str], where: str, key: str, what: str, net: Path) -> None:
    if isinstance(ids, list):
        for i in ids:
            if not (is_gate(i, known) if key == "gates" else i in known):
                raise ConfigError(f"{where}: {key!r}: {what} {i!r} is not in {net}")


def check_spec(item: Any, *, where: str) -> Controller:
    """One controller spec checked by its controller's own rules (type, keys, values); no net.

    ``where`` names the spec in messages, e.g. "controllers[2]"; the type is added to it.
    """
    if not isinstance(item, Mapping):
        raise ConfigError(f"{where}: expected a table, got {type(item).__name__}")
    kind = item.get("type")
    if kind not in CONTROLLER_TYPES:
        raise ConfigError(
            f"{where}: 'type' must be one of {', '.join(sorted(CONTROLLER_TYPES))}; got {kind!r}"
        )
    return CONTROLLER_TYPES[kind].from_spec(item, where=f"{where} (type {kind!r})")


def build_controllers(spec: Sequence[Mapping[str, Any]], *, net_file: Path) -> list[Controller]:
    """Controllers from scenario specs, e.g. ``[{"type": "transit_priority"}]``.

    Keys and values are validated (unknown type or key -> :class:`ConfigError` naming it); ids are
    checked against ``net_file``. Names default to the type and are made unique. A safety monitor
    without its own ``min_green_s`` checks the strictest minimum green of the signal controllers.
    """
    if not isinstance(spec, Sequence) or isinstance(spec, str | bytes):
        raise ConfigError(f"controllers: expected a list of tables, got {type(spec).__name__}")
    net_file = Path(net_file)
    ids: _NetIds | None = None
    out: list[Controller] = []
    names: set[str] = set()
    for i, item in enumerate(spec):
        ctl = check_spec(item, where=f"controllers[{i}]")
        where = f"controllers[{i}] (type {item['type']!r})"
        checks = [
            (key, "edge" if key != "junctions" else "signal")
            for key in ("zone_edges", "gates", "junctions")
            if isinstance(item.get(key), list)
        ]
        if checks:
            if ids is None:
                if not net_file.is_file():
                    raise ConfigError(f"{where}: net file {net_file} does not exist")
                ids = _read_net_ids(net_file)
            for key, what in checks:
                known = ids.signals if what == "signal" else ids.edges
                _check_ids(item[key], known, where, key, what, net_file)
        base, n = ctl.name, 2
        while ctl.name in names:
            ctl.name = f"{base}#{n}"
            n += 1
        names.add(ctl.name)
        out.append(ctl)
    strictest = [c.min_green_s for c in out if isinstance(c, SignalPriority)]
    for c in out:
        if isinstance(c, SafetyMonitor) and not c.explicit_min_green and strictest:
            c.min_green_s = max(strictest)
    return out
