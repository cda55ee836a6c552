"""The run layer: run folders and status.json, SIGINT/SIGTERM end a run `interrupted`, leftovers of
killed runs are listed and cleaned (live runs never touched), readers refuse unfinished runs."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gw_scenario import write_gw_scenario

from twin import runs
from twin.errors import DataError
from twin.scenes.vehicles import load_vehicles, run_folder_fcd

TWIN = Path(sys.executable).parent / "twin"


def _scenario(folder: Path, pack: Path, name: str) -> Path:
    # hourly steps over a year keep it busy long enough to be signalled mid-run (the tests end it)
    return write_gw_scenario(folder, pack, name=name, end="2025-03-01T00:00:00Z", step_hours=1,
                             file=f"{name}.toml")  # fmt: skip


def _default_sigint() -> None:
    # a test run started in the background inherits SIGINT ignored; the child gets Ctrl-C back
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(args: list[str], cwd: Path, log: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "TWIN_DEBUG"}
    out = (cwd / f"{log}.out").open("w")
    err = (cwd / f"{log}.err").open("w")
    try:
        return subprocess.Popen([str(TWIN), *args], cwd=cwd, env=env, stdout=out, stderr=err,
                                preexec_fn=_default_sigint)  # fmt: skip
    finally:
        out.close()
        err.close()


def _twin(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TWIN_DEBUG"}
    return subprocess.run([str(TWIN), *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=120)  # fmt: skip


def _wait_running(proc: subprocess.Popen, scenario_dir: Path, cwd: Path, log: str) -> Path:
    """The `.partial` folder of the run `proc` started, once its status says running."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        found = list(scenario_dir.glob(f".*{runs.PARTIAL}"))
        if found and (found[0] / runs.STATUS).exists():
            assert runs.read_status(found[0])["state"] == "running"
            return found[0]
        if proc.poll() is not None:
            pytest.fail(
                f"the run ended before it was signalled: {(cwd / f'{log}.err').read_text()}"
            )
        time.sleep(0.05)
    pytest.fail("the run did not start within 300 s")


def _end(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=60)


@pytest.mark.parametrize(
    ("signum", "name"), [(signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT")]
)
def test_signal_during_a_groundwater_run_leaves_it_interrupted(
    tmp_path: Path, mini_pack: Path, signum: int, name: str
) -> None:
    scenario = _scenario(tmp_path, mini_pack, "mini-signal")
    folder = tmp_path / "runs" / "mini-signal"
    proc = _start(["groundwater", "run", str(scenario), "--runs-dir", str(tmp_path / "runs"),
                   "--pack", str(mini_pack)],
                  tmp_path, "run")  # fmt: skip
    try:
        _wait_running(proc, folder, tmp_path, "run")
        time.sleep(0.5)  # into the set-up or the stepping
        proc.send_signal(signum)
        code = proc.wait(timeout=120)
    finally:
        _end(proc)
    err = (tmp_path / "run.err").read_text()
    assert code == {"SIGTERM": 143, "SIGINT": 130}[name], err  # as shells report the signal
    last = {"SIGTERM": "twin: terminated", "SIGINT": "twin: interrupted"}[name]
    assert err.strip().splitlines()[-1] == last
    (run,) = folder.iterdir()  # nothing partial, nothing finished-looking
    assert run.name.endswith(".interrupted") and not run.name.startswith(".")
    status = runs.read_status(run)
    assert status["state"] == "interrupted" and status["error"] == f"interrupted ({name})"
    assert status["kind"] == "groundwater" and status["finished_utc"]
    assert status["status"] == "interrupted"  # the ground-water run's own key follows
    assert status["pid"] == proc.pid
    listed = _twin("runs", "list", "--runs-dir", str(tmp_path / "runs"), cwd=tmp_path)
    assert listed.returncode == 0 and listed.stdout.split()[0] == "interrupted"


def test_killed_run_is_listed_and_cleaned_while_a_live_run_is_untouched(
    tmp_path: Path, mini_pack: Path
) -> None:
    root = tmp_path / "runs"
    killed = _start(["groundwater", "run", str(_scenario(tmp_path, mini_pack, "mini-killed")),
                     "--runs-dir", str(root), "--pack", str(mini_pack)], tmp_path, "killed")  # fmt: skip
    live = None
    try:
        dead_dir = _wait_running(killed, root / "mini-killed", tmp_path, "killed")
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=60)
        live = _start(["groundwater", "run", str(_scenario(tmp_path, mini_pack, "mini-live")),
                       "--runs-dir", str(root), "--pack", str(mini_pack)], tmp_path, "live")  # fmt: skip
        live_dir = _wait_running(live, root / "mini-live", tmp_path, "live")
        live.send_signal(signal.SIGSTOP)  # alive, but not getting anywhere meanwhile
        live_status = (live_dir / runs.STATUS).read_bytes()

        listed = _twin("runs", "list", "--runs-dir", str(root), cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        lines = listed.stdout.splitlines()
        (dead_line,) = [ln for ln in lines if f"mini-killed/{dead_dir.name}" in ln]
        (live_line,) = [ln for ln in lines if f"mini-live/{live_dir.name}" in ln]
        assert dead_line.startswith("leftover") and f"process {killed.pid} " in dead_line
        assert live_line.startswith("running")

        dry = _twin("runs", "clean", "--dry-run", "--runs-dir", str(root), cwd=tmp_path)
        assert dry.returncode == 0 and "would mark" in dry.stdout and dead_dir.is_dir()
        assert runs.read_status(dead_dir)["state"] == "running"

        cleaned = _twin("runs", "clean", "--runs-dir", str(root), cwd=tmp_path)
        assert cleaned.returncode == 0, cleaned.stderr
        assert "1 leftover run(s) marked interrupted" in cleaned.stdout
        (after,) = (root / "mini-killed").iterdir()
        assert after.name == runs.stamp_of(dead_dir) + ".interrupted"
        status = runs.read_status(after)
        assert status["state"] == "interrupted" and "gone" in status["error"]
        assert live_dir.is_dir() and (live_dir / runs.STATUS).read_bytes() == live_status
        assert [p.name for p in (root / "mini-live").iterdir()] == [live_dir.name]

        again = _twin("runs", "clean", "--runs-dir", str(root), cwd=tmp_path)
        assert "no leftovers of killed runs" in again.stdout
    finally:
        _end(killed)
        if live is not None:
            _end(live)


# -- the run layer in-process -------------------------------------------------------------------------------


def test_run_folders_end_finished_failed_or_interrupted(tmp_path: Path) -> None:
    scenario_file = tmp_path / "s.toml"
    scenario_file.write_text("[scenario]\n", encoding="utf-8")
    with runs.Run(tmp_path, "demo", "test", inputs={"scenario": scenario_file}) as ok:
        assert ok.path.name.startswith(".") and ok.path.name.endswith(runs.PARTIAL)
        (ok.path / "out.txt").write_text("x", encoding="utf-8")
        ok.finish(metrics={"steps": 3})
    assert ok.path.name == runs.stamp_of(ok.path) and (ok.path / "out.txt").exists()
    status = runs.read_status(ok.path)
    assert (status["state"], status["error"], status["metrics"]) == ("finished", None, {"steps": 3})
    assert status["inputs"]["scenario"]["sha256"] == hashlib.sha256(b"[scenario]\n").hexdigest()
    for key in ("scenario", "kind", "started_utc", "finished_utc", "pid", "host"):
        assert status[key] is not None, key

    with pytest.raises(DataError), runs.Run(tmp_path, "demo", "test") as bad:
        raise DataError("x.csv: line 3: bad value")
    assert bad.path.name.endswith(".failed")
    status = runs.read_status(bad.path)
    assert status["state"] == "failed" and status["error"] == "x.csv: line 3: bad value"

    with pytest.raises(ZeroDivisionError), runs.Run(tmp_path, "demo", "test") as crash:
        _ = 1 / 0
    status = runs.read_status(crash.path)
    assert status["state"] == "failed" and "ZeroDivisionError" in status["traceback"]

    with pytest.raises(KeyboardInterrupt), runs.Run(tmp_path, "demo", "test") as stopped:
        raise KeyboardInterrupt
    assert stopped.path.name.endswith(".interrupted")
    assert runs.read_status(stopped.path)["error"] == "interrupted (SIGINT)"

    with runs.Run(tmp_path, "demo", "test") as unfinished:
        pass  # left without finish(): not finished
    assert runs.read_status(unfinished.path)["state"] == "failed"

    names = sorted(p.name for p in (tmp_path / "demo").iterdir())
    assert sum("." not in n for n in names) == 1  # only the finished run has a plain name
    assert not any(n.endswith(runs.PARTIAL) for n in names)


def test_sigterm_in_process_raises_and_the_handler_is_restored(tmp_path: Path) -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(runs.Terminated), runs.Run(tmp_path, "demo", "test") as run:
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(10_000_000):  # the handler raises at the next bytecode
            time.sleep(0.001)
    assert signal.getsignal(signal.SIGTERM) is before
    status = runs.read_status(run.path)
    assert status["state"] == "interrupted" and status["error"] == "interrupted (SIGTERM)"
    assert run.path.name.endswith(".interrupted")


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=60)
    return proc.pid


def test_a_new_run_marks_leftovers_of_its_scenario_and_spares_live_ones(tmp_path: Path) -> None:
    dead = runs.create(tmp_path, "demo", "test")
    runs.write_status(dead, pid=_dead_pid())
    live = runs.create(tmp_path, "demo", "test")  # this process: alive
    assert runs.leftovers(tmp_path) == []  # creating `live` already marked `dead`
    (marked,) = [p for p in (tmp_path / "demo").iterdir() if p.name.endswith(".interrupted")]
    assert runs.stamp_of(marked) == runs.stamp_of(dead)
    assert runs.read_status(marked)["state"] == "interrupted"
    assert live.is_dir() and runs.read_status(live)["state"] == "running"


def test_a_reused_pid_does_not_keep_a_leftover_alive(tmp_path: Path) -> None:
    if not Path(f"/proc/{os.getpid()}/stat").exists():
        pytest.skip("needs /proc (process start times)")
    folder = runs.create(tmp_path, "demo", "test")
    started = runs.read_status(folder)["pid_started"]
    assert runs.process_alive(os.getpid(), runs.read_status(folder)["host"], started) is True
    runs.write_status(folder, pid_started=started - 1)  # the pid now belongs to another process
    (info,) = runs.leftovers(tmp_path)
    assert info.path == folder
    runs.write_status(folder, host="another-machine")  # cannot tell from here: never touched
    assert runs.leftovers(tmp_path) == []
    assert runs.clean(tmp_path) == [] and folder.is_dir()


# -- readers: the scene renderer's --traffic RUN ----------------------------------------------------------------


def _traffic_run(root: Path, x: float, finish: bool) -> Path:
    """A traffic run folder written through the run layer: plan.json naming a geo-referenced net,
    the baseline's first seed with vtypes.json and an FCD with one vehicle at t = 10 s."""
    folder = runs.create(root, "demo-traffic", "traffic")
    net = root / "n.net.xml"  # in the build folder, as `twin data build` makes it
    net.write_text('<net><location netOffset="0.00,0.00" projParameter="EPSG:25832"/>'
                   '<edge id="e"/></net>', encoding="utf-8")  # fmt: skip
    (folder / "plan.json").write_text(json.dumps({"net": str(net)}), encoding="utf-8")
    seed = folder / "baseline" / "seed-1"
    seed.mkdir(parents=True)
    (seed / "vtypes.json").write_text(json.dumps({"bus": {"vClass": "bus"}}), encoding="utf-8")
    with gzip.open(seed / "fcd.xml.gz", "wt", encoding="utf-8") as fh:
        fh.write(f'<fcd-export><timestep time="10.00"><vehicle id="b" x="{x}" y="5689100" '
                 'angle="90" type="bus"/></timestep></fcd-export>')  # fmt: skip
    if finish:
        folder = runs.finish(folder)
    return folder


def test_scene_reader_takes_finished_runs_and_refuses_unfinished(tmp_path: Path) -> None:
    finished = _traffic_run(tmp_path, 330100.0, finish=True)
    _, (bus,) = load_vehicles(finished, 0.0)
    assert (bus.vclass, bus.x) == ("bus", 330100.0)
    _, (bus,) = load_vehicles(finished / "baseline" / "seed-1", 0.0)
    assert bus.x == 330100.0

    running = _traffic_run(tmp_path, 330200.0, finish=False)  # newer, still running
    with pytest.raises(DataError, match=r"the run is running, not finished"):
        load_vehicles(running, 0.0)
    with pytest.raises(DataError, match=r"the run is running, not finished"):
        load_vehicles(running / "baseline" / "seed-1", 0.0)
    failed = runs.end(_traffic_run(tmp_path, 330300.0, finish=False), DataError("bad demand"))
    with pytest.raises(DataError, match=r"the run is failed, not finished: bad demand"):
        load_vehicles(failed, 0.0)
    # a plain name does not make a run finished: the status decides
    renamed = failed.with_name(runs.stamp_of(failed))
    failed.rename(renamed)
    with pytest.raises(DataError, match="not finished"):
        run_folder_fcd(renamed)
    # runs/<scenario>: the newest finished run, whatever newer unfinished ones there are
    assert run_folder_fcd(tmp_path / "demo-traffic") == finished / "baseline" / "seed-1"
    runs.write_status(finished, state="interrupted")
    with pytest.raises(DataError, match="no finished traffic run"):
        run_folder_fcd(tmp_path / "demo-traffic")


def _interrupted_loop(seconds: float) -> None:
    """Busy for `seconds` (so Python runs signal handlers), in small sleeps."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)


def test_an_interrupt_a_library_swallows_is_raised_again(monkeypatch) -> None:
    monkeypatch.setattr(runs.Interrupts, "REPEAT_S", 0.2)
    swallowed = 0
    with pytest.raises(runs.Terminated), runs.signals_interrupt() as interrupts:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            _interrupted_loop(5.0)
        except BaseException:  # noqa: BLE001 - what trimesh's optional imports do
            swallowed += 1
        _interrupted_loop(5.0)  # the repeated signal ends this within REPEAT_S
        interrupts.settle()
    assert swallowed == 1


def test_the_clean_up_after_an_interrupt_is_not_interrupted_again(monkeypatch) -> None:
    """While the first interrupt is being handled (finally blocks, __exit__, finalizers) the
    repeat stays silent, so a slow clean-up runs to its end with no second exception."""
    monkeypatch.setattr(runs.Interrupts, "REPEAT_S", 0.1)
    cleaned = False
    with pytest.raises(runs.Terminated), runs.signals_interrupt() as interrupts:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            _interrupted_loop(5.0)
        finally:
            _interrupted_loop(1.0)  # ten repeats would fall here
            cleaned = True
        interrupts.settle()
    assert cleaned
