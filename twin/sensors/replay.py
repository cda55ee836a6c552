"""Send recorded or simulated uplinks (JSONL, one message per line) to a broker or a webhook, at the
pace their reception times give, sped up by a factor."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

from twin.errors import ConfigError, DataError
from twin.sensors.mqtt import MqttPublisher
from twin.sensors.uplink import message_time, shift_time, topic_for

FALLBACK_TOPIC = "v3/krefeld-twin@ttn/devices/unknown/up"


def read_jsonl(path: str | Path) -> Iterator[bytes]:
    """The non-blank lines of a JSONL file, as bytes (bad lines too: they are messages as well)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            for line in f:
                line = line.strip()
                if line:
                    yield line
    except OSError as exc:
        raise DataError(f"{path}: cannot read messages: {exc}") from None


def topic_of(msg: dict | None) -> str:
    """The topic the delivering server would have used for this message."""
    if not isinstance(msg, dict):
        return FALLBACK_TOPIC
    try:
        if "end_device_ids" in msg:
            ids = msg["end_device_ids"]
            app = ids.get("application_ids", {}).get("application_id", "krefeld-twin")
            return topic_for("tts", ids.get("dev_eui", ""), ids["device_id"], app)
        info = msg["deviceInfo"]
        return topic_for("chirpstack", info["devEui"], "", info.get("applicationId", "app"))
    except (KeyError, AttributeError, TypeError):
        return FALLBACK_TOPIC


def paced(
    lines: Iterable[bytes], speed: float, retime: bool = False
) -> Iterator[tuple[str, bytes]]:
    """``(topic, body)`` per line, sleeping so that message times pass ``speed`` times faster than
    real time (``speed <= 0``: no waiting). With ``retime`` the first message is moved to now and
    the others by the same amount, so a live ingest does not see them as late."""
    t0_msg: float | None = None
    t0_wall = time.monotonic()
    shift = 0.0
    for body in lines:
        try:
            msg = json.loads(body)
        except ValueError:
            msg = None
        t = message_time(msg) if isinstance(msg, dict) else None
        if t is not None:
            if t0_msg is None:
                t0_msg = t
                shift = time.time() - t if retime else 0.0
            if speed > 0:
                wait = (t - t0_msg) / speed - (time.monotonic() - t0_wall)
                if wait > 0:
                    time.sleep(wait)
            if retime and shift:
                shift_time(msg, shift)
                body = json.dumps(msg, separators=(",", ":")).encode()
        yield topic_of(msg), body


class HttpSender:
    """POSTs messages to a webhook over one keep-alive connection, with a bearer token."""

    def __init__(self, url: str, token: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ConfigError(f"HTTP URL {url!r}: expected http://host:port/path")
        self.host, self.port = parts.hostname, parts.port or 80
        self.path = parts.path or "/"
        if parts.query:
            self.path += "?" + parts.query
        self.token = token
        self._conn: http.client.HTTPConnection | None = None

    def send(self, body: bytes) -> int:
        """POST one message; return the HTTP status (one retry on a dropped connection)."""
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            try:
                self._conn.request("POST", self.path, body=body, headers={
                    "Content-Type": "application/json",
                    "Authorization": f"Bearer {self.token}",
                })  # fmt: skip
                r = self._conn.getresponse()
                r.read()
                if r.getheader("Connection", "").lower() == "close":
                    self.close()
                return r.status
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def send(
    items: Iterable[tuple[str, bytes]],
    *,
    mqtt_url: str | None = None,
    http_url: str | None = None,
    token: str = "",
    progress: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Send ``(topic, body)`` items to an MQTT broker (QoS 1, waits for all acknowledgements) or
    an HTTP webhook; return counts ('sent', and per HTTP status for a webhook)."""
    if (mqtt_url is None) == (http_url is None):
        raise ConfigError("replay: give exactly one of --mqtt URL or --http URL")
    counts: dict[str, int] = {"sent": 0}
    if mqtt_url is not None:
        with MqttPublisher(mqtt_url) as pub:
            for topic, body in items:
                pub.publish(topic, body)
                counts["sent"] += 1
                if progress and counts["sent"] % 500 == 0:
                    progress(counts["sent"])
            if not pub.wait(120.0):
                raise DataError(f"{mqtt_url}: the broker did not acknowledge every message")
        return counts
    sender = HttpSender(http_url or "", token)
    try:
        for _, body in items:
            status = sender.send(body)
            counts["sent"] += 1
            counts[f"http_{status}"] = counts.get(f"http_{status}", 0) + 1
            if progress and counts["sent"] % 500 == 0:
                progress(counts["sent"])
    finally:
        sender.close()
    return counts
