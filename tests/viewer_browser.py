"""Headless Chromium driven over the Chrome DevTools Protocol, for the viewer page's tests and benchmark.

Debian's `chromium` binary (nothing downloads a browser) with software WebGL (SwiftShader), every host
but 127.0.0.1 made unresolvable, spoken to with the `websockets` sync client: one page target, its
console errors, exceptions and every request URL collected while commands run.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

WIDTH, HEIGHT = 1024, 640
CHROMIUM_ARGS = [
    "--headless=new",
    "--remote-debugging-port=0",
    "--no-sandbox",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--ignore-gpu-blocklist",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--disable-extensions",
    "--mute-audio",
    "--hide-scrollbars",
    f"--window-size={WIDTH},{HEIGHT}",
]


def chromium_path() -> str | None:
    """Debian's chromium (or $TWIN_CHROMIUM), None when it is not installed."""
    return os.environ.get("TWIN_CHROMIUM") or shutil.which("chromium")


class CDPError(RuntimeError):
    """A DevTools command answered with an error, or the page threw while evaluating."""


class Browser:
    """A headless Chromium with one page; `close()` ends the process (always call it, e.g. in a
    fixture's finally). `console_errors` and `requests` fill as the page runs."""

    def __init__(self, binary: str | None = None, timeout: float = 60.0) -> None:
        from websockets.sync.client import connect

        binary = binary or chromium_path()
        if not binary:
            raise FileNotFoundError("needs Debian's chromium")
        self.profile = tempfile.mkdtemp(prefix="twin-chromium-")
        self.proc = subprocess.Popen(
            [binary, *CHROMIUM_ARGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.console_errors: list[str] = []
        self.requests: list[str] = []
        self._next_id = 0
        self._ws = None
        try:
            ws_url = self._devtools_url(timeout)
            self._ws = connect(ws_url, max_size=None, open_timeout=timeout)
            target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            self.session = self.send(
                "Target.attachToTarget", {"targetId": target, "flatten": True}
            )["sessionId"]
            for domain in ("Runtime", "Log", "Network", "Page"):
                self.send(f"{domain}.enable", session=True)
            self.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
                session=True,
            )
        except BaseException:
            self.close()
            raise

    def _devtools_url(self, timeout: float) -> str:
        """The browser's DevTools websocket, from its stderr line `DevTools listening on ws://...`."""
        deadline = time.monotonic() + timeout
        seen = []
        assert self.proc.stderr is not None
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline().decode(errors="replace")
            if not line:
                if self.proc.poll() is not None:
                    break
                continue
            seen.append(line.strip())
            m = re.search(r"DevTools listening on (ws://\S+)", line)
            if m:
                # read the rest of chromium's stderr (unread, a full pipe would block it)
                self._drain = threading.Thread(
                    target=self._read_stderr, name="chromium-stderr", daemon=True
                )
                self._drain.start()
                return m[1]
        raise RuntimeError("chromium did not start: " + " | ".join(seen[-5:]))

    def _read_stderr(self) -> None:
        for _ in iter(self.proc.stderr.readline, b""):
            pass

    # -- the protocol ----------------------------------------------------------------------------

    def send(self, method: str, params: dict | None = None, session: bool = False,
             timeout: float = 60.0) -> dict:  # fmt: skip
        """One DevTools command; events that arrive meanwhile are recorded."""
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        self._ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{method}: no answer in {timeout:.0f} s")
            reply = json.loads(self._ws.recv(timeout=left))
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise CDPError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            self._event(reply)

    def _event(self, ev: dict) -> None:
        method, p = ev.get("method"), ev.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") == "error":
            self.console_errors.append(
                " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            )
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            self.console_errors.append(
                d.get("exception", {}).get("description") or d.get("text", "exception")
            )
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            e = p["entry"]
            self.console_errors.append(f"{e.get('text')} ({e.get('url', '')})")
        elif method == "Network.requestWillBeSent":
            self.requests.append(p.get("request", {}).get("url", ""))

    def evaluate(self, expression: str, timeout: float = 60.0) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        r = self.send(
            "Runtime.evaluate",
            {
                "expression": expression,
                "awaitPromise": True,
                "returnByValue": True,
                "timeout": int(timeout * 1000),
            },  # fmt: skip
            session=True,
            timeout=timeout + 5,
        )
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise CDPError(d.get("exception", {}).get("description") or d.get("text"))
        return r.get("result", {}).get("value")

    def navigate(self, url: str) -> None:
        """Open `url`; `console_errors` and `requests` start afresh for it."""
        self.console_errors.clear()
        self.requests.clear()
        self.send("Page.navigate", {"url": url}, session=True)

    def wait_viewer(self, timeout: float = 120.0) -> dict:
        """Wait for the viewer's first full frame (`twinViewer.ready`); its state as a dict."""
        return self.evaluate(
            """new Promise((resolve, reject) => {
                 const poll = () => window.twinViewer && window.twinViewer.ready
                   ? window.twinViewer.ready.then(resolve, reject) : setTimeout(poll, 50);
                 poll();
               }).then(() => ({firstFrameMs: twinViewer.firstFrameMs, errors: twinViewer.errors,
                               tilesLoaded: twinViewer.tilesLoaded, timeRange: twinViewer.timeRange,
                               camera: twinViewer.getCamera()}))""",
            timeout=timeout,
        )

    def screenshot(self):
        """The page as an (H, W, 3) uint8 array."""
        import numpy as np
        from PIL import Image

        data = self.send("Page.captureScreenshot", {"format": "png"}, session=True)["data"]
        img = Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")
        return np.asarray(img)

    def close(self) -> None:
        """End Chromium (terminate, wait, kill) and remove its profile."""
        if self._ws is not None:
            with contextlib.suppress(Exception):  # closing after a failure: nothing to add
                self._ws.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        drain = getattr(self, "_drain", None)
        if drain is not None:
            drain.join(5)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def first_frame_seconds(url: str, timeout: float = 120.0) -> float:
    """Seconds from navigation start to the viewer's first full frame of the city (all visible tiles
    loaded and drawn) at `url` (a `twin serve` page), in a fresh headless Chromium with software
    rendering. Raises when the page reports errors."""
    with Browser() as browser:
        browser.navigate(url)
        state = browser.wait_viewer(timeout)
        if state["errors"] or browser.console_errors:
            raise RuntimeError(f"viewer errors: {state['errors'] or browser.console_errors}")
        return float(state["firstFrameMs"]) / 1000.0


def viewer_static() -> Path:
    """The viewer's bundled static folder (package data)."""
    from twin.viewer.commands import STATIC

    return STATIC
