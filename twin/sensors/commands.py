"""`twin sensors ...`: simulate, replay, ingest (MQTT, HTTP, files), status, quarantine, export, broker."""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from twin.errors import ConfigError, DataError

TOKEN_ENV = "TWIN_SENSORS_TOKEN"


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _add_catalogue_args(p: argparse.ArgumentParser) -> None:
    from twin.app.pack import add_pack_args

    g = p.add_argument_group(
        "catalogue (default: the pack's layers wells, climate_stations, parking)"
    )
    add_pack_args(g, build_dir=False)
    g.add_argument(
        "--wells", type=Path, default=None, help="well catalogue CSV instead of the pack's"
    )
    g.add_argument("--stations", type=Path, default=None, help="climate stations CSV instead")
    g.add_argument("--parking", type=Path, default=None, help="parking sensors CSV instead")
    g.add_argument("--no-parking", action="store_true", help="leave the parking sensors out")
    g.add_argument("--profiles", type=Path, default=None,
                   help="device profiles TOML (default: the profiles shipped with twin)")  # fmt: skip


def _catalogue(args: argparse.Namespace):
    """The devices of the command's pack (by the one pack rule), a layer replaced where a CSV is
    given, and the device profiles."""
    from twin.app.pack import resolve_pack
    from twin.sensors.devices import PACK_LAYERS, load_catalogue
    from twin.sensors.profiles import DEFAULT_PROFILES, load_profiles

    files = {"wells": args.wells, "stations": args.stations, "parking": args.parking}
    wanted = [k for k, f in files.items() if f is None and not (k == "parking" and args.no_parking)]
    if wanted:
        pack = resolve_pack(args.pack)
        files.update({k: pack.layers[PACK_LAYERS[k]].path for k in wanted
                      if PACK_LAYERS[k] in pack.layers})  # fmt: skip
    if args.no_parking:
        files["parking"] = None
    catalogue = load_catalogue(files["wells"], files["stations"], files["parking"])
    return catalogue, load_profiles(args.profiles or DEFAULT_PROFILES)


def _store_arg(p: argparse.ArgumentParser) -> None:
    from twin.sensors.store import DEFAULT_STORE

    p.add_argument(
        "--store", type=Path, default=DEFAULT_STORE, help="SQLite store (default: %(default)s)"
    )


def _parse_time(text: str, what: str) -> float:
    from twin.core import parse_utc

    return parse_utc(text, field=what).timestamp()


class _Live:
    """Prints a counter line now and then: in place on a terminal, as lines otherwise."""

    def __init__(self, line: Callable[[], str]) -> None:
        self.line = line
        self.tty = sys.stderr.isatty()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.monotonic()

    def _run(self) -> None:
        every = 0.5 if self.tty else 5.0
        while not self._stop.wait(every):
            self.show()

    def show(self, end: str = "") -> None:
        text = f"  {self.line()}  ({time.monotonic() - self._t0:.0f} s)"
        if self.tty:
            sys.stderr.write("\r" + text + "\033[K" + end)
            sys.stderr.flush()
        else:
            _say(text)

    def __enter__(self) -> _Live:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)
        if exc[0] is None or exc[0] is KeyboardInterrupt:
            self.show("\n")


# -- simulate ----------------------------------------------------------------------------------------


def cmd_simulate(args: argparse.Namespace) -> int:
    """Write or publish a simulated stream of uplinks for every catalogue sensor."""
    from twin.sensors.replay import send
    from twin.sensors.simulate import simulate, stream

    targets = [x for x in (args.out, args.mqtt, args.http) if x is not None]
    if len(targets) != 1:
        raise ConfigError("twin sensors simulate: give exactly one of --out, --mqtt or --http")
    if not args.minutes > 0:
        raise ConfigError(f"--minutes: expected a positive number, got {args.minutes}")
    catalogue, profiles = _catalogue(args)
    if args.start is not None:
        start = _parse_time(args.start, "--start")
    else:
        start = (int(time.time()) // 60) * 60 - args.minutes * 60.0
    events = simulate(catalogue, profiles, start=start, minutes=args.minutes, seed=args.seed,
                      clean=args.clean)  # fmt: skip
    items = stream(events, args.format, args.payload)
    if args.out is not None:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".part")
        with tmp.open("wb") as f:
            for _, _, body in items:
                f.write(body + b"\n")
        tmp.replace(out)
        faults = sum(1 for e in events if e.fault)
        print(f"{len(events)} uplinks ({faults} malformed) from {len(catalogue)} sensors -> {out}")
        return 0
    from twin.sensors.replay import paced

    lines = (body for _, _, body in items)
    counts = send(paced(lines, args.speed), mqtt_url=args.mqtt, http_url=args.http,
                  token=_token(args, required=args.http is not None))  # fmt: skip
    print(json.dumps(counts))
    return 0


def _token(args: argparse.Namespace, required: bool) -> str:
    token = getattr(args, "token", None) or os.environ.get(TOKEN_ENV, "")
    if required and not token:
        raise ConfigError(f"a webhook needs a token: give --token or set {TOKEN_ENV}")
    return token


# -- replay ------------------------------------------------------------------------------------------


def cmd_replay(args: argparse.Namespace) -> int:
    """Send a JSONL file of uplinks to a broker or a webhook at a chosen speed."""
    from twin.sensors.replay import paced, read_jsonl, send

    if not Path(args.file).is_file():
        raise DataError(f"{args.file}: no such file")
    if args.speed < 0:
        raise ConfigError(
            f"--speed: expected a number >= 0 (0: as fast as possible), got {args.speed}"
        )
    counts = send(
        paced(read_jsonl(args.file), args.speed, retime=args.retime),
        mqtt_url=args.mqtt, http_url=args.http, token=_token(args, required=args.http is not None),
        progress=lambda n: _say(f"  sent {n}"),
    )  # fmt: skip
    print(json.dumps(counts))
    return 0


# -- ingest ------------------------------------------------------------------------------------------


def cmd_ingest(args: argparse.Namespace) -> int:
    """Take uplinks from MQTT, an HTTP webhook or a file into the store, with a live count."""
    from twin.sensors.ingest import Ingestor
    from twin.sensors.store import SQLiteStore

    sources = [x for x in (args.mqtt, args.http, args.file) if x is not None]
    if len(sources) != 1:
        raise ConfigError(
            "twin sensors ingest: give exactly one of --mqtt URL, --http PORT, --file F"
        )
    if args.file is not None and not Path(args.file).is_file():
        raise DataError(f"{args.file}: no such file of messages")
    catalogue, profiles = _catalogue(args)
    store = SQLiteStore(args.store)
    ingestor = Ingestor(store, catalogue, profiles, max_clock_skew_s=args.max_clock_skew,
                        late_after_s=args.late_after)  # fmt: skip
    try:
        if args.file is not None:
            with _Live(ingestor.counters.line):
                ingestor.ingest_file(args.file)
        else:
            _serve(args, ingestor)
        s = store.status()
    finally:
        store.close()
    c = ingestor.counters
    print(
        f"{c.received} received, {c.stored} stored ({c.readings} readings), "
        f"{c.duplicates} duplicates, {c.quarantined} quarantined -> {args.store} "
        f"(store: {s['messages']} messages, {s['readings']} readings)"
    )
    return 0


def _serve(args: argparse.Namespace, ingestor) -> None:
    """Serve until Ctrl-C, SIGTERM, --duration or --idle-exit; then write what is queued, answer
    or acknowledge it, and end the worker process.

    The source is set up before the worker starts, so a port in use or a broker that cannot be
    reached ends the command at once (one line, exit 1) and leaves no process behind."""
    from twin.sensors.mqtt import MqttIngest
    from twin.sensors.webhook import WebhookServer

    previous = signal.getsignal(signal.SIGTERM)

    def terminate(signum, frame):  # SIGTERM ends the ingest like Ctrl-C: flush, then exit 0
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    source = None
    server = None
    try:
        if args.mqtt is not None:
            if not args.connect_timeout > 0:
                raise ConfigError(f"--connect-timeout: expected a positive number of seconds, "
                                  f"got {args.connect_timeout}")  # fmt: skip
            source = MqttIngest(args.mqtt, ingestor, client_id=args.client_id)
            source.connect(args.connect_timeout)
            _say(f"subscribed to {args.mqtt} as {args.client_id} (QoS 1, persistent session)")
        else:
            token = _token(args, required=False)
            if not token:
                token = secrets.token_urlsafe(24)
                _say(f"no token given: using {token} (set {TOKEN_ENV} or --token to choose one)")
            server = WebhookServer(ingestor, token, host=args.host, port=args.http,
                                   max_body=args.max_body, read_timeout=args.read_timeout,
                                   idle_timeout=args.idle_timeout,
                                   max_connections=args.max_connections)  # fmt: skip
        ingestor.start()
        if server is not None:
            server.start()
            _say(f"webhook listening on {server.url} (POST uplinks; header Authorization: "
                 f"Bearer ...)")  # fmt: skip
        if ingestor.worker_pid is not None:
            _say(f"writing to {args.store} in worker process {ingestor.worker_pid}")
        _wait(args, ingestor)
    except KeyboardInterrupt:
        _say("stopping: writing what is queued …")
    finally:
        # A second signal would interrupt the flush half-way, with the worker still holding its
        # pipe; the flush is bounded instead (the webhook's grace, then Ingestor.close's timeout,
        # after which the worker is killed).
        interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            if server is not None:
                server.stop()  # in-progress requests are answered while the ingest still runs
            ingestor.close()  # commit and acknowledge what is queued, while still connected
            if source is not None:
                source.stop()
        finally:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, interrupt)


def _wait(args: argparse.Namespace, ingestor) -> None:
    """Show live counts until --duration or --idle-exit is reached, or the store fails."""
    deadline = None if args.duration is None else time.monotonic() + args.duration
    last_count, last_change = 0, time.monotonic()
    with _Live(ingestor.counters.line):
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.1)
            if ingestor.error is not None:
                raise DataError(f"{args.store}: writing failed: {ingestor.error}")
            n = ingestor.counters.received
            if n != last_count:
                last_count, last_change = n, time.monotonic()
            elif args.idle_exit and n and time.monotonic() - last_change > args.idle_exit:
                break


# -- status, quarantine, export ----------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    """Counts of the store: messages, readings, quarantine by reason, duplicates, devices."""
    from twin.sensors.store import SQLiteStore

    with SQLiteStore(args.store, readonly=True) as store:
        s = store.status()
    if args.json:
        print(json.dumps(s, indent=2))
        return 0
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    span = "-"
    if s["first_time"] is not None:
        span = " .. ".join(
            time.strftime(fmt, time.gmtime(t)) for t in (s["first_time"], s["last_time"])
        )
    print(f"Store          {s['store']}")
    print(f"Messages       {s['messages']} received ({s['distinct_messages']} distinct)")
    print(f"Readings       {s['readings']} from {s['uplinks']} uplinks, {span}")
    print(f"Devices        {s['devices']} reporting of {s['catalogue_devices']} in the catalogue")
    print(f"Duplicates     {s['duplicates']}")
    reasons = ", ".join(f"{k} {v}" for k, v in s["quarantine_reasons"].items()) or "none"
    print(f"Quarantined    {s['quarantined']} ({reasons})")
    return 0


def cmd_quarantine(args: argparse.Namespace) -> int:
    """List quarantined messages with their reason and the raw message."""
    from twin.sensors.store import SQLiteStore

    with SQLiteStore(args.store, readonly=True) as store:
        entries = store.quarantine(args.reason, args.limit)
    for e in entries:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(e.at))
        if args.json:
            row = {"reason": e.reason, "detail": e.detail, "at": when, "source": e.source}
            try:
                row["body"] = e.body.decode("utf-8")
            except (
                UnicodeDecodeError
            ):  # not text: the exact bytes, so nothing is lost in the listing
                row["body_base64"] = base64.b64encode(e.body).decode("ascii")
            print(json.dumps(row))
        else:
            print(f"{when}  {e.reason:14s} {e.detail}  [{e.source}]")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export devices and readings as OGC SensorThings (FROST-Server) JSON."""
    from twin.sensors.frost import sensorthings
    from twin.sensors.profiles import DEFAULT_PROFILES, load_profiles
    from twin.sensors.store import SQLiteStore

    start = None if args.since is None else _parse_time(args.since, "--since")
    end = None if args.until is None else _parse_time(args.until, "--until")
    with SQLiteStore(args.store, readonly=True) as store:
        doc = sensorthings(store, load_profiles(args.profiles or DEFAULT_PROFILES), start, end)
    out = Path(args.frost)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    tmp.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    tmp.replace(out)
    n = sum(len(o["dataArray"]) for o in doc["CreateObservations"])
    print(f"{len(doc['Things'])} Things, {n} Observations -> {out}")
    return 0


def cmd_broker(args: argparse.Namespace) -> int:
    """Run a local MQTT broker on 127.0.0.1 until Ctrl-C (Mosquitto where installed, else amqtt)."""
    from twin.sensors.broker import LocalBroker

    with LocalBroker(args.kind, port=args.port) as broker:
        print(f"{broker.kind} listening on {broker.url} (Ctrl-C to stop)", flush=True)
        try:
            while broker.proc is not None and broker.proc.poll() is None:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0


# -- parser ------------------------------------------------------------------------------------------


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `twin sensors` and its actions to the main parser."""
    sensors = subparsers.add_parser(
        "sensors",
        help="LoRaWAN sensor ingest, store, simulation and replay",
        description="LoRaWAN sensors: ingest uplinks (TTS v3, ChirpStack v4) from MQTT, HTTP or "
        "files into a store; simulate and replay streams; status and exports.",
    )
    sub = sensors.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = sub.add_parser("simulate", help="simulated uplinks of all catalogue sensors")
    p.add_argument("--out", type=Path, help="write a JSONL file")
    p.add_argument("--mqtt", help="publish to a broker, mqtt://host:port")
    p.add_argument("--http", help="POST to a webhook, http://host:port/path")
    p.add_argument("--token", help=f"webhook token (default: ${TOKEN_ENV})")
    p.add_argument("--minutes", type=float, default=60.0, help="length of the stream (default 60)")
    p.add_argument("--format", choices=("tts", "chirpstack"), default="tts")
    p.add_argument("--payload", choices=("both", "binary", "decoded"), default="both",
                   help="base64 payload, decoded fields, or both (default)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clean", action="store_true", help="leave out the malformed messages")
    p.add_argument("--start", help="first reception time, ISO 8601 UTC (default: M minutes ago)")
    p.add_argument("--speed", type=float, default=0.0,
                   help="for --mqtt/--http: times faster than real time (0: no waiting)")  # fmt: skip
    _add_catalogue_args(p)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("replay", help="send a JSONL file of uplinks to a broker or a webhook")
    p.add_argument("file", type=Path)
    p.add_argument("--speed", type=float, default=1.0,
                   help="times faster than the recorded pace (0: as fast as possible)")  # fmt: skip
    p.add_argument("--mqtt", help="mqtt://host:port")
    p.add_argument("--http", help="http://host:port/path")
    p.add_argument("--token", help=f"webhook token (default: ${TOKEN_ENV})")
    p.add_argument("--retime", action="store_true", help="shift the times so the first is now")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("ingest", help="take uplinks from MQTT, HTTP or a file into the store")
    p.add_argument("--mqtt", help="subscribe: mqtt://host:port[?topic=...]")
    p.add_argument("--http", type=int, metavar="PORT", help="serve a webhook on this port")
    p.add_argument("--file", type=Path, help="a JSONL file of uplinks")
    _store_arg(p)
    p.add_argument("--host", default="127.0.0.1", help="webhook address (default 127.0.0.1)")
    p.add_argument("--token", help=f"webhook token (default: ${TOKEN_ENV}, else a random one)")
    p.add_argument("--max-body", type=int, default=64 * 1024, help="webhook body limit in bytes")
    p.add_argument("--read-timeout", type=float, default=10.0, metavar="S",
                   help="webhook: a request must arrive whole within S seconds of its first "
                   "byte (default 10)")  # fmt: skip
    p.add_argument("--idle-timeout", type=float, default=15.0, metavar="S",
                   help="webhook: close a connection that sends no request for S seconds "
                   "(default 15)")  # fmt: skip
    p.add_argument("--max-connections", type=int, default=256, metavar="N",
                   help="webhook: serve at most N connections at once, answer more with 503 "
                   "(default 256)")  # fmt: skip
    p.add_argument("--connect-timeout", type=float, default=10.0, metavar="S",
                   help="MQTT: give up when the broker has not answered within S seconds "
                   "(default 10)")  # fmt: skip
    p.add_argument("--client-id", default="twin-sensors-ingest",
                   help="MQTT client id of the persistent session")  # fmt: skip
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--idle-exit", type=float, help="stop after this many seconds without messages")
    p.add_argument("--max-clock-skew", type=float, default=300.0,
                   help="quarantine times more than this many seconds ahead (default 300)")  # fmt: skip
    p.add_argument("--late-after", type=float, default=3600.0,
                   help="flag readings that arrive this many seconds late (default 3600)")  # fmt: skip
    _add_catalogue_args(p)
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("status", help="what the store holds")
    _store_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("quarantine", help="list quarantined messages")
    _store_arg(p)
    p.add_argument("--reason", help="only this reason")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument(
        "--json", action="store_true", help="one JSON object per line, raw body included"
    )
    p.set_defaults(func=cmd_quarantine)

    p = sub.add_parser("export", help="export as OGC SensorThings (FROST-Server) JSON")
    _store_arg(p)
    p.add_argument("--frost", type=Path, required=True, help="output JSON file")
    p.add_argument("--since", help="first time, ISO 8601 UTC")
    p.add_argument("--until", help="end time (exclusive), ISO 8601 UTC")
    p.add_argument("--profiles", type=Path, default=None, help="device profiles TOML")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("broker", help="run a local MQTT broker on 127.0.0.1")
    p.add_argument("--kind", choices=("auto", "mosquitto", "amqtt"), default="auto")
    p.add_argument("--port", type=int, default=1883)
    p.set_defaults(func=cmd_broker)
