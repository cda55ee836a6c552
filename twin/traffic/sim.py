"""Runs one SUMO simulation through libsumo (in-process, the default) or TraCI; steps controllers.

libsumo avoids TraCI's socket round trips (2.5-6.8x faster in flow-project/flow PR #616), so it is
the default; TraCI is kept for ``sumo-gui`` and for cross-checks. Controllers declare what they read
every step (:meth:`Simulation.watch`): with TraCI that becomes one merged variable subscription per
object, fetched once per domain and step, never polling; with libsumo it is a direct in-process
call, which is cheaper than building subscription results. libsumo holds one simulation per process
(eclipse-sumo/sumo #7694): a second concurrent one is refused here instead of silently replacing the
first, so sweeps must use one process per run.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import itertools
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from traci import constants as tc

from twin.errors import ConfigError, TwinError
from twin.traffic.install import import_sumo_module, sumo_binary, sumo_env, sumo_proj

if TYPE_CHECKING:
    from twin.traffic.controllers.base import Controller

__all__ = ["BACKENDS", "RunResult", "Simulation", "SimulationError", "sumo_binary"]

log = logging.getLogger(__name__)

BACKENDS = ("libsumo", "traci")

# The single libsumo simulation this process may hold (libsumo keeps global state).
_libsumo_lock = threading.Lock()
_libsumo_owner: Simulation | None = None
_labels = itertools.count(1)


# Per-step reads controllers may declare with Simulation.watch: (domain, variable) -> getter name.
_GETTERS: dict[tuple[str, int], str] = {
    ("trafficlight", tc.TL_RED_YELLOW_GREEN_STATE): "getRedYellowGreenState",
    ("trafficlight", tc.TL_CURRENT_PROGRAM): "getProgram",
    ("trafficlight", tc.TL_CURRENT_PHASE): "getPhase",
    ("trafficlight", tc.TL_NEXT_SWITCH): "getNextSwitch",
    ("trafficlight", tc.TL_SPENT_DURATION): "getSpentDuration",
    ("edge", tc.LAST_STEP_VEHICLE_ID_LIST): "getLastStepVehicleIDs",
    ("lane", tc.LAST_STEP_VEHICLE_ID_LIST): "getLastStepVehicleIDs",
    ("inductionloop", tc.LAST_STEP_VEHICLE_ID_LIST): "getLastStepVehicleIDs",
    ("vehicle", tc.VAR_SPEED): "getSpeed",
    ("vehicle", tc.VAR_STOPSTATE): "getStopState",
    ("vehicle", tc.VAR_NEXT_TLS): "getNextTLS",
    ("vehicle", tc.VAR_ROAD_ID): "getRoadID",
    ("vehicle", tc.VAR_ROUTE_INDEX): "getRouteIndex",
    ("vehicle", tc.VAR_ROUTE_ID): "getRouteID",
}
# Simulation-wide per-step values (Simulation.watch_simulation): variable -> getter name.
_SIM_GETTERS: dict[int, str] = {
    tc.VAR_TIME: "getTime",
    tc.VAR_MIN_EXPECTED_VEHICLES: "getMinExpectedNumber",
    tc.VAR_DEPARTED_VEHICLES_IDS: "getDepartedIDList",
    tc.VAR_ARRIVED_VEHICLES_IDS: "getArrivedIDList",
    tc.VAR_TELEPORT_STARTING_VEHICLES_IDS: "getStartingTeleportIDList",
}
_RUNNING = "stats.vehicles.running"  # SUMO's running-vehicle counter, O(1) (see _after_start)


class SimulationError(TwinError):
    """SUMO could not start, failed during a step, or stopped making progress."""


@dataclass
class RunResult:
    """What one call of :meth:`Simulation.run` did: clock, counts, wall time and controller KPIs.

    ``controller_results`` is flat: KPI name (prefixed with the controller's name, e.g.
    ``"transit_priority.requests"``) -> (value, unit).
    """

    end_time: float
    steps: int
    vehicle_steps: int
    wall_s: float
    controller_results: dict[str, tuple[float, str]] = field(default_factory=dict)


def _kill_group(process: Any) -> None:
    """Stop a SUMO process started in its own session, with anything it started."""
    with contextlib.suppress(Exception):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(Exception):
        process.kill()
        process.wait(timeout=10)


def _has_option(args: Sequence[str], option: str) -> bool:
    return any(a == option or a.startswith(option + "=") for a in args)


def _error_lines(text: str, limit: int = 6) -> str:
    """The 'Error:' lines SUMO wrote (else its last lines), joined for an exception message."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error")]
    chosen = (errors or lines)[-limit:]
    return " | ".join(chosen)


@contextlib.contextmanager
def _stderr_copied() -> Iterator[list[str]]:
    """Capture what native code writes to file descriptor 2, then pass it on to the real stderr.

    libsumo reports load errors only as 'Process Error' in the exception and prints the reason to
    the C++ stderr; reading it back is the only way to put the reason into our error message.
    """
    box: list[str] = []
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield box
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", errors="replace")
            if text:
                with contextlib.suppress(Exception):
                    sys.stderr.write(text)
                    sys.stderr.flush()
            box.append(text)


class _Stalled(BaseException):
    """Raised by the watchdog in the thread that steps; Simulation.run turns it into its error."""


def _raise_in(thread_id: int, exc: type[BaseException] | None) -> None:
    """Raise `exc` in another Python thread at its next bytecode (None: withdraw one not yet raised).

    Unlike `_thread.interrupt_main` this does not go through the SIGINT handler, so it works where
    SIGINT is ignored (a process started in the background, `cmd &`, or under nohup) or handled by
    someone else, and in any thread (a Dask worker steps in a worker thread, not the main one).
    """
    set_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
    set_exc.argtypes = [ctypes.c_ulong, ctypes.c_void_p]
    set_exc(thread_id, None if exc is None else id(exc))


class _Watchdog(threading.Thread):
    """Raises the alarm when no simulation step has completed for ``timeout`` seconds of wall time.

    A step that returns late is caught by the run loop itself; this thread handles a step that does
    not return: it stops the SUMO process (TraCI) and raises :class:`_Stalled` in the stepping
    thread (a Python-level hang, e.g. in a controller). A libsumo step hung inside C++ cannot be
    interrupted in-process; that case is logged so that the parent of the worker process can end it.
    """

    def __init__(self, sim: Simulation, timeout: float) -> None:
        super().__init__(name=f"sumo-watchdog-{sim.label}", daemon=True)
        self.sim = sim
        self.timeout = timeout
        self.fired = False
        self._stop_event = threading.Event()
        self._target = threading.get_ident()  # made by the thread that steps
        self._lock = threading.Lock()

    def run(self) -> None:
        """Poll the heartbeat until stopped; raise the alarm once."""
        poll = min(1.0, max(0.05, self.timeout / 4.0))
        while not self._stop_event.wait(poll):
            if time.perf_counter() - self.sim._heartbeat > self.timeout:
                with self._lock:
                    if self._stop_event.is_set():
                        return
                    self.fired = True
                    process = getattr(self.sim.conn, "_process", None)
                    if self.sim.backend == "traci" and process is not None:
                        _kill_group(process)
                    _raise_in(self._target, _Stalled)
                log.error(
                    "simulation %s: no step completed for %.1f s of wall time (t=%.1f s)",
                    self.sim.label,
                    self.timeout,
                    self.sim.time,
                )
                return

    def stop(self) -> None:
        """Stop watching (the run is over); an alarm raised but not yet arrived is withdrawn."""
        with self._lock:
            self._stop_event.set()
            if self.fired:
                _raise_in(self._target, None)


class Simulation:
    """One running SUMO simulation; ``conn`` is the libsumo module or a TraCI connection (same API).

    ``sumo_args`` are the arguments after the executable, e.g. ``["-c", cfg, "--seed", "7"]``.
    ``gui=True`` runs ``sumo-gui`` and therefore always goes through TraCI. ``--no-step-log`` is
    added unless the arguments set it. Use as a context manager, or call :meth:`close`.
    Controllers read through :meth:`watch` / :meth:`reader` and :meth:`watch_simulation` /
    :meth:`sim_value`, and may share per-run state in ``shared``.
    """

    def __init__(
        self,
        sumo_args: list[str],
        *,
        backend: str = "libsumo",
        gui: bool = False,
        label: str | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ConfigError(f"simulation backend: expected one of {BACKENDS}, got {backend!r}")
        if gui:
            backend = "traci"
        self.backend = backend
        self.gui = gui
        self.label = label or f"sim{os.getpid()}-{next(_labels)}"
        args = [str(a) for a in sumo_args]
        if not _has_option(args, "--no-step-log"):
            args.append("--no-step-log")
        if gui:
            for opt in ("--start", "--quit-on-end"):
                if not _has_option(args, opt):
                    args.append(opt)
        self.sumo_args = args
        self.conn: Any = None
        self.time = 0.0
        self.steps = 0
        self.vehicle_steps = 0
        self.step_wall_s = 0.0  # wall time spent inside SUMO's simulationStep (for benchmarks)
        self.shared: dict[str, Any] = {}  # state shared between controllers of this run
        self._closed = False
        self._heartbeat = time.perf_counter()
        self._subs: dict[tuple[str, str], tuple[int, ...]] = {}
        self._sim_vars: set[int] = set()
        self._sim_values: dict[int, Any] = {}
        self._results: dict[str, tuple[int, dict[str, dict[int, Any]]]] = {}
        self._type_class: dict[str, str] = {}
        self._attached: set[int] = set()
        self._vehicle_subs = 0
        if backend == "libsumo":
            self._start_libsumo()
        else:
            self._start_traci()
        try:
            self._after_start()
        except Exception as exc:  # e.g. TraCI connected before SUMO failed to load the network
            reason = self._traci_error_log(wait=True) if backend == "traci" else ""
            self.close()
            raise SimulationError(
                f"simulation {self.label}: SUMO could not start with {self._args_text()}: "
                f"{reason or exc}"
            ) from exc

    # -- start and stop ---------------------------------------------------------------------------
    def _start_libsumo(self) -> None:
        global _libsumo_owner
        with _libsumo_lock:
            if _libsumo_owner is not None and not _libsumo_owner._closed:
                raise SimulationError(
                    f"simulation {self.label}: libsumo already runs simulation "
                    f"{_libsumo_owner.label!r} in this process (libsumo holds one simulation per "
                    "process); close it first, run each simulation in its own process, or use "
                    "backend='traci'"
                )
            _libsumo_owner = self
        try:
            libsumo = import_sumo_module("libsumo")
        except ImportError as exc:
            self._release_libsumo()
            raise SimulationError(f"libsumo cannot be imported: {exc}") from exc
        failure: BaseException | None = None
        with _stderr_copied() as captured, sumo_proj():
            try:
                libsumo.start(["sumo", *self.sumo_args])
            except Exception as exc:  # libsumo raises its own TraCIException types
                failure = exc
        if failure is not None:
            with contextlib.suppress(Exception):
                libsumo.close()
            self._release_libsumo()
            self._closed = True
            reason = _error_lines(captured[0] if captured else "") or str(failure)
            raise SimulationError(
                f"simulation {self.label}: SUMO could not start with {self._args_text()}: {reason}"
            ) from failure
        self.conn = libsumo

    def _start_traci(self) -> None:
        import subprocess

        import traci
        from sumolib.miscutils import getFreeSocketPort

        binary = sumo_binary("sumo-gui" if self.gui else "sumo")
        args = list(self.sumo_args)
        err_log: str | None = None
        if not _has_option(args, "--error-log"):
            fd, err_log = tempfile.mkstemp(prefix="sumo-errors-", suffix=".txt")
            os.close(fd)
            args += ["--error-log", err_log]
        # Started here rather than by traci.start so that a failed start can be waited for and
        # its error log read (traci.start keeps the process to itself).
        port = getFreeSocketPort()
        # its own process group: a launcher script and the SUMO it starts are stopped together
        process = subprocess.Popen(
            [binary, *args, "--remote-port", str(port)], env=sumo_env(), start_new_session=True
        )
        try:
            # poll often (traci.init waits 1 s between tries) and quietly (traci prints every
            # retry); give up after 10 minutes
            with contextlib.redirect_stdout(io.StringIO()):
                self.conn = traci.connect(
                    port,
                    numRetries=12000,
                    proc=process,
                    waitBetweenRetries=0.05,
                    label=self.label,
                )
        except Exception as exc:
            self._closed = True
            with contextlib.suppress(Exception):
                process.wait(timeout=10)
            if process.poll() is None:
                _kill_group(process)
            reason = ""
            if err_log:
                with contextlib.suppress(OSError):
                    reason = _error_lines(Path(err_log).read_text(errors="replace"))
            raise SimulationError(
                f"simulation {self.label}: SUMO could not start with {self._args_text()}: "
                f"{reason or exc}"
            ) from exc
        finally:
            if err_log and self.conn is None:
                with contextlib.suppress(OSError):
                    os.unlink(err_log)
        self._err_log = err_log

    def _traci_error_log(self, *, wait: bool) -> str:
        """The error lines SUMO wrote to its error log (TraCI backend), after it exited."""
        process = getattr(self.conn, "_process", None)
        if wait and process is not None:
            with contextlib.suppress(Exception):
                process.wait(timeout=10)
        path = getattr(self, "_err_log", None)
        if not path:
            return ""
        try:
            return _error_lines(Path(path).read_text(errors="replace"))
        except OSError:
            return ""

    def _after_start(self) -> None:
        sim = self.conn.simulation
        self.time = float(sim.getTime())
        self.step_length = float(sim.getDeltaT())
        self.end_time = float(sim.getEndTime())
        self._min_expected = int(sim.getMinExpectedNumber())
        # The clock, the count of expected vehicles and the running vehicles every step. Through
        # TraCI: one subscription each (no extra round trip). With libsumo: direct getters, as plain
        # `sumo` pays nothing for them. Subscriptions there are evaluated inside simulationStep and
        # cost 6-7 % of Bologna's step time (the domain-wide vehicle ID_COUNT builds the list of
        # every vehicle id each step); SUMO's running-vehicle counter is O(1).
        if self.backend == "traci":
            self.watch_simulation(tc.VAR_TIME, tc.VAR_MIN_EXPECTED_VEHICLES)
            self.conn.vehicle.subscribe("", (tc.ID_COUNT,))

    def _args_text(self) -> str:
        text = " ".join(self.sumo_args)
        return text if len(text) < 300 else text[:297] + "..."

    def _release_libsumo(self) -> None:
        global _libsumo_owner
        with _libsumo_lock:
            if _libsumo_owner is self:
                _libsumo_owner = None

    def close(self) -> None:
        """End the simulation and let SUMO write its outputs; safe twice and after an error."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.backend == "libsumo":
                self.conn.close()
            else:
                self.conn.close(wait=True)
        except Exception as exc:  # SUMO may already be gone after an error
            log.warning("simulation %s: closing SUMO reported %s", self.label, exc)
        finally:
            if self.backend == "libsumo":
                self._release_libsumo()
            else:
                process = getattr(self.conn, "_process", None)
                if process is not None and process.poll() is None:
                    _kill_group(process)
                if getattr(self, "_err_log", None):
                    with contextlib.suppress(OSError):
                        os.unlink(self._err_log)

    @property
    def closed(self) -> bool:
        """True once the simulation has been closed (by the caller or after an error)."""
        return self._closed

    def __enter__(self) -> Simulation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what controllers read every step ---------------------------------------------------------
    # With TraCI every query is a socket round trip, so per-step reads come from variable
    # subscriptions, merged per object and fetched once per domain and step. With libsumo a query
    # is an in-process call and cheaper than building subscription result dicts (about 3x for the
    # 101 signals of the port-cologne scenario), so the same reads are direct calls there.
    def watch(self, domain: str, object_id: str, variables: Iterable[int]) -> None:
        """Declare that a controller reads these variables of one object every step."""
        variables = tuple(variables)
        for var in variables:
            if (domain, var) not in _GETTERS:
                raise ValueError(f"no per-step reader for {domain} variable 0x{var:02x}")
        if self.backend == "traci":
            self.subscribe(domain, object_id, variables)

    def unwatch(self, domain: str, object_id: str, variables: Iterable[int]) -> None:
        """Stop reading these variables of one object (other controllers keep theirs)."""
        if self.backend == "traci":
            self.unsubscribe(domain, object_id, variables)

    def reader(self, domain: str, variable: int) -> Callable[[str], Any]:
        """A function object id -> this step's value of a watched variable.

        With TraCI it returns None for an object without results (e.g. a vehicle that has left);
        with libsumo it is the getter itself, which raises for unknown objects.
        """
        name = _GETTERS[(domain, variable)]
        if self.backend == "libsumo":
            return getattr(getattr(self.conn, domain), name)

        def read(object_id: str) -> Any:
            """This step's subscribed value, or None."""
            values = self.results(domain).get(object_id)
            return None if values is None else values.get(variable)

        return read

    def watch_simulation(self, *variables: int) -> None:
        """Declare simulation-wide variables read every step (e.g. departed ids); read them with
        :meth:`sim_value`. A subscription through TraCI, a direct call on first read with libsumo."""
        for var in variables:
            if var not in _SIM_GETTERS:
                raise ValueError(f"no per-step reader for simulation variable 0x{var:02x}")
        new = self._sim_vars | set(variables)
        if new != self._sim_vars:
            self._sim_vars = new
            if self.backend == "traci":
                self.conn.simulation.subscribe(tuple(sorted(new)))

    def sim_value(self, variable: int, default: Any = None) -> Any:
        """This step's value of a watched simulation variable (``default`` when not watched)."""
        values = self._sim_values
        if variable in values or self.backend == "traci":
            return values.get(variable, default)
        if variable not in self._sim_vars:
            return default
        value = values[variable] = getattr(self.conn.simulation, _SIM_GETTERS[variable])()
        return value

    def subscribe(self, domain: str, object_id: str, variables: Iterable[int]) -> None:
        """Subscribe variables of one object, merged with what other controllers asked for."""
        key = (domain, object_id)
        have = self._subs.get(key, ())
        new = tuple(sorted(set(have) | set(variables)))
        if new != have:
            getattr(self.conn, domain).subscribe(object_id, new)
            self._subs[key] = new
            if domain == "vehicle" and not have:
                self._vehicle_subs += 1
                if self._vehicle_subs == 1:
                    self.watch_simulation(tc.VAR_ARRIVED_VEHICLES_IDS)

    def unsubscribe(self, domain: str, object_id: str, variables: Iterable[int]) -> None:
        """Drop variables of one object that a controller no longer reads (others keep theirs)."""
        key = (domain, object_id)
        have = self._subs.get(key)
        if not have:
            return
        drop = set(variables)
        rest = tuple(v for v in have if v not in drop)
        if rest == have:
            return
        dom = getattr(self.conn, domain)
        with contextlib.suppress(Exception):  # the object may have left the simulation
            dom.unsubscribe(object_id)
            if rest:
                dom.subscribe(object_id, rest)
        if rest:
            self._subs[key] = rest
        else:
            del self._subs[key]
            if domain == "vehicle":
                self._vehicle_subs -= 1

    def results(self, domain: str) -> dict[str, dict[int, Any]]:
        """All subscription results of one domain for the current step (fetched once per step)."""
        cached = self._results.get(domain)
        if cached is not None and cached[0] == self.steps:
            return cached[1]
        res = getattr(self.conn, domain).getAllSubscriptionResults()
        self._results[domain] = (self.steps, res)
        return res

    def vehicle_class(self, vehicle_id: str) -> str:
        """SUMO vehicle class of a vehicle (looked up through its type, cached per type)."""
        type_id = self.conn.vehicle.getTypeID(vehicle_id)
        vclass = self._type_class.get(type_id)
        if vclass is None:
            vclass = self.conn.vehicletype.getVehicleClass(type_id)
            self._type_class[type_id] = vclass
        return vclass

    def _forget_arrived(self) -> None:
        arrived = self.sim_value(tc.VAR_ARRIVED_VEHICLES_IDS)
        if arrived:
            subs = self._subs
            for vid in arrived:
                if subs.pop(("vehicle", vid), None) is not None:
                    self._vehicle_subs -= 1

    # -- stepping ------------------------------------------------------------------------------
    def run(
        self,
        until: float,
        controllers: Sequence[Controller] = (),
        progress: Callable[[float], None] | None = None,
        stall_timeout_s: float = 120.0,
    ) -> RunResult:
        """Step until ``until`` (or SUMO's end time) or until no vehicles are left.

        Controllers are attached on first use and stepped after every simulation step. Raises
        :class:`SimulationError` when SUMO fails or no step completes within ``stall_timeout_s``
        of wall time; the simulation is closed in that case.
        """
        if self._closed:
            raise SimulationError(f"simulation {self.label} is closed")
        if stall_timeout_s <= 0:
            raise ConfigError(f"stall_timeout_s: expected a positive number, got {stall_timeout_s}")
        controllers = list(controllers)
        end = float(until)
        if self.end_time >= 0:
            end = min(end, self.end_time)
        eps = self.step_length * 1e-3
        steps0, vsteps0 = self.steps, self.vehicle_steps
        wall0 = time.perf_counter()
        self._heartbeat = wall0
        watchdog = _Watchdog(self, stall_timeout_s)
        failure: BaseException | None = None
        try:
            for ctl in controllers:
                if id(ctl) not in self._attached:
                    ctl.attach(self)
                    self._attached.add(id(ctl))
            watchdog.start()
            self._loop(end - eps, controllers, progress, stall_timeout_s, watchdog)
        except BaseException as exc:  # re-raised below, after the watchdog is settled
            failure = exc
        while True:  # an alarm can arrive once, while stopping the watchdog: it is caught here
            try:
                watchdog.stop()
                break
            except _Stalled:
                continue
        if failure is not None or watchdog.fired:
            self.close()
            stalled = SimulationError(self._stall_message(stall_timeout_s))
            if isinstance(failure, TwinError):
                raise failure
            if watchdog.fired:
                cause = None if isinstance(failure, _Stalled) else failure
                raise stalled from cause
            if isinstance(failure, Exception):
                raise SimulationError(
                    f"simulation {self.label} failed at t={self.time:g} s: "
                    f"{type(failure).__name__}: {failure}"
                ) from failure
            raise failure  # KeyboardInterrupt from the user, SystemExit
        if progress is not None:
            progress(self.time)
        results: dict[str, tuple[float, str]] = {}
        for ctl in controllers:
            results.update(ctl.results())
        return RunResult(
            end_time=self.time,
            steps=self.steps - steps0,
            vehicle_steps=self.vehicle_steps - vsteps0,
            wall_s=time.perf_counter() - wall0,
            controller_results=results,
        )

    def _stall_message(self, timeout: float) -> str:
        return (
            f"simulation {self.label} stalled: no progress for {timeout:g} s of wall time "
            f"at t={self.time:g} s"
        )

    def _loop(
        self,
        end: float,
        controllers: list[Controller],
        progress: Callable[[float], None] | None,
        timeout: float,
        watchdog: _Watchdog,
    ) -> None:
        # Kept lean: the controllers-off loop must cost no more than a few microseconds per step.
        conn = self.conn
        step = conn.simulationStep
        sim_results = conn.simulation.getSubscriptionResults
        veh_results = conn.vehicle.getSubscriptionResults
        get_time, get_expected = conn.simulation.getTime, conn.simulation.getMinExpectedNumber
        get_parameter = conn.simulation.getParameter
        traci = self.backend == "traci"
        clock = time.perf_counter
        var_time, var_expected, id_count = tc.VAR_TIME, tc.VAR_MIN_EXPECTED_VEHICLES, tc.ID_COUNT
        next_progress = clock() + 1.0
        t = self.time
        last = clock()
        sumo_s = 0.0
        while t < end and self._min_expected > 0:
            t0 = clock()
            step()
            sumo_s += clock() - t0
            if traci:
                values = sim_results()
                t = values[var_time]
                self._min_expected = values[var_expected]
                self._sim_values = values
                self.vehicle_steps += veh_results("")[id_count]
            else:
                t = get_time()
                self._min_expected = get_expected()
                self._sim_values = {}
                self.vehicle_steps += int(get_parameter("", _RUNNING))
            self.time = t
            self.steps += 1
            if self._vehicle_subs:
                self._forget_arrived()
            for ctl in controllers:
                try:
                    ctl.step(self, t)
                except TwinError:
                    raise
                except Exception as exc:
                    raise SimulationError(
                        f"simulation {self.label}: controller {ctl.name!r} failed at t={t:g} s: "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
            now = clock()
            self._heartbeat = now
            if now - last > timeout or watchdog.fired:
                self.step_wall_s += sumo_s
                raise SimulationError(self._stall_message(timeout))
            last = now
            if progress is not None and now >= next_progress:
                progress(t)
                next_progress = now + 1.0
        self.step_wall_s += sumo_s
