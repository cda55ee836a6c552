"""The ingest pipeline: messages from any source are queued, validated and written in batches.

Each message may carry a callback that runs after its batch is committed: MQTT acknowledges a
message only then, the webhook answers only then, so a crash never loses a message the sender
believes delivered.

The work per message (JSON, schema, base64, decoding, checks, SQLite) is CPU-bound Python. Done in
the process that also runs the MQTT client, it competes with paho's network thread for the GIL and
caps the ingest well below what the broker delivers. So with an :class:`SQLiteStore` the validation
and the writes run in a worker process (``worker="process"``, the default there): the source threads
only queue the raw bytes, a dispatcher thread sends them in batches through a pipe, and a collector
thread runs the callbacks when the worker reports a batch committed. Other stores, and validators
with an injected clock (tests), use one writer thread in this process (``worker="thread"``).

No message takes another with it: validation never raises for what a message holds, and a batch the
store refuses is written again one message at a time, the one it still refuses quarantined as
'internal' (:func:`write_batch`). Only a store that fails as a whole (disk full, locked, gone) stops
the ingest, with nothing uncommitted acknowledged.
"""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import queue
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twin.errors import ConfigError, DataError
from twin.sensors.devices import Catalogue
from twin.sensors.profiles import Profiles
from twin.sensors.store import SQLiteStore, Store
from twin.sensors.validate import Batch, Outcome, Prepared, Validator

Callback = Callable[[Outcome], None]
_STOP = object()
WORKERS = ("auto", "process", "thread")
# Batches handed to the worker process at once: one being written, one waiting, so the worker never
# idles while the previous batch's callbacks run; more would only add latency.
_IN_FLIGHT = 2


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

    ``batch_size`` bounds a transaction. ``worker`` is where validation and writes run after
    :meth:`start`: 'process' (a worker process; needs an :class:`SQLiteStore`), 'thread' (a writer
    thread here, which waits up to ``max_delay`` to fill a batch) or 'auto' (process for an
    SQLiteStore on the system clock, else thread). The worker process sends whatever has queued
    while it wrote the previous batch (group commit), so it needs no ``max_delay``.
    ``on_commit`` is called with the commit time, the batch's outcomes and the messages' tags
    (benchmarks, live counts).
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
        worker: str = "auto",
    ) -> None:
        if worker not in WORKERS:
            raise ConfigError(
                f"ingest worker: expected one of {', '.join(WORKERS)}, got {worker!r}"
            )
        if worker == "process" and not isinstance(store, SQLiteStore):
            raise ConfigError(
                f"ingest worker 'process' needs an SQLiteStore (a file the worker can open), "
                f"got {type(store).__name__}"
            )
        if worker == "auto":
            worker = "process" if isinstance(store, SQLiteStore) and now is None else "thread"
        self.worker = worker
        self.store = store
        store.register_devices(catalogue)
        options = dict(max_clock_skew_s=max_clock_skew_s, late_after_s=late_after_s, now=now)
        self.validator = Validator(catalogue, profiles, store, **options)
        self._worker_args = (catalogue, profiles, options)  # what the worker process builds from
        self.batch_size = int(batch_size)
        self.max_delay = float(max_delay)
        self.on_commit = on_commit
        self.counters = Counters()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._write_lock = threading.Lock()
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn = None  # our end of the pipe to the worker process
        self._sent: collections.deque[list] = collections.deque()  # batches the worker holds
        self._slots = threading.Semaphore(_IN_FLIGHT)
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
            first = 0  # the number of the chunk's first line
            for number, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                first = first or number
                chunk.append((line, source))
                if len(chunk) >= self.batch_size:
                    self._commit_lines(path, first, number, chunk)
                    chunk, first = [], 0
                    if progress:
                        progress(self.counters)
            if chunk:
                self._commit_lines(path, first, number, chunk)
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

    def _commit_lines(self, path: Path, first: int, last: int, chunk: list) -> None:
        """Commit the messages of lines ``first``..``last`` of a file; a store that fails says
        which lines were not stored (those before are, and a second ingest skips them)."""
        try:
            self._commit(chunk, [])
        except Exception as exc:
            raise DataError(
                f"{path}: lines {first}-{last} not stored: {exc} (lines before {first} are "
                f"stored; ingesting the file again skips them)"
            ) from None

    def _commit(self, items: list[tuple[bytes, str]] | list[Prepared], tags: list) -> list[Outcome]:
        if self._conn is not None:
            # The worker process owns the writes while it runs: two writers would race between
            # the duplicate checks and the inserts.
            return self._through_worker(items)  # type: ignore[arg-type]
        prepared = [p if isinstance(p, Prepared) else self.validator.prepare(*p) for p in items]
        with self._write_lock:
            batch = write_batch(self.validator, self.store, prepared)
            self.counters.add(batch.outcomes)
        if self.on_commit is not None:
            self.on_commit(time.time(), batch.outcomes, tags)
        return batch.outcomes

    def _through_worker(self, items: list[tuple[bytes, str]]) -> list[Outcome]:
        """Submit to the running worker and wait for every outcome (synchronous ingest)."""
        outcomes: list[Outcome | None] = [None] * len(items)
        left = [len(items)]
        done = threading.Event()

        def keep(i: int) -> Callback:
            def callback(outcome: Outcome) -> None:
                outcomes[i] = outcome
                left[0] -= 1  # callbacks run in one thread, in order: no lock needed
                if not left[0]:
                    done.set()

            return callback

        for i, (body, source) in enumerate(items):
            self.submit(body, source, keep(i))
        while not done.wait(0.1):
            if self.error is not None:
                raise DataError(f"sensor ingest stopped: {self.error}")
        return outcomes  # type: ignore[return-value]

    # -- asynchronous (sources in other threads) ------------------------------------------------

    @property
    def worker_pid(self) -> int | None:
        """The process id of the running worker process, or None (monitoring, benchmarks)."""
        return self._process.pid if self._process is not None else None

    def start(self) -> Ingestor:
        """Start the writer: the worker process (and the threads talking to it) or the thread."""
        if self._threads:
            return self
        self.error = None
        if self.worker == "process":
            self._start_process()
            runs = [(self._dispatch, "sensor-dispatch"), (self._collect, "sensor-collect")]
        else:
            runs = [(self._run, "sensor-writer")]
        self._threads = [threading.Thread(target=f, name=n, daemon=True) for f, n in runs]
        for t in self._threads:
            t.start()
        return self

    def submit(
        self, body: bytes, source: str, callback: Callback | None = None, tag: object = None
    ) -> None:
        """Queue one message; ``callback(outcome)`` runs in a writer-side thread after the commit.

        With the worker process the caller (MQTT network thread, HTTP handler) only queues the
        bytes. With the writer thread the checks that need no store run here, in the caller's
        thread, so the writer thread mostly waits on SQLite, which releases the GIL."""
        if self.error is not None:
            raise DataError(f"sensor ingest stopped: {self.error}")
        if self.worker == "process":
            # bytes() here, so that a body of the wrong type fails in the caller, not the worker
            self._queue.put((bytes(body), source, callback, tag))
        else:
            self._queue.put((self.validator.prepare(body, source), callback, tag))

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop the writer (thread or worker process)."""
        if not self._threads and self._process is None:
            return
        self._queue.put(_STOP)
        deadline = time.monotonic() + timeout
        for t in self._threads:  # none when start() was interrupted after the worker started
            t.join(max(0.0, deadline - time.monotonic()))
        self._threads = []
        if self._process is not None:
            # Closing our end ends a worker that is still waiting for work (after an error).
            self._conn.close()
            self._conn = None
            self._process.join(max(0.1, deadline - time.monotonic()))
            if self._process.is_alive():  # stuck: what it has not reported stays unacknowledged
                # kill, not terminate: the worker ignores SIGTERM (see _worker_main), and a child
                # left alive would make multiprocessing wait for it at exit, for ever
                self._process.kill()
                self._process.join(5)
            self._process = None
            # The worker wrote: the highest frame counter per device comes from the store again.
            self.validator.reload()

    # -- the writer thread -----------------------------------------------------------------------

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

    # -- the worker process ----------------------------------------------------------------------

    def _start_process(self) -> None:
        # 'spawn', not 'fork': the parent runs threads (paho, HTTP), and forking a threaded
        # process can copy a lock held by another thread.
        ctx = multiprocessing.get_context("spawn")
        ours, theirs = ctx.Pipe()
        path = str(self.store.path)  # type: ignore[attr-defined]
        proc = ctx.Process(target=_worker_main, name="sensor-worker", args=(theirs, path),
                           daemon=True)  # fmt: skip
        proc.start()
        theirs.close()  # only the worker holds it now: its exit shows here as end of file
        try:
            self._handshake(proc, ours, path)
        except BaseException:
            # An error or an interrupt (Ctrl-C, the run layer's SIGTERM) before the worker is
            # ours to close: end it here, or it waits on the pipe we hold and multiprocessing
            # waits for it at exit, for ever (it ignores SIGTERM).
            ours.close()
            if proc.is_alive():
                proc.kill()
            proc.join(5)
            raise
        self._process, self._conn = proc, ours
        self._sent.clear()
        self._slots = threading.Semaphore(_IN_FLIGHT)

    def _handshake(self, proc: Any, ours: Any, path: str) -> None:
        """Send the worker its settings and wait until it says it is ready (DataError if not)."""
        # The catalogue and profiles go through the pipe, not as arguments of the process: spawn
        # writes those to the child before it closes its own copy of the child's end, and a child
        # that dies while starting (its __main__ fails to import) then leaves that write blocked.
        try:
            ours.send(self._worker_args)
        except (OSError, EOFError):
            pass  # the worker has already gone: its exit code is reported below
        except Exception as exc:  # e.g. an injected clock that cannot be pickled
            raise ConfigError(f"{path}: cannot start the ingest worker process: {exc}") from None
        try:
            kind, detail = ours.recv() if ours.poll(60) else ("error", "no answer within 60 s")
        except (OSError, EOFError):
            kind, detail = "error", "it exited"
        if kind != "ready":
            ours.close()
            proc.join(5)  # a worker that failed has exited: its code goes into the message
            raise DataError(
                f"{path}: the ingest worker process did not start: {detail} "
                f"(exit code {proc.exitcode})"
            )

    def _dispatch(self) -> None:
        """Send queued messages to the worker in batches, at most ``_IN_FLIGHT`` at a time; a
        batch takes whatever queued while the worker was busy, up to ``batch_size``."""
        q, conn = self._queue, self._conn
        stopping = False
        while not stopping:
            item = q.get()
            if item is _STOP:
                break
            self._slots.acquire()
            if self.error is not None:
                return
            items = [item]
            while len(items) < self.batch_size:
                try:
                    nxt = q.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stopping = True
                    break
                items.append(nxt)
            self._sent.append(items)
            try:
                conn.send([(body, source) for body, source, _, _ in items])
            except (OSError, ValueError) as exc:
                self._fail(f"cannot send to the worker process: {exc}")
                return
        with contextlib.suppress(OSError, ValueError):
            conn.send(None)  # the worker writes what it holds, reports it, then says 'closed'

    def _collect(self) -> None:
        """Take the worker's reports in order: count, run ``on_commit`` and the callbacks."""
        conn = self._conn
        while True:
            try:
                kind, value = conn.recv()
            except (EOFError, OSError):
                self._fail("the worker process exited")
                return
            if kind == "closed":
                return
            if kind == "error":  # the store failed: stop taking messages, acknowledge none
                self._fail(value)
                return
            committed_at, outcomes = value
            items = self._sent.popleft()
            self._slots.release()
            self.counters.add(outcomes)
            if self.on_commit is not None:
                self.on_commit(committed_at, outcomes, [item[3] for item in items])
            for item, outcome in zip(items, outcomes, strict=True):
                if item[2] is not None:
                    item[2](outcome)

    def _fail(self, detail: str) -> None:
        path = self.store.path  # type: ignore[attr-defined]
        self.error = DataError(f"{path}: sensor worker: {detail}")
        self.counters.errors += 1
        for _ in range(_IN_FLIGHT):  # a dispatcher waiting for a free slot sees the error
            self._slots.release()


def write_batch(validator: Validator, store: Store, prepared: list[Prepared]) -> Batch:
    """Resolve and write prepared messages in one transaction; return the batch (its outcomes).

    When the store refuses the batch for something a message holds, each message is written in a
    transaction of its own, and one the store still refuses is quarantined as 'internal' with the
    error, so it takes no other message with it. An error of the store itself (locked, disk full,
    read-only: ``sqlite3.OperationalError``), or a store that cannot even write the quarantine
    entry, is raised."""
    saved = validator.frame_counters()
    try:
        batch = validator.resolve(prepared)
        store.write_batch(batch)
        return batch
    except sqlite3.OperationalError:
        validator.restore(saved)
        raise
    except Exception:
        validator.restore(saved)
    outcomes: list[Outcome] = []
    for p in prepared:
        saved = validator.frame_counters()
        try:
            one = validator.resolve([p])
            store.write_batch(one)
        except sqlite3.OperationalError:
            validator.restore(saved)
            raise
        except Exception as exc:
            validator.restore(saved)
            one = validator.refused(p, exc)
            store.write_batch(one)
        outcomes += one.outcomes
    return Batch(outcomes=outcomes)


def _worker_main(conn, path: str) -> None:
    """The worker process: take the catalogue, profiles and validator options from the pipe, then
    validate and write each batch it brings, and report the outcomes.

    Interrupts are left to the parent, which on Ctrl-C or SIGTERM still sends what is queued and
    then asks the worker to stop; a parent that dies closes the pipe, which ends the worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        catalogue, profiles, options = conn.recv()
    except EOFError:
        return
    try:
        store = SQLiteStore(path)
        validator = Validator(catalogue, profiles, store, **options)
    except Exception as exc:
        conn.send(("error", str(exc)))
        return
    conn.send(("ready", None))
    with store:
        while True:
            try:
                items = conn.recv()
            except EOFError:
                return  # the parent has gone: nothing uncommitted was acknowledged
            if items is None:
                conn.send(("closed", None))
                return
            try:
                batch = write_batch(validator, store, [validator.prepare(*m) for m in items])
            except Exception as exc:
                conn.send(("error", f"writing a batch failed: {exc}"))
                return
            conn.send(("committed", (time.time(), batch.outcomes)))
