"""`twin sensors ingest` as a subprocess for tests: its stderr read in a thread (so waiting for a
line never blocks past its timeout), its processes listed, and everything ended in ``close()``."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

TWIN = Path(sys.executable).parent / "twin"


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without the variables that change what the command does."""
    env = {k: v for k, v in os.environ.items() if k not in ("TWIN_DEBUG", "TWIN_SENSORS_TOKEN")}
    return {**env, **extra}


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _stat(int(entry.name))[1] == pid:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped does not count)."""
    state, _ = _stat(pid)
    return state not in ("", "Z", "X")


def _stat(pid: int) -> tuple[str, int]:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "", -1
    fields = text.rsplit(")", 1)[1].split()  # the name in parentheses may hold spaces
    return fields[0], int(fields[1])


class Service:
    """A started ``twin sensors ...`` command; use as a context manager."""

    def __init__(self, *args: str | Path, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [str(TWIN), *map(str, args)], env=env or clean_env(), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self.out = ""
        self._new = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read_err, daemon=True),
            threading.Thread(target=self._read_out, daemon=True),
        ]
        for t in self._readers:
            t.start()

    def _read_err(self) -> None:
        for line in self.proc.stderr:  # type: ignore[union-attr]
            with self._new:
                self.lines.append(line.rstrip("\n"))
                self._new.notify_all()

    def _read_out(self) -> None:
        self.out = self.proc.stdout.read()  # type: ignore[union-attr]

    def wait_line(self, text: str, timeout: float = 120.0) -> str:
        """The first stderr line holding ``text``; AssertionError with what came otherwise."""
        deadline = time.monotonic() + timeout
        with self._new:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None and not self._readers[0].is_alive():
                    raise AssertionError(f"no line with {text!r} on stderr: {self.lines}")
                self._new.wait(min(left, 0.5))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 120.0) -> int:
        """Send ``sig`` and wait for the exit; return the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.proc.wait(timeout)
        for t in self._readers:
            t.join(timeout)
        return rc

    def close(self) -> None:
        """Kill the command and its children if still running (a failed test, a hang)."""
        if self.proc.poll() is None:
            for pid in children(self.proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.kill()
        self.proc.wait(30)

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
