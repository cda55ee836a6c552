"""Readings for the models: the sensor feed a ground-water run reads a store or a replayed file
through (the ground-water model never imports the sensors domain; this layer wires them)."""

from __future__ import annotations

from typing import Any

from twin.core import Model


def sensor_feed(setup: Any) -> tuple[Model, Any]:
    """A fresh sensor feed and the device catalogue of the set-up's pack (wells, stations, parking)."""
    from twin.sensors.devices import pack_catalogue
    from twin.sensors.feed import SensorFeed

    return SensorFeed(), pack_catalogue(setup.pack)
