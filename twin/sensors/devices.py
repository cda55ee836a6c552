"""The devices the twin listens to: wells, climate stations and parking bays, keyed by DevEUI."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from twin.city.catalogue import read_parking, read_stations, read_wells
from twin.city.pack import DataPack
from twin.errors import DataError

KINDS = ("wells", "stations", "parking")
PACK_LAYERS = {"wells": "wells", "stations": "climate_stations", "parking": "parking"}


@dataclass(frozen=True)
class Device:
    """One sensor: catalogue id, DevEUI (upper-case hex), kind, position (EPSG:25832) and the
    numeric attributes its decoder needs (e.g. ``reference_height_m`` of a well)."""

    dev_eui: str
    id: str
    name: str
    kind: str
    x: float
    y: float
    z: float
    status: str
    attrs: Mapping[str, float] = field(default_factory=dict)


class Catalogue:
    """Devices by DevEUI, in catalogue order (wells, stations, parking)."""

    def __init__(self, devices: Iterable[Device]) -> None:
        self._by_eui: dict[str, Device] = {}
        for d in devices:
            if d.dev_eui in self._by_eui:
                other = self._by_eui[d.dev_eui]
                raise DataError(
                    f"device catalogue: DevEUI {d.dev_eui} is used by both {other.id} and {d.id}"
                )
            self._by_eui[d.dev_eui] = d

    def get(self, dev_eui: str) -> Device | None:
        """The device with this DevEUI (any case), or None."""
        return self._by_eui.get(dev_eui.upper())

    def of_kind(self, kind: str) -> list[Device]:
        """The devices of one kind, in catalogue order."""
        return [d for d in self._by_eui.values() if d.kind == kind]

    def __iter__(self) -> Iterator[Device]:
        return iter(self._by_eui.values())

    def __len__(self) -> int:
        return len(self._by_eui)


def pack_catalogue(pack: DataPack, *, parking: bool = True) -> Catalogue:
    """The devices of a data pack's layers `wells`, `climate_stations` and (if it has one and
    `parking` is true) `parking`."""
    files = {
        kind: pack.layers[layer].path for kind, layer in PACK_LAYERS.items() if layer in pack.layers
    }
    return load_catalogue(
        files["wells"], files["stations"], files.get("parking") if parking else None
    )


def load_catalogue(
    wells: Path | None, stations: Path | None = None, parking: Path | None = None
) -> Catalogue:
    """Read the catalogue CSVs that are given (None skips one); a missing file is a DataError."""
    devices: list[Device] = []
    well_attrs = (
        "ground_elevation_m", "reference_height_m", "well_depth_m", "screen_top_m", "screen_bottom_m",
    )  # fmt: skip
    sources = (
        # kind, file, reader, height of the sensor (m a.s.l.), attributes kept
        ("wells", wells, read_wells, lambda t, i: t["reference_height_m"][i], well_attrs),
        ("stations", stations, read_stations,
         lambda t, i: t["elevation_m"][i] + t["sensor_height_m"][i],
         ("elevation_m", "sensor_height_m")),
        ("parking", parking, read_parking, lambda t, i: float("nan"), ()),
    )  # fmt: skip
    for kind, path, reader, height, attrs in sources:
        if path is None:
            continue
        t = reader(Path(path))
        for i in range(len(t["id"])):
            devices.append(
                Device(
                    str(t["dev_eui"][i]).upper(),
                    str(t["id"][i]),
                    str(t["name"][i]),
                    kind,
                    float(t["x"][i]),
                    float(t["y"][i]),
                    float(height(t, i)),
                    str(t["status"][i]),
                    {k: float(t[k][i]) for k in attrs},
                )  # fmt: skip
            )
    return Catalogue(devices)
