"""The ingest pipeline: messages from any source are queued, validated and written in batches.

One writer thread owns the store's writes. Each message may carry a callback that runs after its
batch is committed: MQTT acknowledges a message only then, the webhook answers only then, so a
crash never loses a message the sender believes delivered.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from twin.errors import DataError
from twin.sensors.devices import Catalogue
from twin.sensors.profiles import Profiles
from twin.sensors.store import Store
from twin.sensors.validate import Outcome, Prepared, Validator

Callback = Callable[[Outcome], None]
_STOP = object()


@dataclass
class Counters:
    """Running totals of one ingest session (not of the whole store)."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    readings: int = 0
    batches: int = 0
    errors: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def add(self, outcomes: Iterable[Outcome]) -> None:
        """Count a committed batch's outcomes."""
        self.batches += 1
        for o in outcomes:
            self.received += 1
            if o.status == "stored":
                self.stored += 1
                self.readings += o.readings
            elif o.status == "duplicate":
                self.duplicates += 1
            else:
                self.quarantined += 1
                self.reasons[o.reason] = self.reasons.get(o.reason, 0) + 1

    def line(self) -> str:
        """One status line for a live display."""
        return (
            f"received {self.received}  stored {self.stored}  readings {self.readings}  "
            f"duplicates {self.duplicates}  quarantined {self.quarantined}"
        )


class Ingestor:
    """Validates and stores messages; use :meth:`ingest` synchronously or :meth:`submit` from
    source threads (MQTT, HTTP) after :meth:`start`.

    ``batch_size`` bounds a transaction; ``max_delay`` is how long the writer waits to fill one.
    ``on_commit`` is called with the commit time and the batch's outcomes (benchmarks, live counts).
    """

    def __init__(
        self,
        store: Store,
        catalogue: Catalogue,
        profiles: Profiles,
        *,
        batch_size: int = 1000,
        max_delay: float = 0.02,
        max_clock_skew_s: float = 300.0,
        late_after_s: float = 3600.0,
        now: Callable[[], float] | None = None,
        on_commit: Callable[[float, list[Outcome], list[object]], None] | None = None,
    ) -> None:
        self.store = store
        store.register_devices(catalogue)
        self.validator = Validator(
            catalogue, profiles, store, max_clock_skew_s=max_clock_skew_s,
            late_after_s=late_after_s, now=now,
        )  # fmt: skip
        self.batch_size = int(batch_size)
        self.max_delay = float(max_delay)
        self.on_commit = on_commit
        self.counters = Counters()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._write_lock = threading.Lock()
        self.error: BaseException | None = None

    # -- synchronous ------------------------------------------------------------------------------

    def ingest(
        self, bodies: Iterable[bytes | str], source: str = "api", tags: list | None = None
    ) -> list[Outcome]:
        """Validate and store these messages now, in batches; return one outcome each."""
        outcomes: list[Outcome] = []
        chunk: list[tuple[bytes, str]] = []
        for body in bodies:
            chunk.append((body.encode() if isinstance(body, str) else bytes(body), source))
            if len(chunk) >= self.batch_size:
                outcomes += self._commit(chunk, tags or [])
                chunk = []
        if chunk:
            outcomes += self._commit(chunk, tags or [])
        return outcomes

    def ingest_file(
        self, path: str | Path, progress: Callable[[Counters], None] | None = None
    ) -> Counters:
        """Ingest a JSONL file (one message per line; blank lines skipped) and return the counts."""
        path = Path(path)
        try:
            f = path.open("rb")
        except OSError as exc:
            raise DataError(f"{path}: cannot read messages: {exc}") from None
        before = Counters(**{**self.counters.__dict__, "reasons": dict(self.counters.reasons)})
        with f:
            chunk: list[tuple[bytes, str]] = []
            source = f"file:{path.name}"
            for line in f:
                line = line.strip()
                if not line:
                    continue
                chunk.append((line, source))
                if len(chunk) >= self.batch_size:
                    self._commit(chunk, [])
                    chunk = []
                    if progress:
                        progress(self.counters)
            if chunk:
                self._commit(chunk, [])
        if progress:
            progress(self.counters)
        got = self.counters
        return Counters(
            got.received - before.received, got.stored - before.stored,
            got.duplicates - before.duplicates, got.quarantined - before.quarantined,
            got.readings - before.readings, got.batches - before.batches, 0,
            {k: v - before.reasons.get(k, 0) for k, v in got.reasons.items()
             if v - before.reasons.get(k, 0)},
        )  # fmt: skip

    def _commit(self, items: list[tuple[bytes, str]] | list[Prepared], tags: list) -> list[Outcome]:
        prepared = [p if isinstance(p, Prepared) else self.validator.prepare(*p) for p in items]
        with self._write_lock:
            batch = self.validator.resolve(prepared)
            self.store.write_batch(batch)
            self.counters.add(batch.outcomes)
        if self.on_commit is not None:
            self.on_commit(time.time(), batch.outcomes, tags)
        return batch.outcomes

    # -- asynchronous (sources in other threads) ------------------------------------------------

    def start(self) -> Ingestor:
        """Start the writer thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sensor-writer", daemon=True)
            self._thread.start()
        return self

    def submit(
        self, body: bytes, source: str, callback: Callback | None = None, tag: object = None
    ) -> None:
        """Queue one message; ``callback(outcome)`` runs in the writer thread after the commit.

        The checks that need no store run here, in the caller's thread (MQTT network thread, HTTP
        handler), so the writer thread mostly waits on SQLite, which releases the GIL."""
        if self.error is not None:
            raise DataError(f"sensor ingest stopped: {self.error}")
        self._queue.put((self.validator.prepare(body, source), callback, tag))

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop the writer thread."""
        if self._thread is not None:
            self._queue.put(_STOP)
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        q = self._queue
        stopping = False
        while not stopping:
            item = q.get()
            if item is _STOP:
                break
            items = [item]
            deadline = time.monotonic() + self.max_delay
            while len(items) < self.batch_size:
                try:
                    nxt = q.get_nowait()
                except queue.Empty:
                    wait = deadline - time.monotonic()
                    if wait <= 0:
                        break
                    try:
                        nxt = q.get(timeout=wait)
                    except queue.Empty:
                        break
                if nxt is _STOP:
                    stopping = True
                    break
                items.append(nxt)
            try:
                outcomes = self._commit([p for p, _, _ in items], [t for *_, t in items])
            except Exception as exc:  # the store failed: stop taking messages, acknowledge none
                self.error = exc
                self.counters.errors += 1
                return
            for (_, cb, _), outcome in zip(items, outcomes, strict=True):
                if cb is not None:
                    cb(outcome)
