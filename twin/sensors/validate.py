"""Validation without loss: every received message becomes readings, a duplicate or a quarantine entry.

Checks, in order: JSON (UTF-8, nesting depth, finite numbers) and schema, known device, payload
decoding, valid ranges, clock skew, duplicates (same device and frame counter), out-of-order and late
arrival. Failing messages are quarantined with their reason and their bytes as received, whatever
they hold; out-of-order and late ones are kept as readings with quality flags.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from twin.sensors.devices import Catalogue
from twin.sensors.profiles import DecodeError, Profile, Profiles
from twin.sensors.uplink import MessageRejected, load_json, parse_uplink

# Quality flags of a reading (bit mask).
LATE = 1  # arrived more than `late_after_s` after it was received by the network server
OUT_OF_ORDER = 2  # frame counter lower than one already stored for the device
FROM_DECODED = 4  # value from the network server's decoded payload, not from our binary decoder
FLAG_NAMES = {LATE: "late", OUT_OF_ORDER: "out_of_order", FROM_DECODED: "from_decoded"}

REASONS = (
    "invalid_json",  # not UTF-8, not JSON, not an object
    "too_deep",  # JSON nested deeper than uplink.MAX_DEPTH
    "not_a_number",  # NaN or Infinity
    "overflow",  # a number beyond the float range: 1e400, a 400-digit integer
    "schema",
    "not_uplink",
    "unknown_device",
    "decode",
    "out_of_range",
    "clock_skew",
    "duplicate",
    "internal",  # a check or the store's write failed on this message (the error's text)
)
# LoRaWAN 1.0 dates from 2015: an earlier reception time is a clock that was never set.
_EARLIEST = datetime(2015, 1, 1, tzinfo=UTC).timestamp()


def flag_names(flags: int) -> list[str]:
    """The names of the quality flags set in ``flags``."""
    return [name for bit, name in FLAG_NAMES.items() if flags & bit]


@dataclass
class Batch:
    """What one batch of messages adds to the store, written in one transaction."""

    raw: list[tuple] = field(
        default_factory=list
    )  # sha, wall, source, format, dev, fcnt, body, status
    bumps: list[bytes] = field(default_factory=list)  # sha of exact redeliveries
    uplinks: list[tuple] = field(
        default_factory=list
    )  # dev, fcnt, time, port, rssi, snr, sha, flags
    readings: list[tuple] = field(
        default_factory=list
    )  # dev, device id, quantity, time, value, flags
    quarantine: list[tuple] = field(default_factory=list)  # sha, reason, detail, wall
    outcomes: list[Outcome] = field(default_factory=list)


@dataclass(slots=True)
class Prepared:
    """A message after the checks that need no store: its hash and either the decoded uplink
    (uplink, device, values, flags) or the rejection."""

    body: bytes
    source: str
    sha: bytes
    result: tuple | MessageRejected
    exact: bool = False


@dataclass(frozen=True)
class Outcome:
    """What became of one message: 'stored', 'duplicate' or 'quarantined' (with reason)."""

    status: str
    reason: str = ""
    detail: str = ""
    readings: int = 0


# Outcomes are immutable: the common ones are made once and shared, which also lets pickle send a
# batch's outcomes from the worker process as references to a few objects.
_REDELIVERY = Outcome("duplicate", "duplicate", "identical redelivery")
_STORED = tuple(Outcome("stored", readings=n) for n in range(32))


def _stored(readings: int) -> Outcome:
    return _STORED[readings] if readings < len(_STORED) else Outcome("stored", readings=readings)


class KeyLookup(Protocol):
    """What the validator asks the store: known raw hashes, known (device, f_cnt) keys, counters."""

    def known_hashes(self, shas: list[bytes]) -> set[bytes]: ...

    def known_uplinks(self, keys: list[tuple[str, int]]) -> set[tuple[str, int]]: ...

    def last_frame_counters(self) -> dict[str, int]: ...


class Validator:
    """Turns batches of raw messages into a :class:`Batch` for the store; keeps the per-device
    highest frame counter to flag out-of-order arrivals."""

    def __init__(
        self,
        catalogue: Catalogue,
        profiles: Profiles,
        store: KeyLookup,
        *,
        max_clock_skew_s: float = 300.0,
        late_after_s: float = 3600.0,
        now: Callable[[], float] | None = None,
    ) -> None:
        import time

        self.catalogue = catalogue
        self.profiles = profiles
        self.store = store
        self.max_clock_skew_s = max_clock_skew_s
        self.late_after_s = late_after_s
        self.now = now or time.time
        self._profile: dict[str, Profile] = {
            kind: profiles.for_catalogue(kind)
            for kind in {d.kind for d in catalogue}  # only the kinds present need a profile
        }
        self._last_fcnt: dict[str, int] = dict(store.last_frame_counters())
        self._ranges = {q.name: (q.valid_min, q.valid_max) for q in profiles.quantities.values()}

    def reload(self) -> None:
        """Read the highest stored frame counter per device again, after another writer (the
        ingest's worker process) has added uplinks to the store."""
        self._last_fcnt = dict(self.store.last_frame_counters())

    def prepare(self, body: bytes, source: str) -> Prepared:
        """The per-message checks that need no store (JSON, schema, device, decoding, ranges, clock
        skew); cheap to run in the thread that received the message. Never raises for what a
        message holds: a check that fails unforeseen quarantines it as 'internal'."""
        body = bytes(body)
        try:
            result = self._parse(body, source, self.now())
        except Exception as exc:
            result = MessageRejected("internal", describe(exc))
        return Prepared(body, source, hashlib.sha256(body).digest(), result)

    def frame_counters(self) -> dict[str, int]:
        """A copy of the highest frame counter seen per device, to restore after a failed write."""
        return dict(self._last_fcnt)

    def restore(self, frame_counters: dict[str, int]) -> None:
        """Forget what :meth:`resolve` saw since :meth:`frame_counters` (its batch was not written)."""
        self._last_fcnt = frame_counters

    def refused(self, p: Prepared, exc: BaseException) -> Batch:
        """A batch that quarantines ``p`` as 'internal' with the store's error, for a message the
        store refused: it keeps the bytes as received and a source any store can write."""
        batch = Batch()
        source = p.source.encode("utf-8", "backslashreplace").decode("utf-8")
        rej = MessageRejected("internal", describe(exc))
        self._quarantine(batch, p.sha, self.now(), source, None, None, None, p.body, rej)
        return batch

    def check(self, messages: Iterable[tuple[bytes, str]]) -> Batch:
        """Validate ``(body, source)`` pairs; return the rows to write and one outcome each."""
        return self.resolve([self.prepare(body, source) for body, source in messages])

    def resolve(self, items: list[Prepared]) -> Batch:
        """The checks against the store (redeliveries, duplicates, order, lateness) for prepared
        messages, in arrival order; return the rows to write and one outcome each."""
        wall = self.now()
        known = self.store.known_hashes(list({p.sha for p in items}))
        batch = Batch()
        seen_sha: set[bytes] = set()
        keys = []
        for p in items:
            if p.sha in known or p.sha in seen_sha:
                p.exact = True
            else:
                seen_sha.add(p.sha)
                if isinstance(p.result, tuple):
                    keys.append((p.result[0].dev_eui, p.result[0].f_cnt))
        stored_keys = self.store.known_uplinks(list(set(keys))) if keys else set()
        batch_keys: set[tuple[str, int]] = set()
        for p in items:
            body, source, sha, result = p.body, p.source, p.sha, p.result
            if p.exact:
                batch.bumps.append(sha)
                batch.outcomes.append(_REDELIVERY)
                continue
            if isinstance(result, MessageRejected):
                dev, fcnt, fmt = getattr(result, "context", (None, None, None))
                self._quarantine(batch, sha, wall, source, fmt, dev, fcnt, body, result)
                continue
            up, device, values, flags = result
            key = (up.dev_eui, up.f_cnt)
            if key in stored_keys or key in batch_keys:
                rej = MessageRejected(
                    "duplicate", f"frame counter {up.f_cnt} of {up.dev_eui} is already stored"
                )
                self._quarantine(batch, sha, wall, source, up.format, *key, body, rej)
                continue
            batch_keys.add(key)
            last = self._last_fcnt.get(up.dev_eui)
            if last is not None and up.f_cnt < last:
                flags |= OUT_OF_ORDER
            else:
                self._last_fcnt[up.dev_eui] = up.f_cnt
            if wall - up.time > self.late_after_s:
                flags |= LATE
            batch.raw.append((sha, wall, source, up.format, up.dev_eui, up.f_cnt, body, "stored"))
            batch.uplinks.append((up.dev_eui, up.f_cnt, up.time, up.f_port, up.rssi, up.snr, sha,
                                  flags))  # fmt: skip
            for q, v in values.items():
                batch.readings.append((up.dev_eui, device.id, q, up.time, v, flags))
            batch.outcomes.append(_stored(len(values)))
        return batch

    def _quarantine(self, batch, sha, wall, source, fmt, dev, fcnt, body, rej) -> None:
        batch.raw.append((sha, wall, source, fmt, dev, fcnt, body, "quarantined"))
        batch.quarantine.append((sha, rej.reason, rej.detail, wall))
        batch.outcomes.append(Outcome("quarantined", rej.reason, rej.detail))

    def _parse(self, body: bytes, source: str, wall: float) -> tuple | MessageRejected:
        event = source.partition(" event=")[2]
        if event and event != "up":
            return MessageRejected("not_uplink", f"a '{event}' event, not an uplink")
        try:
            msg = load_json(body)
        except MessageRejected as rej:
            return rej
        if not isinstance(msg, dict):
            return MessageRejected("invalid_json", "expected a JSON object")
        try:
            up = parse_uplink(msg)
        except MessageRejected as rej:
            return rej
        try:
            return self._decode(up, wall)
        except MessageRejected as rej:
            rej.context = (up.dev_eui, up.f_cnt, up.format)  # type: ignore[attr-defined]
            return rej

    def _decode(self, up, wall: float) -> tuple:
        device = self.catalogue.get(up.dev_eui)
        if device is None:
            raise MessageRejected("unknown_device", f"DevEUI {up.dev_eui} is not in the catalogue")
        profile = self._profile[device.kind]
        flags = 0
        try:
            layout = profile.layout(up.f_port)
            if up.payload is not None:
                fields = layout.unpack(up.payload)
            else:
                fields = dict(up.decoded or {})
                flags |= FROM_DECODED
            values = profile.derive(up.f_port, fields, device.attrs)
        except DecodeError as exc:  # NumberError too: 'not_a_number' or 'overflow'
            raise MessageRejected(exc.reason, str(exc)) from None
        ranges = self._ranges
        for q, v in values.items():
            lo, hi = ranges[q]
            if not (lo <= v <= hi and math.isfinite(v)):  # Quantity.in_range, without the calls
                spec = self.profiles.quantities[q]
                raise MessageRejected(
                    "out_of_range",
                    f"{q} = {v:g} {spec.units} outside {spec.valid_min:g}..{spec.valid_max:g}",
                )
        if up.time > wall + self.max_clock_skew_s:
            raise MessageRejected(
                "clock_skew", f"reception time is {up.time - wall:.0f} s in the future"
            )
        if up.gateway_time is not None and abs(up.time - up.gateway_time) > self.max_clock_skew_s:
            raise MessageRejected(
                "clock_skew",
                f"server and gateway reception times differ by {up.time - up.gateway_time:.0f} s",
            )
        if up.time < _EARLIEST:
            raise MessageRejected("clock_skew", "reception time before 2015 (clock never set)")
        return up, device, values, flags


def describe(exc: BaseException) -> str:
    """An exception as the detail of an 'internal' quarantine entry: its type and text, in UTF-8
    any store can write."""
    text = f"{type(exc).__name__}: {exc}"[:500]
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def summarize(outcomes: Iterable[Outcome]) -> Mapping[str, int]:
    """Counts of outcomes by status and by quarantine reason."""
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
        if o.status == "quarantined":
            counts[f"reason:{o.reason}"] = counts.get(f"reason:{o.reason}", 0) + 1
    return counts
