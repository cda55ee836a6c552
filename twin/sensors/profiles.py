"""Device profiles: binary payload layouts per LoRaWAN port, derived quantities, units and valid ranges.

Profiles are read from a TOML file (by default the package resource ``twin/sensors/profiles.toml``); decoding and encoding use the
standard library's ``struct`` so the layouts stay declarative.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from twin.config import Field, load_toml, validate
from twin.errors import ConfigError, DataError

# The device profiles ship with the package (they are decoder definitions, not city data); the file is
# installed beside this module, so the resource is a real file whose path errors can name.
DEFAULT_PROFILES = Path(str(resources.files("twin.sensors") / "profiles.toml"))

_STRUCT = {"u8": "B", "i8": "b", "u16": "H", "i16": "h", "u32": "I", "i32": "i"}
_METHODS = ("copy", "reference_minus", "pressure_head")
_NUMBER = (int, float)  # a tuple, not `int | float`, which builds a union object at every call


class DecodeError(DataError):
    """A payload does not match its profile's layout (length, port, missing decoded field)."""

    reason = "decode"  # the quarantine reason of a message that fails so


class NumberError(DecodeError):
    """A value that cannot be a number: NaN ('not_a_number'), or beyond the float range such as
    1e400 (read as infinity) or a 400-digit integer ('overflow')."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def finite(value: int | float, what: str) -> float:
    """``value`` as a finite float, or a :class:`NumberError` naming ``what``: a JSON number such
    as 1e400 reads as infinity, and an integer of 400 digits has no float."""
    try:
        x = float(value)
    except OverflowError:
        raise NumberError(
            "overflow", f"{what}: an integer of {value.bit_length()} bits is beyond the float range"
        ) from None
    if math.isnan(x):
        raise NumberError("not_a_number", f"{what} is NaN")
    if math.isinf(x):
        raise NumberError("overflow", f"{what} is beyond the float range (read as {x})")
    return x


@dataclass(frozen=True)
class Quantity:
    """A measured quantity with its units and the range outside which a value is rejected."""

    name: str
    units: str
    description: str
    valid_min: float
    valid_max: float

    def in_range(self, value: float) -> bool:
        """True when ``value`` is finite and within the declared range (inclusive)."""
        return math.isfinite(value) and self.valid_min <= value <= self.valid_max


@dataclass(frozen=True)
class PayloadField:
    """One field of a binary payload: struct code, scale/offset to physical units, optional flag."""

    name: str
    code: str
    scale: float
    offset: float
    units: str
    flag: tuple[str, int] | None

    # Cached: these run for every field of every payload. (Format strings rather than compiled
    # Structs, which cannot be pickled to the ingest's worker process; the struct module keeps
    # its own cache of compiled formats.)
    @cached_property
    def struct_format(self) -> str:
        """The big-endian struct format of the field."""
        return ">" + self.code

    @cached_property
    def size(self) -> int:
        """Bytes the field takes in the payload."""
        return struct.calcsize(self.struct_format)


@dataclass(frozen=True)
class Output:
    """How one quantity is derived from a payload field."""

    quantity: str
    source: str
    method: str
    bit: int = 0


@dataclass(frozen=True)
class Layout:
    """The payload layout sent on one LoRaWAN port, and the quantities derived from it."""

    port: int
    name: str
    fields: tuple[PayloadField, ...]
    outputs: tuple[Output, ...]

    @cached_property
    def _whole(self) -> tuple[str, int, tuple[tuple[str, float, float], ...]] | None:
        """For a layout without optional fields: the struct format of the whole payload, its size,
        and each field's name, scale and offset; None when fields depend on flags."""
        if any(f.flag is not None for f in self.fields):
            return None
        fmt = ">" + "".join(f.code for f in self.fields)
        return fmt, struct.calcsize(fmt), tuple((f.name, f.scale, f.offset) for f in self.fields)

    def unpack(self, payload: bytes) -> dict[str, float]:
        """Field values (physical units) from the binary payload; flagged fields may be absent."""
        whole = self._whole
        if whole is not None and len(payload) == whole[1]:  # the usual case: one unpack call
            raws = struct.unpack(whole[0], payload)
            return {name: raw * scale + offset
                    for (name, scale, offset), raw in zip(whole[2], raws, strict=True)}  # fmt: skip
        values: dict[str, float] = {}
        pos = 0
        for f in self.fields:
            if f.flag is not None and not (int(values.get(f.flag[0], 0)) >> f.flag[1]) & 1:
                continue
            end = pos + f.size
            if end > len(payload):
                raise DecodeError(
                    f"port {self.port} ({self.name}): payload of {len(payload)} bytes ends before "
                    f"field '{f.name}' (needs {end} bytes)"
                )
            (raw,) = struct.unpack_from(f.struct_format, payload, pos)
            values[f.name] = raw * f.scale + f.offset
            pos = end
        if pos != len(payload):
            raise DecodeError(
                f"port {self.port} ({self.name}): payload has {len(payload)} bytes, layout uses {pos}"
            )
        return values

    def pack(self, values: Mapping[str, float]) -> bytes:
        """Binary payload for the given field values (the inverse of :meth:`unpack`)."""
        parts: list[bytes] = []
        present: dict[str, float] = {}
        for f in self.fields:
            if f.flag is not None and not (int(present.get(f.flag[0], 0)) >> f.flag[1]) & 1:
                continue
            if f.name not in values:
                raise DecodeError(f"port {self.port} ({self.name}): no value for field '{f.name}'")
            raw = round((float(values[f.name]) - f.offset) / f.scale)
            try:
                parts.append(struct.pack(">" + f.code, raw))
            except struct.error:
                raise DecodeError(
                    f"port {self.port} ({self.name}): field '{f.name}' value {values[f.name]!r} "
                    f"does not fit a {f.code!r} field"
                ) from None
            present[f.name] = raw * f.scale + f.offset
        return b"".join(parts)


@dataclass(frozen=True)
class Profile:
    """A device profile: which catalogue its devices come from and the layout of each port."""

    name: str
    catalogue: str
    description: str
    constants: Mapping[str, float]
    ports: Mapping[int, Layout]

    def layout(self, port: int) -> Layout:
        """The layout sent on ``port``; an unknown port is a :class:`DecodeError`."""
        try:
            return self.ports[port]
        except KeyError:
            known = ", ".join(str(p) for p in sorted(self.ports))
            raise DecodeError(
                f"profile {self.name}: no layout for f_port {port} (known: {known})"
            ) from None

    def derive(
        self, port: int, fields: Mapping[str, Any], device: Mapping[str, float]
    ) -> dict[str, float]:
        """Quantities from field values (decoded by us or by the network server) and the device's
        catalogue attributes (reference height, well depth)."""
        layout = self.layout(port)
        out: dict[str, float] = {}
        for o in layout.outputs:
            if o.source not in fields:
                field = next(f for f in layout.fields if f.name == o.source)
                if field.flag is not None:
                    continue  # an optional sensor the device does not have
                raise DecodeError(f"profile {self.name} port {port}: no field '{o.source}'")
            raw = fields[o.source]
            if isinstance(raw, bool) or not isinstance(raw, _NUMBER):
                raise DecodeError(
                    f"profile {self.name} port {port}: field '{o.source}' must be a number, "
                    f"got {raw!r:.40}"
                )
            try:
                value = float(raw)
            except OverflowError:
                value = math.inf
            if not math.isfinite(value):  # NaN, or beyond the float range: finite() says which
                finite(raw, f"profile {self.name} port {port}: field '{o.source}'")
            if o.method == "reference_minus":
                value = device["reference_height_m"] - value
            elif o.method == "pressure_head":
                c = self.constants
                probe = device["reference_height_m"] - (
                    device["well_depth_m"] - c["probe_above_bottom_m"]
                )
                value = probe + value / (c["water_density_kg_m3"] * c["gravity_m_s2"])
            elif o.method == "bit":
                value = float((int(value) >> o.bit) & 1)
            out[o.quantity] = value
        return out


@dataclass(frozen=True)
class Profiles:
    """All quantities and profiles of a profiles file."""

    path: Path
    quantities: Mapping[str, Quantity]
    profiles: Mapping[str, Profile]

    def for_catalogue(self, catalogue: str) -> Profile:
        """The profile used by devices of the given catalogue ('wells', 'stations', 'parking')."""
        for p in self.profiles.values():
            if p.catalogue == catalogue:
                return p
        raise ConfigError(f"{self.path}: no profile has catalogue = {catalogue!r}")


_QUANTITY = {
    "units": Field(str),
    "description": Field(str, required=False, default=""),
    "valid_min": Field(float),
    "valid_max": Field(float),
}
_FIELD = {
    "name": Field(str),
    "type": Field(str, choices=tuple(_STRUCT)),
    "scale": Field(float, required=False, default=1.0),
    "offset": Field(float, required=False, default=0.0),
    "units": Field(str, required=False, default="1"),
    "when_flag": Field(str, required=False),
}
_OUTPUT = {
    "name": Field(str),
    "from": Field(str),
    "method": Field(str, required=False, default="copy"),
}
_PORT = {
    "name": Field(str),
    "fields": Field(list, items=_FIELD),
    "quantities": Field(list, items=_OUTPUT),
}
_PROFILE = {
    "catalogue": Field(str, choices=("wells", "stations", "parking")),
    "description": Field(str, required=False, default=""),
    "constants": Field(dict, required=False, default={}),
    "ports": Field(dict),
}


def load_profiles(path: str | Path = DEFAULT_PROFILES) -> Profiles:
    """Read and check a profiles file; a bad file is a ConfigError naming the file and key."""
    path = Path(path)
    data = load_toml(path)
    top = validate(
        data,
        {"quantities": Field(dict), "profiles": Field(dict)},
        file=path,
    )
    quantities: dict[str, Quantity] = {}
    for qname, q in top["quantities"].items():
        qv = validate(_table(q, path, f"quantities.{qname}"), _QUANTITY, file=path,
                      where=f"quantities.{qname}.")  # fmt: skip
        if qv["valid_min"] > qv["valid_max"]:
            raise ConfigError(f"{path}: 'quantities.{qname}': valid_min must be <= valid_max")
        quantities[qname] = Quantity(
            qname, qv["units"], qv["description"], qv["valid_min"], qv["valid_max"]
        )
    profiles: dict[str, Profile] = {}
    for pname, p in top["profiles"].items():
        where = f"profiles.{pname}"
        pv = validate(_table(p, path, where), _PROFILE, file=path, where=where + ".")
        constants = {}
        for k, v in pv["constants"].items():
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ConfigError(f"{path}: '{where}.constants.{k}' must be a number, got {v!r}")
            constants[k] = float(v)
        ports: dict[int, Layout] = {}
        for key, port in pv["ports"].items():
            pwhere = f"{where}.ports.{key}"
            if not key.isdigit() or not 1 <= int(key) <= 223:
                raise ConfigError(f"{path}: '{pwhere}': a LoRaWAN application port is 1..223")
            ports[int(key)] = _layout(int(key), port, path, pwhere, quantities, constants)
        profiles[pname] = Profile(pname, pv["catalogue"], pv["description"], constants, ports)
    return Profiles(path, quantities, profiles)


def _table(value: Any, path: Path, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: '{where}' must be a table, got {value!r}")
    return value


def _layout(
    port: int,
    raw: Any,
    path: Path,
    where: str,
    quantities: Mapping[str, Quantity],
    constants: Mapping[str, float],
) -> Layout:
    lv = validate(_table(raw, path, where), _PORT, file=path, where=where + ".")
    fields: list[PayloadField] = []
    for i, f in enumerate(lv["fields"]):
        fwhere = f"{where}.fields[{i}]"
        if f["scale"] == 0:
            raise ConfigError(f"{path}: '{fwhere}.scale' must not be zero")
        flag = None
        if f["when_flag"] is not None:
            name, _, bit = f["when_flag"].partition(":")
            if not bit.isdigit() or name not in [g.name for g in fields]:
                raise ConfigError(
                    f"{path}: '{fwhere}.when_flag' must be 'FIELD:BIT' naming an earlier field, "
                    f"got {f['when_flag']!r}"
                )
            flag = (name, int(bit))
        fields.append(
            PayloadField(f["name"], _STRUCT[f["type"]], f["scale"], f["offset"], f["units"], flag)
        )
    names = {f.name for f in fields}
    outputs: list[Output] = []
    for i, o in enumerate(lv["quantities"]):
        owhere = f"{where}.quantities[{i}]"
        if o["name"] not in quantities:
            raise ConfigError(f"{path}: '{owhere}.name' {o['name']!r} is not a declared quantity")
        if o["from"] not in names:
            raise ConfigError(f"{path}: '{owhere}.from' {o['from']!r} is not a field of the port")
        method, bit = o["method"], 0
        if method.startswith("bit:") and method[4:].isdigit():
            method, bit = "bit", int(method[4:])
        elif method not in _METHODS:
            raise ConfigError(
                f"{path}: '{owhere}.method' must be one of {', '.join(_METHODS)} or 'bit:N', "
                f"got {o['method']!r}"
            )
        if method == "pressure_head":
            need = {"water_density_kg_m3", "gravity_m_s2", "probe_above_bottom_m"}
            if need - set(constants):
                raise ConfigError(
                    f"{path}: '{owhere}': method pressure_head needs constants "
                    f"{', '.join(sorted(need))}"
                )
        outputs.append(Output(o["name"], o["from"], method, bit))
    return Layout(port, lv["name"], tuple(fields), tuple(outputs))
