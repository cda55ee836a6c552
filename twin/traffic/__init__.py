"""SUMO traffic for the twin: network and demand build, scenario runs through libsumo/TraCI with
signal priority, virtual barriers and safety checks, and KPIs and reports.
"""

from twin.traffic.controllers.base import Controller
from twin.traffic.sim import RunResult, Simulation, SimulationError

__all__ = ["Controller", "RunResult", "Simulation", "SimulationError"]
