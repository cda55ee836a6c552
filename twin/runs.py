"""The run layer: one run folder and one `status.json` schema for every scenario kind.

A run lives in `runs/<scenario>/`: it is written under the hidden name `.<stamp>.partial/` (stamp: the
UTC start, `20240301T120000Z`, suffixed `-1`, `-2`, ... when two start in one second) and renamed when it
ends: to `<stamp>/` when it finished, to `<stamp>.failed/` or `<stamp>.interrupted/` when it did not. So
only a finished run has a plain name, but readers decide from `status.json`, never from the name:

    scenario, kind          the scenario's name and the model kind ("traffic", "groundwater", ...)
    state                   running | finished | failed | interrupted
    started_utc, finished_utc, updated_utc   ISO 8601 UTC (finished_utc is null while running)
    error                   null, or the one-line reason a run failed or was interrupted
    metrics                 the kind's summary numbers (empty until the run finished)
    inputs                  name -> {"path", "sha256"} of the files the run read
    pid, host, pid_started  the process running it (pid_started: its start in clock ticks, Linux)

Kinds may add their own keys (e.g. a traffic run's per-seed progress). `status.json` is always replaced
atomically. SIGINT and SIGTERM end a run as `interrupted` (see :class:`Interrupts`); a run whose
process was killed outright (SIGKILL, power loss) stays `.partial` with `state = running` and a process
that is gone: :func:`leftovers` finds it and :func:`clean` marks it interrupted (or deletes it), which
`twin runs clean` does from the command line. A run whose process is alive is never touched.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from twin.errors import DataError, TwinError

STATUS = "status.json"
STATES = ("running", "finished", "failed", "interrupted")
PARTIAL = ".partial"
ENDED_SUFFIX = {"failed": ".failed", "interrupted": ".interrupted"}
NO_STATUS_GRACE_S = 60.0  # a .partial folder without status.json younger than this may be starting


class Terminated(KeyboardInterrupt):
    """SIGTERM asked the process to stop; handled like Ctrl-C, so the run ends `interrupted`."""


class RunError(TwinError):
    """A run folder could not be created, read, or is not in the state asked for."""


def now_utc() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """State letter and start time (clock ticks since boot) of a process, where /proc has them."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
        rest = data[data.rindex(")") + 2 :].split()
        return rest[0], int(rest[19])
    except (OSError, ValueError, IndexError):
        return None


def process_alive(pid: int | None, host: str | None, started: int | None = None) -> bool | None:
    """Whether the process that wrote a status still runs: True, False, or None when this machine
    cannot tell (another host, or no pid recorded)."""
    if not isinstance(pid, int) or host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    stat = _proc_stat(pid)
    if stat is not None:
        state, ticks = stat
        if state in ("Z", "X") or (started is not None and ticks != started):
            return False  # a zombie, or the pid was reused by another process
    return True


def file_input(path: Path) -> dict[str, str]:
    """An input entry for status.json: the file's absolute path and SHA-256."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"path": str(Path(path).resolve()), "sha256": digest.hexdigest()}


# -- status.json ------------------------------------------------------------------------------------------


def read_status(folder: Path) -> dict[str, Any]:
    """The status.json of a run folder (DataError naming the folder when it is missing or bad)."""
    path = Path(folder) / STATUS
    try:
        status = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{folder}: no readable {STATUS}: {exc}") from None
    if not isinstance(status, dict):
        raise DataError(f"{path}: expected a JSON object")
    return status


def write_status(folder: Path, **fields: Any) -> dict[str, Any]:
    """Merge `fields` into a run folder's status.json, replacing the file atomically; returns it."""
    path = Path(folder) / STATUS
    status: dict[str, Any] = {}
    with contextlib.suppress(DataError):
        status = read_status(folder)
    status.update(fields)
    status["updated_utc"] = now_utc()
    write_atomic(path, (json.dumps(status, indent=2, default=str) + "\n").encode("utf-8"))
    return status


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader finds the old file or the whole new one: under a
    temporary name beside it, flushed to disk, then renamed (the temporary file goes on failure)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# -- creating and ending a run ----------------------------------------------------------------------------


def create(
    runs_root: Path,
    scenario: str,
    kind: str,
    *,
    inputs: Mapping[str, Path] | None = None,
    **fields: Any,
) -> Path:
    """A new `.<stamp>.partial/` run folder under `runs_root/<scenario>/` with status `running`.

    Leftovers of killed runs of the same scenario are marked interrupted first (see :func:`clean`).
    Returns the folder (absolute); `fields` go into status.json as they are.
    """
    base = Path(runs_root) / scenario
    base.mkdir(parents=True, exist_ok=True)
    clean(base, scenario_dir=True)
    stamp = _stamp()
    for i in range(100):
        name = stamp if i == 0 else f"{stamp}-{i}"
        if any((base / n).exists() for n in (name, *(name + s for s in ENDED_SUFFIX.values()))):
            continue
        folder = base / f".{name}{PARTIAL}"
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        stat = _proc_stat(os.getpid())
        write_status(
            folder,
            scenario=scenario,
            kind=kind,
            state="running",
            started_utc=now_utc(),
            finished_utc=None,
            error=None,
            metrics={},
            inputs={k: file_input(p) for k, p in (inputs or {}).items()},
            pid=os.getpid(),
            host=socket.gethostname(),
            pid_started=stat[1] if stat else None,
            **fields,
        )
        return folder.resolve()
    raise RunError(f"{base}: cannot create a new run folder")


def stamp_of(folder: Path) -> str:
    """The stamp of a run folder, whatever its current name (`.X.partial`, `X`, `X.failed`, ...)."""
    name = Path(folder).name
    if name.startswith(".") and name.endswith(PARTIAL):
        return name[1 : -len(PARTIAL)]
    for suffix in ENDED_SUFFIX.values():
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _rename(folder: Path, state: str) -> Path:
    folder = Path(folder)
    target = folder.with_name(stamp_of(folder) + ENDED_SUFFIX.get(state, ""))
    if target != folder:
        os.replace(folder, target)
    return target


def finish(folder: Path, *, metrics: Mapping[str, Any] | None = None, **fields: Any) -> Path:
    """Mark a run finished (with its metrics) and give it its plain name; returns the new path."""
    write_status(folder, state="finished", finished_utc=now_utc(), error=None,
                 metrics=dict(metrics or {}), **fields)  # fmt: skip
    return _rename(folder, "finished")


def describe(exc: BaseException) -> tuple[str, str]:
    """The end state and the one-line reason for an exception that ended a run."""
    if isinstance(exc, Terminated):
        return "interrupted", "interrupted (SIGTERM)"
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", "interrupted (SIGINT)"
    if isinstance(exc, TwinError):
        return "failed", str(exc)
    return "failed", f"{type(exc).__name__}: {exc}"


def end(folder: Path, exc: BaseException, **fields: Any) -> Path:
    """Mark a run failed or interrupted by `exc` and rename it `<stamp>.failed` / `.interrupted`.

    An unexpected error (not a TwinError or an interrupt) keeps its traceback in status.json.
    Returns the new path.
    """
    state, reason = describe(exc)
    if state == "failed" and not isinstance(exc, TwinError):
        fields.setdefault("traceback", "".join(traceback.format_exception(exc)))
    write_status(folder, state=state, error=reason, finished_utc=now_utc(), **fields)
    return _rename(folder, state)


def record_failure(runs_root: Path, scenario: str, kind: str, exc: BaseException,
                   **fields: Any) -> Path:  # fmt: skip
    """A run folder for a run that could not start (bad scenario, unknown names), marked failed."""
    return end(create(runs_root, scenario, kind, **fields), exc)


class Interrupts:
    """While active, SIGTERM raises :class:`Terminated` in the main thread and SIGINT raises
    KeyboardInterrupt (where Python handles SIGINT; an ignored SIGINT stays ignored).

    A library may swallow the exception (trimesh guards its optional imports with `except
    BaseException`), so after the first signal it is raised again every second until the run
    ends, but never while the first one is still being handled: the clean-up in `finally` blocks,
    `__exit__`s and finalizers it runs through is left to finish. :meth:`settle` stops that (further signals are then ignored) while the run is being
    marked; :meth:`restore` puts the previous handlers back. Outside the main thread, where Python
    runs no handlers, it does nothing. Use it through :func:`signals_interrupt` or :class:`Run`.
    """

    REPEAT_S = 1.0

    def __init__(self) -> None:
        self._previous: dict[int, Any] = {}
        self._asked: int | None = None
        self._settled = threading.Event()
        self._repeater: threading.Thread | None = None

    def start(self) -> Interrupts:
        """Install the handlers."""
        if threading.current_thread() is not threading.main_thread():
            return self
        signums = [signal.SIGTERM]
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signums.append(signal.SIGINT)
        for signum in signums:
            self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._settled.is_set():
            return
        if self._asked is None:
            self._asked = signum
            self._repeater = threading.Thread(
                target=self._repeat, name="run-interrupt", daemon=True
            )
            self._repeater.start()
        elif isinstance(sys.exc_info()[1], KeyboardInterrupt):
            return  # the interrupt is on its way out; a second one would cut its clean-up short
        raise Terminated() if self._asked == signal.SIGTERM else KeyboardInterrupt()

    def _repeat(self) -> None:
        main = threading.main_thread().ident
        while not self._settled.wait(self.REPEAT_S) and main is not None:
            with contextlib.suppress(OSError, ValueError):
                signal.pthread_kill(main, self._asked or signal.SIGTERM)

    def settle(self) -> None:
        """Stop raising: the run is being marked (signals arriving now are ignored)."""
        self._settled.set()

    def cause(self, exc: BaseException) -> BaseException:
        """What ended the run: `exc`, or the interrupt asked for when `exc` came after it (a
        library that swallowed the interrupt failing later), with `exc` as its cause."""
        if self._asked is None or isinstance(exc, KeyboardInterrupt):
            return exc
        interrupt = Terminated() if self._asked == signal.SIGTERM else KeyboardInterrupt()
        interrupt.__cause__ = exc
        return interrupt

    def restore(self) -> None:
        """Put the previous handlers back (once nothing can send the signal again)."""
        self._settled.set()
        if self._repeater is not None:
            self._repeater.join(timeout=10)
        for signum, handler in self._previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self._previous.clear()


@contextlib.contextmanager
def signals_interrupt() -> Iterator[Interrupts]:
    """A block in which SIGINT and SIGTERM interrupt (see :class:`Interrupts`); the previous
    handlers come back afterwards. Call `settle()` on what it yields before marking a run."""
    interrupts = Interrupts().start()
    try:
        yield interrupts
    finally:
        interrupts.restore()


class Run:
    """One run as a context manager: creates the `.partial` folder, turns SIGTERM into an interrupt,
    and on leaving marks the run failed or interrupted unless :meth:`finish` was called.

        with Run(runs_root, "groundwater-today", "groundwater", inputs={...}) as run:
            write_outputs(run.path, ...)
            run.finish(metrics=...)
        run.path  # runs/groundwater-today/<stamp>/
    """

    def __init__(self, runs_root: Path, scenario: str, kind: str, *,
                 inputs: Mapping[str, Path] | None = None, **fields: Any) -> None:  # fmt: skip
        self._args = (runs_root, scenario, kind, inputs, fields)
        self.path: Path | None = None
        self.state = "running"
        self._interrupts = Interrupts()

    def __enter__(self) -> Run:
        runs_root, scenario, kind, inputs, fields = self._args
        self._interrupts.start()
        try:
            self.path = create(runs_root, scenario, kind, inputs=inputs, **fields)
        except BaseException:
            self._interrupts.restore()
            raise
        return self

    def update(self, **fields: Any) -> dict[str, Any]:
        """Merge `fields` into status.json."""
        return write_status(self._folder(), **fields)

    def finish(self, *, metrics: Mapping[str, Any] | None = None, **fields: Any) -> Path:
        """Mark the run finished and rename it; returns the final path."""
        self.path = finish(self._folder(), metrics=metrics, **fields)
        self.state = "finished"
        return self.path

    def _folder(self) -> Path:
        if self.path is None:
            raise RunError("the run has not started (use it in a `with` block)")
        return self.path

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self._interrupts.settle()
        cause = None if exc is None else self._interrupts.cause(exc)
        try:
            if self.state == "running" and self.path is not None:
                self.path = end(self.path, cause or RunError("the run ended without finishing"))
                self.state = read_status(self.path)["state"]
        finally:
            self._interrupts.restore()
        if cause is not None and cause is not exc:
            raise cause from exc


# -- finding, reading and cleaning runs ---------------------------------------------------------------------


@dataclass
class RunInfo:
    """A run folder as found on disk: its path, its status (empty when unreadable) and whether it is
    the leftover of a process that is gone."""

    path: Path
    status: dict[str, Any]
    leftover: bool
    note: str = ""

    @property
    def state(self) -> str:
        """The run's state from status.json ('unknown' without one)."""
        return str(self.status.get("state", "unknown"))


def _inspect(folder: Path) -> RunInfo:
    try:
        status = read_status(folder)
    except DataError:
        status = {}
    partial = folder.name.startswith(".") and folder.name.endswith(PARTIAL)
    if not status:
        age = time.time() - folder.stat().st_mtime
        stale = partial and age > NO_STATUS_GRACE_S
        return RunInfo(folder, {}, stale, "no status.json" + (" (abandoned)" if stale else ""))
    if status.get("state") != "running":
        return RunInfo(folder, status, False)
    pid, host = status.get("pid"), status.get("host")
    alive = process_alive(pid, host, status.get("pid_started"))
    if alive is None:
        return RunInfo(folder, status, False, f"process {pid} on {host}: cannot tell from here")
    if alive:
        return RunInfo(folder, status, False, f"process {pid} running")
    return RunInfo(folder, status, True, f"process {pid} on {host} is gone")


def find_runs(runs_root: Path) -> list[RunInfo]:
    """Every run folder under `runs_root/<scenario>/`, oldest first within each scenario."""
    out: list[RunInfo] = []
    root = Path(runs_root)
    if not root.is_dir():
        return out
    for scenario in sorted(p for p in root.iterdir() if p.is_dir()):
        out.extend(_scenario_runs(scenario))
    return out


def _scenario_runs(scenario_dir: Path) -> list[RunInfo]:
    folders = [p for p in scenario_dir.iterdir() if p.is_dir()]
    runs = [_inspect(p) for p in folders if (p / STATUS).exists() or p.name.endswith(PARTIAL)]
    return sorted(runs, key=lambda r: (str(r.status.get("started_utc", "")), stamp_of(r.path)))


def leftovers(runs_root: Path, *, scenario_dir: bool = False) -> list[RunInfo]:
    """Runs whose process is gone while their status still says running (or says nothing)."""
    runs = _scenario_runs(Path(runs_root)) if scenario_dir else find_runs(runs_root)
    return [r for r in runs if r.leftover]


def clean(runs_root: Path, *, delete: bool = False, dry_run: bool = False,
          scenario_dir: bool = False) -> list[RunInfo]:  # fmt: skip
    """Mark the leftovers of killed runs interrupted and rename them `<stamp>.interrupted` (or delete
    them); returns what was (or with `dry_run` would be) cleaned. Live runs are never touched."""
    found = leftovers(runs_root, scenario_dir=scenario_dir) if Path(runs_root).is_dir() else []
    for info in found:
        if dry_run:
            continue
        if delete:
            shutil.rmtree(info.path, ignore_errors=True)
            continue
        reason = f"the run's {info.note}: it ended without finishing (killed)"
        write_status(info.path, state="interrupted", error=reason, finished_utc=now_utc())
        info.path = _rename(info.path, "interrupted")
        info.status = read_status(info.path)
    return found


def finished_run(folder: Path) -> dict[str, Any]:
    """The status of a run folder, refused (DataError) unless status.json says it finished."""
    status = read_status(folder)
    state = status.get("state")
    if state != "finished":
        why = f": {status['error']}" if status.get("error") else ""
        raise DataError(f"{folder}: the run is {state or 'of unknown state'}, not finished{why}")
    return status


def run_folder_of(path: Path) -> Path | None:
    """The run folder holding ``path`` (the nearest folder above it with a status.json), or None
    for a file that is not a run's output."""
    for folder in Path(path).resolve().parents:
        if (folder / STATUS).is_file():
            return folder
    return None


def finished_runs(scenario_dir: Path, kind: str | None = None) -> list[Path]:
    """The finished runs in `runs/<scenario>/` (of `kind` if given), newest first by their start."""
    folder = Path(scenario_dir)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such runs folder")
    runs = [r for r in _scenario_runs(folder) if r.state == "finished"]
    if kind is not None:
        runs = [r for r in runs if r.status.get("kind", kind) == kind]
    return [r.path for r in reversed(runs)]


# -- `twin runs` ----------------------------------------------------------------------------------------------


def _runs_list(args: argparse.Namespace) -> int:
    runs = find_runs(args.runs_dir)
    if args.json:
        rows = [{"path": str(r.path), "state": r.state, "leftover": r.leftover, "note": r.note,
                 "status": r.status} for r in runs]  # fmt: skip
        print(json.dumps(rows, indent=2, default=str))
        return 0
    for r in runs:
        s = r.status
        state = "leftover" if r.leftover else r.state
        where = f"{r.path.parent.name}/{r.path.name}"
        note = r.note or (s.get("error") or "")
        print(f"{state:11s} {s.get('kind', '?'):11s} {s.get('started_utc', '?'):25s} {where}"
              + (f"  ({note})" if note else ""))  # fmt: skip
    if not runs:
        print(f"no runs under {args.runs_dir}")
    return 0


def _runs_clean(args: argparse.Namespace) -> int:
    done = clean(args.runs_dir, delete=args.delete, dry_run=args.dry_run)
    verb = ("would delete" if args.delete else "would mark") if args.dry_run else (
        "deleted" if args.delete else "marked interrupted")  # fmt: skip
    for r in done:
        print(f"{verb}: {r.path} ({r.note})")
    print(f"{len(done)} leftover run(s) {verb}" if done else "no leftovers of killed runs")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `twin runs list|clean` to the main parser's sub-commands."""
    runs = subparsers.add_parser(
        "runs",
        help="list run folders and clean up the leftovers of killed runs",
        description="Run folders under runs/<scenario>/ with their state from status.json.",
    )
    sub = runs.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("list", help="list runs with their state")
    p.add_argument("--runs-dir", type=Path, default=Path("runs"), help="default: runs/")
    p.add_argument("--json", action="store_true", help="print one JSON list")
    p.set_defaults(func=_runs_list)
    p = sub.add_parser(
        "clean", help="mark runs of processes that are gone interrupted (live runs are kept)"
    )
    p.add_argument("--runs-dir", type=Path, default=Path("runs"), help="default: runs/")
    p.add_argument("--dry-run", action="store_true", help="only say what would be cleaned")
    p.add_argument("--delete", action="store_true", help="delete the leftovers instead")
    p.set_defaults(func=_runs_clean)
