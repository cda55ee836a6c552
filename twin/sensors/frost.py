"""Export in the shape of the OGC SensorThings API (as served by FROST-Server), which German urban data
platforms read: Things with Locations and Datastreams (deep insert), and Observations in the
``CreateObservations`` dataArray form. Entity ids are client-given strings ("GWM-1:groundwater_head").
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from twin.geo import utm_to_wgs84
from twin.sensors.profiles import Profiles
from twin.sensors.store import Store
from twin.sensors.validate import flag_names

MEASUREMENT = "http://www.opengis.net/def/observationType/OGC-OM/2.0/OM_Measurement"
# Our unit text -> (name, UCUM symbol)
UCUM = {
    "m": ("metre", "m"),
    "degC": ("degree Celsius", "Cel"),
    "V": ("volt", "V"),
    "%": ("percent", "%"),
    "mm": ("millimetre", "mm"),
    "W m-2": ("watt per square metre", "W/m2"),
    "m s-1": ("metre per second", "m/s"),
    "degree": ("degree (angle)", "deg"),
    "1": ("one", "1"),
}


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sensorthings(
    store: Store, profiles: Profiles, start: float | None = None, end: float | None = None
) -> dict[str, Any]:
    """Things (with Locations, Datastreams, Sensors, ObservedProperties) and their Observations
    between ``start`` and ``end`` (UTC seconds; default: all)."""
    devices = store.devices()
    lon, lat = utm_to_wgs84(np.array([d.x for d in devices]), np.array([d.y for d in devices]))
    things = []
    streams: dict[str, list[str]] = {}
    for i, d in enumerate(devices):
        try:
            profile = profiles.for_catalogue(d.kind)
        except Exception:
            continue
        quantities = sorted({o.quantity for lay in profile.ports.values() for o in lay.outputs})
        datastreams = []
        for q in quantities:
            spec = profiles.quantities[q]
            name, symbol = UCUM.get(spec.units, (spec.units, spec.units))
            ds_id = f"{d.id}:{q}"
            streams.setdefault(q, []).append(d.id)
            datastreams.append({
                "@iot.id": ds_id,
                "name": f"{d.name} – {q}",
                "description": spec.description,
                "observationType": MEASUREMENT,
                "unitOfMeasurement": {"name": name, "symbol": symbol,
                                      "definition": f"http://unitsofmeasure.org/ucum#{symbol}"},
                "Sensor": {"@iot.id": profile.name, "name": profile.name,
                           "description": profile.description, "encodingType": "text/plain",
                           "metadata": f"LoRaWAN device profile {profile.name}"},
                "ObservedProperty": {"@iot.id": q, "name": q, "description": spec.description,
                                     "definition": f"urn:krefeld-twin:quantity:{q}"},
            })  # fmt: skip
        coords = [round(float(lon[i]), 7), round(float(lat[i]), 7)]
        things.append({
            "@iot.id": d.id,
            "name": d.id,
            "description": d.name,
            "properties": {"devEui": d.dev_eui, "kind": d.kind, "status": d.status,
                           "x_epsg25832": d.x, "y_epsg25832": d.y},
            "Locations": [{"@iot.id": f"{d.id}:location", "name": d.name,
                           "description": f"position of {d.id}",
                           "encodingType": "application/geo+json",
                           "location": {"type": "Point", "coordinates": coords}}],
            "Datastreams": datastreams,
        })  # fmt: skip
    lo = -np.inf if start is None else start
    hi = np.inf if end is None else end
    observations = []
    for q, ids in streams.items():
        rows: dict[str, list] = {}
        for r in store.window(q, lo, hi, ids):
            rows.setdefault(r.device_id, []).append(
                [_iso(r.time), r.value, flag_names(r.flags) or ["ok"]]
            )
        for dev, data in rows.items():
            observations.append({
                "Datastream": {"@iot.id": f"{dev}:{q}"},
                "components": ["phenomenonTime", "result", "resultQuality"],
                "dataArray@iot.count": len(data),
                "dataArray": data,
            })  # fmt: skip
    return {"Things": things, "CreateObservations": observations}
