"""MQTT: subscribe to network-server uplinks (paho-mqtt), and publish streams for simulation/replay.

The subscriber uses QoS 1 on a persistent session (``clean_session=False`` with a fixed client id),
so the broker queues messages while the twin is away, and acknowledges each message only after the
store has committed it (paho's manual acknowledgement): a crash between receipt and commit leads to
a redelivery, which the store recognises as a duplicate, never to a loss. paho reconnects with
exponential back-off.
"""

from __future__ import annotations

import functools
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from twin.errors import ConfigError
from twin.sensors.ingest import Ingestor
from twin.sensors.uplink import DEFAULT_TOPICS
from twin.sensors.validate import Outcome


class Receipt(NamedTuple):
    """What the ingest's ``on_commit`` gets as the tag of an MQTT message."""

    payload: bytes
    timestamp: float  # when paho received it (time.monotonic())


@dataclass(frozen=True)
class MqttUrl:
    """Broker address from ``mqtt://[user[:password]@]host[:port][?topic=...&client_id=...]``."""

    host: str
    port: int
    username: str | None
    password: str | None
    topics: tuple[str, ...]
    client_id: str | None


def parse_mqtt_url(url: str) -> MqttUrl:
    """Read an MQTT URL; only ``mqtt://`` (plain TCP) is understood."""
    parts = urlsplit(url)
    if parts.scheme != "mqtt" or not parts.hostname:
        raise ConfigError(
            f"MQTT URL {url!r}: expected mqtt://host[:port][?topic=...], e.g. mqtt://127.0.0.1:1883"
        )
    try:
        port = parts.port or 1883
    except ValueError:
        raise ConfigError(f"MQTT URL {url!r}: the port must be a number 1..65535") from None
    query = parse_qs(parts.query)
    unknown = set(query) - {"topic", "client_id"}
    if unknown:
        raise ConfigError(f"MQTT URL {url!r}: unknown parameter(s) {', '.join(sorted(unknown))}")
    return MqttUrl(
        parts.hostname,
        port,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
        tuple(query.get("topic", DEFAULT_TOPICS)),
        query.get("client_id", [None])[0],
    )


def make_client(client_id: str, *, persistent: bool, manual_ack: bool, url: MqttUrl) -> mqtt.Client:
    """A paho client as the ingest and the publisher use it (MQTT 3.1.1, reconnect back-off);
    ``persistent`` keeps the broker's session across disconnects (``clean_session=False``)."""
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=not persistent,
        protocol=mqtt.MQTTv311,
        manual_ack=manual_ack,
    )
    if url.username:
        c.username_pw_set(url.username, url.password)
    c.reconnect_delay_set(min_delay=0.25, max_delay=30)  # type: ignore[arg-type]
    return c


class MqttIngest:
    """Subscribes to uplink topics and feeds the :class:`Ingestor`; start, then stop when done.

    Each message is acknowledged after its batch is committed, on the connection it came in on;
    a message from an earlier connection is not acknowledged (the broker resends it and the store
    sees a duplicate), because its packet id may already name another message.
    """

    def __init__(
        self,
        url: str,
        ingestor: Ingestor,
        *,
        client_id: str = "twin-sensors-ingest",
        topics: Sequence[str] | None = None,
        max_inflight: int = 1000,
    ) -> None:
        self.url = parse_mqtt_url(url)
        self.topics = tuple(topics or self.url.topics)
        self.ingestor = ingestor
        self.client = make_client(
            self.url.client_id or client_id, persistent=True, manual_ack=True, url=self.url
        )
        self.client.max_inflight_messages_set(max_inflight)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self._subscribe_mid: int | None = None
        self.connected = threading.Event()  # subscribed: the broker acknowledged the SUBSCRIBE
        self._answered = threading.Event()  # the broker answered the first CONNECT
        self._refusal: str | None = None
        self.connections = 0
        self.session_present = False
        self._generation = 0
        self._source = f"mqtt:{self.url.host}:{self.url.port}"

    def start(self) -> MqttIngest:
        """Connect (retrying with back-off) and process messages in paho's network thread."""
        self.client.connect_async(self.url.host, self.url.port, keepalive=30)
        self.client.loop_start()
        return self

    def connect(self, timeout: float = 10.0) -> MqttIngest:
        """Connect now and wait until subscribed, or raise :class:`ConfigError` naming the broker
        and why (refused, unknown host, no answer within ``timeout`` s, refused by the broker);
        afterwards paho reconnects with back-off as after :meth:`start`."""
        where = f"MQTT broker {self.url.host}:{self.url.port}"
        self.client.connect_timeout = timeout
        try:
            self.client.connect(self.url.host, self.url.port, keepalive=30)
        except ConnectionRefusedError:
            raise ConfigError(f"{where}: connection refused (is the broker running?)") from None
        except socket.gaierror as exc:
            raise ConfigError(f"{where}: unknown host ({exc.strerror})") from None
        except TimeoutError:
            raise ConfigError(f"{where}: no answer within {timeout:g} s") from None
        except OSError as exc:
            raise ConfigError(f"{where}: cannot connect: {exc.strerror or exc}") from None
        self.client.loop_start()
        if not self._answered.wait(timeout) or self._refusal is not None:
            self.stop()
            why = self._refusal or f"no answer to CONNECT within {timeout:g} s"
            raise ConfigError(f"{where}: {why}")
        return self

    def wait_connected(self, timeout: float = 10.0) -> bool:
        """Block until subscribed (True) or the timeout passes (False)."""
        return self.connected.wait(timeout)

    def stop(self) -> None:
        """Disconnect and stop the network thread (queued messages stay with the ingestor)."""
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            if not self.connections:  # the first answer decides whether connect() fails
                self._refusal = f"the broker refused the connection: {reason_code}"
                self._answered.set()
            return
        self._generation += 1
        self.connections += 1
        self.session_present = bool(flags.session_present)
        # Subscribing again is harmless when the broker kept the session, and needed when it did not.
        # Subscribed means the broker's SUBACK (_on_subscribe): a message published before the
        # broker has the subscription of a new session is not queued for it, so it would be lost.
        _, self._subscribe_mid = client.subscribe([(t, 1) for t in self.topics])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if mid != self._subscribe_mid:
            return
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        if refused:
            if not self.connected.is_set():
                self._refusal = f"the broker refused the subscription: {', '.join(refused)}"
                self._answered.set()
            return
        self.connected.set()
        self._answered.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        # Nothing here keeps the paho message alive until the commit: each holds a lock and a
        # condition, and a thousand of them in flight made Python's garbage collector a large
        # part of the network thread's time. The callback is a partial of plain numbers, the
        # tag (for on_commit) a tuple of the payload and the receipt time.
        ack = functools.partial(self._ack, self._generation, msg.mid, msg.qos)
        self.ingestor.submit(msg.payload, self._source, ack, Receipt(msg.payload, msg.timestamp))

    def _ack(self, generation: int, mid: int, qos: int, outcome: Outcome) -> None:
        """Acknowledge a committed message, unless it came in on an earlier connection."""
        if qos > 0 and generation == self._generation:
            self.client.ack(mid, qos)


class MqttPublisher:
    """Publishes uplinks with QoS 1 and waits until the broker has acknowledged them all.

    Messages published while the connection is down stay queued in paho and go out after the
    reconnect; completion is counted from the broker's PUBACKs.
    """

    def __init__(
        self,
        url: str,
        client_id: str | None = None,
        max_inflight: int = 1000,
        connect_wait_s: float = 30.0,
    ) -> None:
        self.url = parse_mqtt_url(url)
        self.connect_wait_s = connect_wait_s
        cid = client_id or f"twin-sensors-pub-{int(time.time() * 1e6) % 10**9}"
        self.client = make_client(
            cid, persistent=client_id is not None, manual_ack=False, url=self.url
        )
        self.client.max_inflight_messages_set(max_inflight)
        self.client.max_queued_messages_set(0)
        self.client.on_publish = self._on_publish
        self.client.on_connect = self._on_connect
        self.connected = threading.Event()
        self.published = 0
        self.acknowledged = 0
        self._lock = threading.Lock()

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            self.acknowledged += 1

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            self.connected.set()

    def __enter__(self) -> MqttPublisher:
        """Connect and wait (up to `connect_wait_s`) for the broker's CONNACK: messages published
        before it are queued in paho, which sent a long queue out of order once connected (seen
        on a loaded machine), so a stream replayed at once would arrive shuffled."""
        self.client.connect_async(self.url.host, self.url.port, keepalive=30)
        self.client.loop_start()
        self.connected.wait(self.connect_wait_s)
        return self

    def publish(self, topic: str, payload: bytes) -> None:
        """Queue one message (sent now, or after a reconnect)."""
        self.client.publish(topic, payload, qos=1)
        self.published += 1

    def wait(self, timeout: float = 60.0) -> bool:
        """Wait until every published message has been acknowledged by the broker."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.acknowledged >= self.published:
                return True
            time.sleep(0.01)
        return False

    def __exit__(self, *exc: object) -> None:
        self.wait(30.0 if exc[0] is None else 0.0)
        self.client.disconnect()
        self.client.loop_stop()
