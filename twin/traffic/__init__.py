"""SUMO traffic for the twin: network and demand build, scenario runs through libsumo/TraCI with
signal priority, virtual barriers and safety checks, and KPIs and reports.

The names below load on first use, so importing a light module of the package (its commands, the
network build step) does not start SUMO's bindings.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Controller", "RunResult", "Simulation", "SimulationError"]


def __getattr__(name: str) -> Any:
    if name == "Controller":
        from twin.traffic.controllers.base import Controller

        return Controller
    if name in ("RunResult", "Simulation", "SimulationError"):
        from twin.traffic import sim

        return getattr(sim, name)
    raise AttributeError(f"module 'twin.traffic' has no attribute {name!r}")
