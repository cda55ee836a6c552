"""Bike priority: early green where cyclists wait at red, short extensions for arriving ones.

Bicycle signals are a long-standing weak spot in SUMO (eclipse-sumo/sumo #3753, #12266, #5545):
cyclists often share links with cars or use their own bike-lane links. This controller works on
whatever links the cyclists' routes use (SUMO's ``VAR_NEXT_TLS`` names them), acts like a
push-button/detector call: when at least ``min_bikes`` cyclists wait within the detection distance
of a red link, the conflicting green is shortened to its minimum (clearances intact); a cyclist
about to arrive at the end of a green gets up to ``max_extension_s`` more. It shares the
first-come-first-served engine and the safety limits of transit priority, and yields to another
controller's claim on the same signal phase.
"""

from __future__ import annotations

from typing import Any

from twin.traffic.controllers.base import integer, number, text
from twin.traffic.controllers.priority import SignalPriority, common_params

__all__ = ["BikePriority"]


class BikePriority(SignalPriority):
    """Detector-style green requests for cyclists (vClass ``bicycle`` by default)."""

    kind = "bike_priority"
    params = {
        "name": text(default="bike_priority"),
        **common_params(30.0, 6.0, ["bicycle"]),
        "approach_speed_mps": number(0.5, default=5.5),  # SUMO's default bicycle speed, 20 km/h
        "min_bikes": integer(1, default=1),
        "waiting_speed_mps": number(0.0, default=0.5),
    }

    def __init__(
        self,
        *,
        name: str = "bike_priority",
        min_bikes: int = 1,
        waiting_speed_mps: float = 0.5,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("vclasses", ("bicycle",))
        kwargs.setdefault("detection_distance_m", 30.0)
        kwargs.setdefault("max_extension_s", 6.0)
        kwargs.setdefault("approach_speed_mps", 5.5)
        super().__init__(
            name=name, min_vehicles=min_bikes, waiting_speed_mps=waiting_speed_mps, **kwargs
        )
