"""Headless Chromium for the report tests, driven over the DevTools protocol on a pipe.

``chromium --remote-debugging-pipe`` reads DevTools commands from its file descriptor 3 and
writes replies and events to descriptor 4, each message JSON ending in a NUL byte: the
standard library is enough, no websocket client or browser driver. Debian's package is
``chromium`` (``tools/setup.sh --test`` installs it, as ./run-tests does).

    with Browser(tmp_path / "profile") as page:
        page.open(path_to_html)
        page.evaluate("document.title")
        page.screenshot(tmp_path / "shot.png")
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL = (
    "install it with `tools/setup.sh --test` (as root; ./run-tests does this) or "
    "`apt-get install --no-install-recommends chromium`"
)


def find_chromium() -> str | None:
    """The Chromium executable on PATH ($OVERDEQ_CHROMIUM first), or None."""
    for name in (os.environ.get("OVERDEQ_CHROMIUM"), *NAMES):
        if name and (path := shutil.which(name)):
            return path
    return None


class BrowserError(RuntimeError):
    """Chromium did not start, died, or a DevTools command failed."""


class Browser:
    """One headless Chromium with one page (a context manager)."""

    def __init__(self, profile: Path, *, width: int = 1400, height: int = 1000) -> None:
        binary = find_chromium()
        if binary is None:
            raise BrowserError(f"no Chromium on PATH ({', '.join(NAMES)}): {INSTALL}")
        profile.mkdir(parents=True, exist_ok=True)
        to_browser, self._to_browser = os.pipe()
        self._from_browser, from_browser = os.pipe()

        def descriptors() -> None:  # in the child: the pipe ends as fds 3 and 4
            high_in, high_out = os.dup(to_browser), os.dup(from_browser)
            os.dup2(high_in, 3)
            os.dup2(high_out, 4)

        args = [
            binary,
            "--headless",
            "--remote-debugging-pipe",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
        ]
        if os.geteuid() == 0:
            args.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
        self.log = profile / "chromium.log"
        with self.log.open("wb") as log:
            self._proc = subprocess.Popen(
                [*args, "about:blank"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                preexec_fn=descriptors,
                close_fds=False,  # Python's own descriptors are close-on-exec (PEP 446)
            )
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict] = []
        self._session: str | None = None
        try:
            target = self._call("Target.createTarget", {"url": "about:blank"})["targetId"]
            attached = self._call("Target.attachToTarget", {"targetId": target, "flatten": True})
            self._session = attached["sessionId"]
            self.call("Page.enable")
            self.call("Runtime.enable")
            self.call(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            )
        except BaseException:
            self.close()
            raise

    # --- the protocol ----------------------------------------------------------------------

    def _send(self, method: str, params: dict | None, session: str | None) -> int:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        return self._next_id

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"Chromium did not answer in time (log: {self.log})")
            ready, _, _ = select.select([self._from_browser], [], [], left)
            if ready:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise BrowserError(f"Chromium exited (log: {self.log})")
                self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def _call(self, method: str, params: dict | None = None, session: str | None = None,
              timeout: float = 30.0) -> dict:  # fmt: skip
        wanted = self._send(method, params, session)
        deadline = time.monotonic() + timeout
        while True:
            message = self._receive(deadline)
            if message.get("id") == wanted:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self._events.append(message)

    def call(self, method: str, params: dict | None = None, timeout: float = 30.0) -> dict:
        """A DevTools command on the page; returns its result."""
        return self._call(method, params, self._session, timeout)

    def wait_event(self, method: str, timeout: float = 30.0) -> dict:
        """The next event ``method`` of the page (earlier ones already received count)."""
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self._events):
                if event["method"] == method and event.get("sessionId") == self._session:
                    return self._events.pop(i)["params"]
            message = self._receive(deadline)
            if "method" in message:
                self._events.append(message)

    # --- what the tests use ----------------------------------------------------------------

    def open(self, path: Path, timeout: float = 60.0) -> None:
        """Load a local file and wait for its load event."""
        self._events = [e for e in self._events if e["method"] != "Page.loadEventFired"]
        self.call("Page.navigate", {"url": Path(path).resolve().as_uri()})
        self.wait_event("Page.loadEventFired", timeout)

    def evaluate(self, expression: str, timeout: float = 30.0) -> Any:
        """The value of a JavaScript expression in the page (a promise is awaited)."""
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "awaitPromise": True, "returnByValue": True},
            timeout,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"JavaScript error: {text}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        """A PNG of the viewport."""
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self._call("Browser.close", timeout=5)
        except (BrowserError, OSError):  # already gone: nothing to close
            pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
