"""Live readings for `twin run`: the sensor ingest from an MQTT broker into the run's own store
while the run goes on, read by a sensor feed whose clock follows the readings.

:class:`LiveFeed` is the :class:`~twin.sensors.feed.SensorFeed` over the run-local store
(``sensors/sensors.sqlite``), filled by the project's ingest as it runs for
`twin sensors ingest --mqtt`: an :class:`~twin.sensors.mqtt.MqttIngest` (paho's network thread,
QoS 1 on a persistent session) feeding an :class:`~twin.sensors.ingest.Ingestor` (its worker
process validates and writes). Nothing here parses or stores a message itself.

The clock follows the readings. Before the feed offers its readings at a time ``t``, it waits
until the newest reading stored (its reception time) is at least ``t`` less the feed's step, so
the coupler never runs past the newest reading by more than one feed step. When no newer reading
comes for ``wait_s`` seconds of wall time (a silent stream, a broker that went away) the feed
goes on without: the stretch is recorded as a stream outage (:meth:`LiveFeed.outages`), the
devices fall into gaps as in a replay, and the models go on on their own dynamics, one feed step
per ``wait_s`` while the stream stays silent. paho reconnects by itself; readings that arrive
late are in the store from then on and are used at the feed's next time, as long as they are not
older than ``max_age_s``. Everything started here (the MQTT client and its thread, the ingest's
threads and worker process) ends in :meth:`LiveFeed.finalize`, which the coupler calls when the
run ends, fails or is interrupted.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from twin.core import ModelError, format_utc
from twin.errors import ConfigError, DataError
from twin.sensors.feed import SensorFeed
from twin.sensors.profiles import DEFAULT_PROFILES, load_profiles

LIVE_KEYS = ("source", "catalogue", "wait_s", "connect_timeout_s", "client_id")


def describe(url: str) -> str:
    """The words status.json and the report use for a live source (no password)."""
    from twin.sensors.mqtt import parse_mqtt_url

    u = parse_mqtt_url(url)
    user = f"{u.username}@" if u.username else ""
    return f"live MQTT stream from mqtt://{user}{u.host}:{u.port} (topic {', '.join(u.topics)})"


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while the ingest is being ended, so that a second Ctrl-C (or the run
    layer's repeated interrupt) cannot stop it half-way and leave its worker process behind. A
    signal that came meanwhile is raised again afterwards, unless the run is already ending by
    an exception (an interrupt among them)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    handlers = {s: signal.signal(s, lambda n, f: came.append(n)) for s in held}
    try:
        yield
    finally:
        for s, h in handlers.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        if came and sys.exc_info()[0] is None:
            signal.raise_signal(came[0])


class LiveFeed(SensorFeed):
    """A sensor feed over the run's own store, filled from an MQTT broker while the run goes on.

    Config keys: those of :class:`SensorFeed` with ``store`` the run-local store, and
    ``source`` (``mqtt://host:port[?topic=...&client_id=...]``), ``catalogue`` (the devices the
    ingest knows), ``wait_s`` (wall-clock seconds to wait for a newer reading before going on
    without, default 1800), ``connect_timeout_s`` (default 10) and ``client_id`` (of the
    persistent session, unless the URL names one).

    The session is the run's: a resumed run gets what the broker kept for it meanwhile. Once the
    feed has reached the run's end its session is dropped on the broker (which would otherwise
    keep queueing for it), unless the URL names the client id: such a session is the user's, for
    the next run to continue from.
    """

    def _initialize(self, config: Mapping[str, Any]) -> None:
        from twin.sensors.ingest import Ingestor
        from twin.sensors.mqtt import MqttIngest
        from twin.sensors.store import SQLiteStore

        own = {k: config[k] for k in LIVE_KEYS if k in config}
        rest = {k: v for k, v in config.items() if k not in LIVE_KEYS}
        for key in ("source", "catalogue", "store"):
            if key not in config:
                raise ModelError(f"live sensor feed config: give {key!r}")
        self.source = str(own["source"])
        self.wait_s = float(own.get("wait_s", 1800.0))
        if not self.wait_s > 0:
            raise ModelError(f"live sensor feed config 'wait_s': expected > 0, got {self.wait_s}")
        self._cond = threading.Condition()
        self._newest = -math.inf  # reception time of the newest message stored (epoch s)
        self._window = {"before_start": 0, "in_window": 0, "after_end": 0}
        self._outages: list[list[Any]] = []  # [start, end or nan, cause] in epoch seconds
        self._silent_steps = 0
        self._at_end = False  # the feed has reached the run's end (its session can go)
        self._writer = SQLiteStore(rest["store"])  # the ingest's own connection (devices)
        self._running = True
        try:
            last = self._writer.status()["last_time"]  # a resumed run's store holds its readings
            if last is not None:
                self._newest = float(last)
            profiles = load_profiles(rest.get("profiles", DEFAULT_PROFILES))
            self._ingestor = Ingestor(self._writer, own["catalogue"], profiles,
                                      on_commit=self._committed)  # fmt: skip
            self._mqtt = MqttIngest(self.source, self._ingestor,
                                    client_id=own.get("client_id", "twin-run"))  # fmt: skip
            self._own_session = self._mqtt.url.client_id is None  # else the user's, kept
            self._client_id = self._mqtt.url.client_id or own.get("client_id", "twin-run")
            # the broker first: one that cannot be reached ends the run at once, no worker started
            self._mqtt.connect(float(own.get("connect_timeout_s", 10.0)))
            self._ingestor.start()
            super()._initialize(rest)
            self._await(0.0)
            super()._update_until(0.0)  # the readings at the start, now that they are in
        except BaseException:
            try:
                self._stop()
            finally:
                SensorFeed._finalize(self)  # the store the feed reads, if it was opened
            raise

    # -- the ingest ------------------------------------------------------------------------------

    def _committed(self, at: float, outcomes: list, tags: list) -> None:
        """A batch is in the store: the newest reception time moves on (ingest's thread)."""
        from twin.sensors.uplink import message_time

        start, end = self._span()
        newest = -math.inf
        for outcome, tag in zip(outcomes, tags, strict=False):
            if outcome.status != "stored" or tag is None:
                continue
            try:
                t = message_time(json.loads(tag.payload))
            except (ValueError, TypeError, AttributeError):
                continue
            if t is None or not math.isfinite(t):
                continue
            newest = max(newest, t)
            key = "before_start" if t < start else "after_end" if t > end else "in_window"
            self._window[key] += 1
        with self._cond:
            if newest > self._newest:
                self._newest = newest
            self._cond.notify_all()

    def _span(self) -> tuple[float, float]:
        clock = self.clock
        if clock is None:
            return -math.inf, math.inf
        start = clock.start.timestamp()
        return start, start + (clock.duration if clock.duration is not None else math.inf)

    def _await(self, t: float) -> None:
        """Wait until the stored readings reach ``t`` less one feed step, or until ``wait_s``
        passes without a newer one (then the stretch is an outage and the run goes on)."""
        at = self.epoch_seconds(t)
        need = at - self.time_step
        with self._cond:
            seen = self._newest
            deadline = time.monotonic() + self.wait_s
            while self._newest < need:
                if self._ingestor.error is not None:
                    raise DataError(f"{self._writer.path}: the live ingest stopped: "
                                    f"{self._ingestor.error}")  # fmt: skip
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(min(left, 0.25))  # short: signals are handled in between
                if self._newest > seen:  # a newer reading: the stream is alive, wait on
                    seen, deadline = self._newest, time.monotonic() + self.wait_s
            covered = self._newest >= need
            newest = self._newest
        open_ = self._outages and math.isnan(self._outages[-1][1])
        if covered:
            if open_:
                self._outages[-1][1] = at
            return
        self._silent_steps += 1
        if not open_:
            why = ("no connection to the broker" if not self._mqtt.connected.is_set()
                   else "no newer reading")  # fmt: skip
            last = (
                newest if math.isfinite(newest) else need
            )  # the last reading, or the step's start
            since = max(last, self._span()[0])
            self._outages.append([since, math.nan, f"{why} within {self.wait_s:g} s"])

    def _update_until(self, t: float) -> None:
        self._await(t)
        super()._update_until(t)
        self._at_end = math.isclose(self.epoch_seconds(t), self._span()[1], abs_tol=1e-3)

    # -- what the run reports --------------------------------------------------------------------

    def outages(self) -> list[dict[str, Any]]:
        """Stretches the run went on without the stream: {start, end (None: open at the end),
        cause} with ISO UTC times."""
        out = []
        for start, end, cause in self._outages:
            out.append({"start": _iso(start), "end": None if math.isnan(end) else _iso(end),
                        "cause": cause})  # fmt: skip
        return out

    def live_counts(self) -> dict[str, int]:
        """Messages received, stored, duplicates and quarantined by the ingest, the stored ones
        by where they fall against the run's window, broker connections and silent feed steps."""
        c = self._ingestor.counters
        return {"received": c.received, "stored": c.stored, "readings": c.readings,
                "duplicates": c.duplicates, "quarantined": c.quarantined, **self._window,
                "connections": self._mqtt.connections,
                "steps_without_stream": self._silent_steps}  # fmt: skip

    # -- checkpoints and the end -----------------------------------------------------------------

    def _save_state(self) -> Mapping[str, Any]:
        state = dict(super()._save_state())
        rows = self._outages
        state["live_outages"] = np.array([[a, b] for a, b, _ in rows], dtype=float).reshape(-1, 2)
        state["live_causes"] = np.array([c for *_, c in rows], dtype=str)
        return state

    def _load_state(self, state: Mapping[str, Any]) -> None:
        state = dict(state)
        times = np.asarray(state.pop("live_outages"), dtype=float).reshape(-1, 2)
        causes = [str(c) for c in state.pop("live_causes")]
        self._outages = [[float(a), float(b), c] for (a, b), c in zip(times, causes, strict=True)]
        super()._load_state(state)

    def _stop(self) -> None:
        """End the MQTT client and the ingest (what is queued is written first); idempotent."""
        if not getattr(self, "_running", False):
            return
        self._running = False
        ingestor, mqtt = getattr(self, "_ingestor", None), getattr(self, "_mqtt", None)
        with _signals_held():
            try:
                if ingestor is not None:
                    ingestor.close()  # writes and acknowledges what is queued
            finally:
                try:
                    if mqtt is not None:
                        mqtt.stop()
                        if self._at_end and self._own_session:
                            _drop_session(mqtt.url, self._client_id)
                finally:
                    self._writer.close()

    def _finalize(self) -> None:
        try:
            self._stop()
        finally:
            super()._finalize()


def _drop_session(url: Any, client_id: str, timeout: float = 5.0) -> None:
    """Connect once with a clean session under the ingest's client id: MQTT 3.1.1's way to make
    the broker forget the persistent session (a broker that does not answer keeps it)."""
    from twin.sensors.mqtt import make_client

    client = make_client(client_id, persistent=False, manual_ack=False, url=url)
    answered = threading.Event()
    client.on_connect = lambda *args: answered.set()
    try:
        client.connect(url.host, url.port, keepalive=10)
    except OSError:
        return
    client.loop_start()
    try:
        answered.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()


def _iso(seconds: float) -> str:
    from datetime import UTC, datetime

    return format_utc(datetime.fromtimestamp(float(seconds), UTC))


def check_source(source: str, path: Any) -> str:
    """Check a live source's URL at load; a bad one is one ConfigError naming the file and key."""
    from twin.sensors.mqtt import parse_mqtt_url

    try:
        parse_mqtt_url(source)
    except ConfigError as exc:
        raise ConfigError(f"{path}: 'models.sensors.source': {exc}") from None
    return source


__all__ = ["LiveFeed", "check_source", "describe"]
