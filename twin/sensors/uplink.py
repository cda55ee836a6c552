"""Uplink messages as LoRaWAN network servers deliver them: The Things Stack v3 and ChirpStack v4.

`parse_uplink` turns either JSON shape into one normalized :class:`Uplink`; `render_tts` and
`render_chirpstack` write the shapes (used by the simulator and by tests). Field names follow the
servers' documented JSON integration formats (TTS "Data Formats", ChirpStack ``integration.UplinkEvent``
in its JSON mapping).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

from twin.sensors.profiles import NumberError, finite

FORMATS = ("tts", "chirpstack")
# Nesting levels a message may have (the servers' messages have 6): deeper JSON is refused before
# the parser, which recurses once per level, ever sees it.
MAX_DEPTH = 32


class MessageRejected(Exception):
    """A message that cannot become readings; ``reason`` is a short key, ``detail`` says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Uplink:
    """One uplink, whatever server delivered it: device, frame counter, port, time and payload."""

    format: str
    dev_eui: str
    f_cnt: int
    f_port: int
    time: float  # seconds since 1970-01-01 UTC (network-server reception)
    payload: bytes | None
    decoded: dict[str, Any] | None
    rssi: float | None
    snr: float | None
    gateways: int
    gateway_time: float | None = None  # earliest gateway reception time, where gateways give one


_MISSING = object()
_HEX = frozenset("0123456789ABCDEF")
_NUMBER = (int, float)


def _field(parent: Any, key: str, path: str, kind: type, required: bool = True) -> Any:
    """``parent[key]`` (``path`` names it in messages), checked to be a ``kind``; when not
    ``required`` a missing or null value gives None. One level at a time, without splitting paths:
    this runs a few times for every message."""
    value = parent.get(key, _MISSING) if isinstance(parent, dict) else _MISSING
    if type(value) is kind:  # the usual case: JSON gives exactly str, dict, ...
        return value
    if value is _MISSING or (value is None and not required):
        if required:
            raise MessageRejected("schema", f"field '{path}' is missing")
        return None
    if isinstance(value, bool) or not isinstance(value, kind):
        raise MessageRejected(
            "schema", f"field '{path}' must be {kind.__name__}, got {value!r:.40}"
        )
    return value


def _eui(value: str, path: str) -> str:
    text = value.strip().upper()
    if len(text) != 16 or not _HEX.issuperset(text):
        raise MessageRejected("schema", f"field '{path}' must be 16 hex digits, got {value!r:.40}")
    return text


def _time(value: str, path: str) -> float:
    try:
        t = datetime.fromisoformat(value.strip())
        if t.tzinfo is None:
            raise MessageRejected("schema", f"field '{path}' has no time zone: {value!r:.40}")
        return t.timestamp()
    except (ValueError, OverflowError):  # OverflowError: year 1 at +14:00 has no timestamp
        raise MessageRejected(
            "schema", f"field '{path}' is not an ISO 8601 time: {value!r:.40}"
        ) from None


def _b64(value: str, path: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise MessageRejected(
            "decode", f"field '{path}' is not valid base64: {value!r:.40}"
        ) from None


def _counter(value: Any, path: str, top: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
        raise MessageRejected(
            "schema", f"field '{path}' must be an integer 0..{top}, got {value!r:.40}"
        )
    return value


_SPECIAL = re.compile(rb'[][{}"\\]')  # what the nesting scan looks at: brackets, quotes, escapes


def nesting_exceeds(body: bytes, limit: int = MAX_DEPTH) -> bool:
    """True when the JSON text nests arrays and objects deeper than ``limit`` (brackets within
    strings do not count). A linear scan of the bytes, without recursion."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False  # the usual case: fewer brackets than the limit, whatever their order
    depth = 0
    in_string = False
    escaped = -1  # the position after a backslash in a string
    for m in _SPECIAL.finditer(body):
        pos = m.start()
        if pos == escaped:
            continue
        c = body[pos]
        if in_string:
            if c == 0x5C:  # backslash
                escaped = pos + 1
            elif c == 0x22:  # quote
                in_string = False
        elif c == 0x22:
            in_string = True
        elif c in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif c in (0x5D, 0x7D):  # ] }
            depth -= 1
    return False


def _no_constants(name: str) -> NoReturn:
    raise MessageRejected("not_a_number", f"{name} in the message: JSON numbers are finite")


_DECODER = json.JSONDecoder(parse_constant=_no_constants)


def load_json(body: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value of a message body (UTF-8, an optional byte order mark). Raises
    :class:`MessageRejected`: 'invalid_json' (not UTF-8, not JSON), 'too_deep' (nested deeper than
    ``max_depth``), 'not_a_number' (NaN, Infinity) or 'overflow' (an integer too long to read)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MessageRejected("invalid_json", f"not UTF-8 text: {exc}") from None
    if nesting_exceeds(body, max_depth):
        raise MessageRejected("too_deep", f"JSON nested deeper than {max_depth} levels")
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise MessageRejected("invalid_json", f"not JSON: {exc}") from None
    except ValueError as exc:  # an integer over Python's 4300 digits for int <-> str
        raise MessageRejected("overflow", f"a number too long to read: {exc}") from None


def _real(value: int | float, path: str) -> float:
    try:
        return finite(value, f"field '{path}'")
    except NumberError as exc:
        raise MessageRejected(exc.reason, str(exc)) from None


def detect_format(msg: Any) -> str:
    """'tts' or 'chirpstack' from the message's keys; anything else is rejected as schema."""
    if isinstance(msg, dict):
        if "end_device_ids" in msg:
            return "tts"
        if "deviceInfo" in msg:
            return "chirpstack"
    raise MessageRejected(
        "schema", "neither a TTS message (end_device_ids) nor a ChirpStack event (deviceInfo)"
    )


def parse_uplink(msg: Any) -> Uplink:
    """Normalize a decoded JSON message of either server; raises :class:`MessageRejected`."""
    fmt = detect_format(msg)
    if fmt == "tts":
        ids = msg["end_device_ids"]
        dev = _eui(_field(ids, "dev_eui", "end_device_ids.dev_eui", str), "end_device_ids.dev_eui")
        if "uplink_message" not in msg:
            raise MessageRejected("not_uplink", "TTS message without uplink_message")
        up = _field(msg, "uplink_message", "uplink_message", dict)
        # TTS omits zero-valued fields ("empty fields are omitted"): f_cnt 0 arrives as no f_cnt.
        f_cnt = _counter(up.get("f_cnt", 0), "uplink_message.f_cnt", 0xFFFFFFFF)
        f_port = _counter(up.get("f_port", 0), "uplink_message.f_port", 255)
        path = "uplink_message.received_at"
        when = _field(up, "received_at", path, str, required=False)
        if when is None:
            path = "received_at"
            when = _field(msg, "received_at", path, str)
        t = _time(when, path)
        raw_path = "uplink_message.frm_payload"
        raw = _field(up, "frm_payload", raw_path, str, required=False)
        decoded = _field(up, "decoded_payload", "uplink_message.decoded_payload", dict,
                         required=False)  # fmt: skip
        meta = up.get("rx_metadata") or []
    else:
        ids = msg["deviceInfo"]
        dev = _eui(_field(ids, "devEui", "deviceInfo.devEui", str), "deviceInfo.devEui")
        f_cnt = _counter(msg.get("fCnt", 0), "fCnt", 0xFFFFFFFF)
        f_port = _counter(msg.get("fPort", 0), "fPort", 255)
        t = _time(_field(msg, "time", "time", str), "time")
        raw_path = "data"
        raw = _field(msg, "data", raw_path, str, required=False)
        decoded = _field(msg, "object", "object", dict, required=False)
        meta = msg.get("rxInfo") or []
    if not isinstance(meta, list):
        raise MessageRejected("schema", "receive metadata must be a list")
    payload = _b64(raw, raw_path) if raw else None
    if payload is None and not decoded:
        raise MessageRejected("decode", "neither a binary payload nor a decoded payload")
    if f_port == 0:
        raise MessageRejected("not_uplink", "f_port 0 carries MAC commands, not application data")
    rssi = snr = gw_time = None
    meta_path = "uplink_message.rx_metadata" if fmt == "tts" else "rxInfo"
    for i, m in enumerate(meta):
        if isinstance(m, dict):
            r, s = m.get("rssi"), m.get("snr")
            if isinstance(r, _NUMBER) and not isinstance(r, bool):
                r = _real(r, f"{meta_path}[{i}].rssi")
                if rssi is None or r > rssi:
                    rssi = r
                    ok = isinstance(s, _NUMBER) and not isinstance(s, bool)
                    snr = _real(s, f"{meta_path}[{i}].snr") if ok else None
            when = m.get("time")
            if isinstance(when, str):
                try:
                    g = _time(when, "rx time")
                except MessageRejected:
                    continue  # a gateway without a usable clock says nothing about skew
                gw_time = g if gw_time is None else min(gw_time, g)
    return Uplink(fmt, dev, f_cnt, f_port, t, payload, decoded, rssi, snr, len(meta), gw_time)


# -- writing the two shapes -------------------------------------------------------------------------


def _iso(t: float, digits: int) -> str:
    dt = datetime.fromtimestamp(t, UTC)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{dt.microsecond:06d}" + "0" * max(0, digits - 6)
    return f"{text}.{frac[:digits]}"


def _ids(dev_eui: str, f_cnt: int) -> str:
    return hashlib.sha1(f"{dev_eui}:{f_cnt}".encode()).hexdigest()


def render_tts(
    *,
    dev_eui: str,
    device_id: str,
    f_cnt: int,
    f_port: int,
    time: float,
    payload: bytes | None,
    decoded: dict[str, Any] | None,
    rssi: float = -100.0,
    snr: float = 7.0,
    application_id: str = "krefeld-twin",
    gateway_time: float | None = None,
) -> dict[str, Any]:
    """A TTS v3 uplink message (as its MQTT and webhook integrations send it)."""
    h = _ids(dev_eui, f_cnt)
    at = _iso(time, 9) + "Z"
    gw_at = _iso(time - 0.05 if gateway_time is None else gateway_time, 9) + "Z"
    up: dict[str, Any] = {
        "session_key_id": base64.b64encode(bytes.fromhex(h[:32])).decode(),
        "f_port": f_port,
        "f_cnt": f_cnt,
    }
    if payload is not None:
        up["frm_payload"] = base64.b64encode(payload).decode()
    if decoded is not None:
        up["decoded_payload"] = decoded
    up["rx_metadata"] = [
        {
            "gateway_ids": {"gateway_id": "kr-gw-01", "eui": "B827EBFFFE000001"},
            "time": gw_at,
            "timestamp": int(time * 1e6) % 2**32,
            "rssi": rssi,
            "channel_rssi": rssi,
            "snr": snr,
            "uplink_token": base64.b64encode(bytes.fromhex(h[:24])).decode(),
        }
    ]
    up["settings"] = {
        "data_rate": {"lora": {"bandwidth": 125000, "spreading_factor": 9, "coding_rate": "4/5"}},
        "frequency": "868100000",
        "timestamp": int(time * 1e6) % 2**32,
    }
    up["received_at"] = at
    up["consumed_airtime"] = "0.185344s"
    for key in ("f_cnt", "f_port"):  # TTS leaves out zero-valued fields
        if up[key] == 0:
            del up[key]
    return {
        "end_device_ids": {
            "device_id": device_id,
            "application_ids": {"application_id": application_id},
            "dev_eui": dev_eui.upper(),
            "join_eui": "70B3D57ED0000000",
            "dev_addr": h[:8].upper(),
        },
        "correlation_ids": [f"as:up:{h[:26].upper()}"],
        "received_at": at,
        "uplink_message": up,
    }


def render_chirpstack(
    *,
    dev_eui: str,
    device_id: str,
    f_cnt: int,
    f_port: int,
    time: float,
    payload: bytes | None,
    decoded: dict[str, Any] | None,
    rssi: float = -100.0,
    snr: float = 7.0,
    profile: str = "sensor",
    application_id: str = "00000000-0000-4000-8000-00000000cafe",
    gateway_time: float | None = None,
) -> dict[str, Any]:
    """A ChirpStack v4 uplink event (JSON marshaler, as MQTT and HTTP integrations send it)."""
    h = _ids(dev_eui, f_cnt)
    event: dict[str, Any] = {
        "deduplicationId": str(uuid.UUID(h[:32])),
        "time": _iso(time, 9) + "+00:00",
        "deviceInfo": {
            "tenantId": "00000000-0000-4000-8000-000000000001",
            "tenantName": "Stadt Krefeld",
            "applicationId": application_id,
            "applicationName": "krefeld-twin",
            "deviceProfileId": str(uuid.uuid5(uuid.NAMESPACE_URL, profile)),
            "deviceProfileName": profile,
            "deviceName": device_id,
            "devEui": dev_eui.lower(),
            "tags": {},
        },
        "devAddr": h[:8],
        "adr": True,
        "dr": 3,
        "fCnt": f_cnt,
        "fPort": f_port,
        "confirmed": False,
    }
    if payload is not None:
        event["data"] = base64.b64encode(payload).decode()
    if decoded is not None:
        event["object"] = decoded
    event["rxInfo"] = [
        {
            "gatewayId": "b827ebfffe000001",
            "uplinkId": int(h[:8], 16) % 65536,
            "time": _iso(time - 0.05 if gateway_time is None else gateway_time, 9) + "+00:00",
            "rssi": int(round(rssi)),
            "snr": snr,
            "context": base64.b64encode(bytes.fromhex(h[:8])).decode(),
            "metadata": {"region_config_id": "eu868", "region_common_name": "EU868"},
            "crcStatus": "CRC_OK",
        }
    ]
    event["txInfo"] = {
        "frequency": 868100000,
        "modulation": {"lora": {"bandwidth": 125000, "spreadingFactor": 9, "codeRate": "CR_4_5"}},
    }
    return event


def topic_for(fmt: str, dev_eui: str, device_id: str, application_id: str = "krefeld-twin") -> str:
    """The MQTT topic each server publishes uplinks on (TTS: v3/{app}@{tenant}/devices/{id}/up)."""
    if fmt == "tts":
        return f"v3/{application_id}@ttn/devices/{device_id}/up"
    return f"application/{application_id}/device/{dev_eui.lower()}/event/up"


DEFAULT_TOPICS = ("v3/+/devices/+/up", "application/+/device/+/event/up")


def message_time(msg: dict[str, Any]) -> float | None:
    """The reception time of a message of either shape, or None when it has none readable."""
    try:
        fmt = detect_format(msg)
        if fmt == "tts":
            up = msg.get("uplink_message") or {}
            text = up.get("received_at") or msg.get("received_at")
        else:
            text = msg.get("time")
        return _time(text, "time") if isinstance(text, str) else None
    except MessageRejected:
        return None


def shift_time(msg: dict[str, Any], seconds: float) -> None:
    """Move every time stamp of a message by ``seconds`` (in place), for replays retimed to now."""

    def move(text: Any, suffix: str) -> Any:
        if not isinstance(text, str):
            return text
        try:
            t = _time(text, "time")
        except MessageRejected:
            return text
        return _iso(t + seconds, 9) + suffix

    if "end_device_ids" in msg:
        msg["received_at"] = move(msg.get("received_at"), "Z")
        up = msg.get("uplink_message")
        if isinstance(up, dict):
            up["received_at"] = move(up.get("received_at"), "Z")
            for m in up.get("rx_metadata") or []:
                if isinstance(m, dict) and "time" in m:
                    m["time"] = move(m["time"], "Z")
    elif "deviceInfo" in msg:
        msg["time"] = move(msg.get("time"), "+00:00")
        for m in msg.get("rxInfo") or []:
            if isinstance(m, dict) and "time" in m:
                m["time"] = move(m["time"], "+00:00")
