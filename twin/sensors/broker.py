"""A local MQTT broker on loopback for tests, benchmarks and demos: Mosquitto where installed, else
the pure-Python amqtt broker in a subprocess.

Mosquitto runs from a temporary config that listens on 127.0.0.1 only, with persistence on (so a
restart keeps persistent sessions and their queued messages) and without a per-client queue limit
(Mosquitto drops QoS 1 messages beyond ``max_queued_messages``, 1000 by default). amqtt keeps
sessions in memory only: after its restart, subscribers must subscribe again and what it had queued
is gone.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from twin.errors import TwinError


class BrokerError(TwinError):
    """The local broker could not be started."""


def mosquitto_path() -> str | None:
    """Path of the Mosquitto binary, or None when it is not installed."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise BrokerError(f"MQTT broker exited with code {proc.returncode}: {text.strip()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise BrokerError(f"MQTT broker did not listen on 127.0.0.1:{port} within {timeout:g} s")


class LocalBroker:
    """Start/stop/restart an MQTT broker on 127.0.0.1; ``kind`` is 'auto', 'mosquitto' or 'amqtt'.

    Use as a context manager; the broker process is stopped and its folder removed at the end.
    """

    def __init__(
        self,
        kind: str = "auto",
        *,
        port: int | None = None,
        max_inflight: int = 1000,
        workdir: str | Path | None = None,
    ) -> None:
        if kind == "auto":
            kind = "mosquitto" if mosquitto_path() else "amqtt"
        if kind not in ("mosquitto", "amqtt"):
            raise BrokerError(f"broker kind: expected 'auto', 'mosquitto' or 'amqtt', got {kind!r}")
        if kind == "mosquitto" and not mosquitto_path():
            raise BrokerError("Mosquitto is not installed (apt-get install mosquitto)")
        self.kind = kind
        self.port = port or free_port()
        self.max_inflight = max_inflight
        self._own_dir = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="twin-broker-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:PORT``."""
        return f"mqtt://127.0.0.1:{self.port}"

    def _mosquitto_config(self) -> Path:
        conf = self.dir / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.dir}/",
            "persistence_file mosquitto.db",
            "autosave_interval 60",
            "max_queued_messages 0",
            f"max_inflight_messages {self.max_inflight}",
            f"log_dest file {self.dir / 'mosquitto.log'}",
            "log_type error",
            "log_type warning",
        ]
        if os.geteuid() == 0:  # as root Mosquitto would switch to user 'mosquitto', who cannot
            lines.append(f"user {pwd.getpwuid(os.geteuid()).pw_name}")  # write our folder
        conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return conf

    def start(self, timeout: float = 15.0) -> LocalBroker:
        """Start the broker and wait until it accepts connections."""
        if self.proc is not None and self.proc.poll() is None:
            return self
        log = self.dir / f"{self.kind}.out"
        if self.kind == "mosquitto":
            cmd = [mosquitto_path() or "mosquitto", "-c", str(self._mosquitto_config())]
        else:
            cmd = [sys.executable, "-m", "twin.sensors.embedded_broker", str(self.port)]
        with log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)  # fmt: skip
        _wait_listening(self.port, self.proc, timeout, log)
        self.starts += 1
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker gracefully (Mosquitto writes its persistence file on SIGTERM; amqtt,
        which has nothing to save, gets a shorter grace time)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout if self.kind == "mosquitto" else min(timeout, 2.0))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        self.proc = None

    def restart(self) -> None:
        """Stop and start again on the same port."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the broker and remove its temporary folder."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
