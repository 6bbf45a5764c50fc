"""The reports in a real browser: headless Chromium (Debian's ``chromium``) loads each kind of report made from a
small run and must find every image decoded, every audio player with a finite duration, no console error and no
network request. Driven over the Chrome DevTools Protocol with a small WebSocket client (standard library only).

Screenshots of every page go to ``$ROBUSTAUDIO_ARTIFACTS`` (default: a temporary folder); the test prints
their paths. Skipped, with the reason, only when no Chromium is installed (``apt-get install -y chromium``).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd
import pytest
from click.testing import CliRunner

from robustaudio.cli import main
from robustaudio.data.datasets import bundled_path

CHROMIUM = next((path for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
                 if (path := shutil.which(name))), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install -y "
                                                          "chromium); the browser checks of the reports need it")
WIDTH = 1200
LOAD_SECONDS = 60


# ---- a minimal WebSocket client (RFC 6455: text frames, client masking) -------------------------------

class WebSocket:
    def __init__(self, url: str, timeout: float = LOAD_SECONDS):
        parts = urlparse(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {parts.path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("the browser closed the DevTools connection during the handshake")
            response += chunk
        head, self.buffer = response.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise ConnectionError(f"DevTools handshake refused: {head[:200]!r}")

    def send(self, text: str) -> None:
        payload = text.encode()
        header = bytes([0x81])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 1 << 16:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("the browser closed the DevTools connection")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def receive(self) -> str:
        message = b""
        while True:
            first, second = self._read(2)
            n = second & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            payload = self._read(n)
            opcode = first & 0x0F
            if opcode == 0x8:
                raise ConnectionError("the browser closed the DevTools connection")
            if opcode in (0x9, 0xA):  # ping / pong: not part of a message
                continue
            message += payload
            if first & 0x80:
                return message.decode()

    def close(self) -> None:
        self.sock.close()


class Browser:
    """Headless Chromium with one page, driven over CDP; records console errors and network requests."""

    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="robustaudio-chromium-")
        self.process = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--mute-audio",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required",
             f"--user-data-dir={self.profile}", "--remote-debugging-port=0", f"--window-size={WIDTH},900",
             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.time() + LOAD_SECONDS
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if time.time() > deadline or self.process.poll() is not None:
                self.quit()
                raise RuntimeError(f"Chromium ({CHROMIUM}) did not open its DevTools port")
            time.sleep(0.1)
        port, path = port_file.read_text().splitlines()[:2]
        self.ws = WebSocket(f"ws://127.0.0.1:{port}{path}")
        self.next_id = 0
        self.events: list[dict] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=WIDTH, height=900, deviceScaleFactor=1,
                  mobile=False)

    def call(self, method: str, session: bool = False, **params) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        self.ws.send(json.dumps(message))
        while True:
            reply = json.loads(self.ws.receive())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str, seconds: float = LOAD_SECONDS) -> dict:
        deadline = time.time() + seconds
        seen = next((e for e in self.events if e.get("method") == method), None)
        while seen is None:
            if time.time() > deadline:
                raise TimeoutError(f"no {method} within {seconds} s")
            event = json.loads(self.ws.receive())
            self.events.append(event)
            if event.get("method") == method:
                seen = event
        return seen

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", session=True, expression=expression, awaitPromise=True,
                           returnByValue=True, timeout=LOAD_SECONDS * 1000)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, path: Path) -> None:
        self.events.clear()
        self.call("Page.navigate", session=True, url=path.resolve().as_uri())
        self.wait_for("Page.loadEventFired")

    def screenshot(self, file: Path) -> None:
        height = int(self.evaluate("Math.ceil(document.documentElement.scrollHeight)"))
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=WIDTH, height=min(height, 16000),
                  deviceScaleFactor=1, mobile=False)
        data = self.call("Page.captureScreenshot", session=True, format="png", captureBeyondViewport=True)["data"]
        file.write_bytes(base64.b64decode(data))
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=WIDTH, height=900, deviceScaleFactor=1,
                  mobile=False)

    def problems(self, page: Path) -> dict[str, list]:
        """Console errors, uncaught exceptions and requests to anything but the page itself and data: URIs."""
        errors, requests = [], []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append(" ".join(str(a.get("value", a.get("description"))) for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                errors.append(params["exceptionDetails"].get("text"))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                errors.append(params["entry"].get("text"))
            elif method == "Network.requestWillBeSent":
                url = params["request"]["url"]
                if not url.startswith("data:") and url != page.resolve().as_uri():
                    requests.append(url)
        return {"console errors": errors, "network requests": requests}

    def quit(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


IMAGES = """Promise.all(Array.from(document.images).map(img => img.decode().then(() => 0, () => 0).then(() =>
  ({alt: img.alt, width: img.naturalWidth, height: img.naturalHeight}))))"""
AUDIO = """Promise.all(Array.from(document.querySelectorAll('audio')).map((a, i) => new Promise(resolve => {
  const done = () => resolve({index: i, duration: a.duration, error: a.error ? a.error.code : null,
                              playable: a.canPlayType('audio/wav')});
  if (a.readyState >= 1) { done(); return; }
  a.addEventListener('loadedmetadata', done, {once: true});
  a.addEventListener('error', done, {once: true});
  setTimeout(done, 20000);
  a.load();
})))"""


@pytest.fixture(scope="module")
def browser():
    browser = Browser()
    yield browser
    browser.quit()


@pytest.fixture(scope="module")
def artifacts():
    folder = Path(os.environ.get("ROBUSTAUDIO_ARTIFACTS") or tempfile.mkdtemp(prefix="robustaudio-screenshots-"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Small runs of each kind of report: attack (with examples to listen to), noise, compare, jam, sticker,
    certify (the defenses report; the defend study writes the same page with its table above)."""
    root = tmp_path_factory.mktemp("browser")
    commands = {
        "attack": (["attack", "--model", "cnn", "--attack", "pgd", "--steps", "3", "--norm", "linf", "--eps", "0.0005",
                    "0.002", "--limit", "10", "--out", str(root / "attack")], root / "attack" / "report.html"),
        "noise": (["noise", "--model", "cnn", "--corruption", "gaussian_snr", "--corruption", "reverb", "--limit", "8",
                   "--out", str(root / "noise")], root / "noise" / "report.html"),
        "compare": (["compare", "--models", "cnn", "--eps", "0.001", "0.005", "--corruption", "gaussian_snr",
                     "--limit", "6", "--steps", "2", "--out", str(root / "compare")],
                    root / "compare" / "compare.html"),
        "jam": (["jam", "--model", "cnn", "--target", "speech", "--music-db", "-10", "--data", str(_few_clips(root)),
                 "--steps", "2", "--batch-size", "2", "--rooms", "1", "--held-out-rooms", "1", "--draws", "1",
                 "--random-pieces", "1", "--loop-seconds", "1", "--rt60", "0.15", "0.2", "--scene-seeds", "1",
                 "--out", str(root / "jam")],
                root / "jam" / "report.html"),
        "sticker": (["sticker", "--model", "av-late", "--source", "speech+person", "--target", "speech+cafe",
                     "--epochs", "2", "--controls", "2", "--out", str(root / "sticker")], root / "sticker" / "report.html"),
        "certify": (["certify", "--model", "cnn", "--denoiser", "minievents-logmel", "--sigma", "0.25", "--n0", "10",
                     "--n", "50", "--limit", "4", "--out", str(root / "certify")], root / "certify" / "defenses.html"),
    }
    pages = {}
    for kind, (args, page) in commands.items():
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, f"{kind}: {result.output}"
        pages[kind] = page
    return pages


def _few_clips(root: Path) -> Path:
    """Six bundled clips for the jamming run: 2 speech to optimise on, 2 speech and 2 others to evaluate."""
    folder = root / "few"
    folder.mkdir()
    table = pd.read_csv(bundled_path() / "metadata.csv")
    speech = table["label"] == "speech"
    rows = pd.concat([table[speech & (table["split"] == "train")].head(2),
                      table[speech & (table["split"] == "test")].head(2),
                      table[~speech & (table["split"] == "test")].head(2)])
    rows = rows.assign(path=[str(bundled_path() / p) for p in rows["path"]])[["path", "label", "split"]]
    rows.to_csv(folder / "metadata.csv", index=False)
    return folder


@pytest.mark.parametrize("kind", ["attack", "noise", "compare", "jam", "sticker", "certify"])
def test_report_loads_cleanly_in_chromium(kind, runs, browser, artifacts):
    page = runs[kind]
    browser.open(page)
    images = browser.evaluate(IMAGES)
    audio = browser.evaluate(AUDIO)
    shot = artifacts / f"{kind}.png"
    browser.screenshot(shot)
    print(f"screenshot of the {kind} report: {shot}")
    assert images, "no image in the report"
    assert all(image["width"] > 0 and image["height"] > 0 for image in images), images
    assert all(a["error"] is None and a["playable"] and isinstance(a["duration"], (int, float)) and
               0 < a["duration"] < 3600 for a in audio), audio
    if kind == "attack":
        assert len(audio) >= 6 and len(audio) % 3 == 0  # clean, adversarial and δ per example
    if kind in ("jam", "certify"):
        assert audio, "nothing to listen to"
    assert browser.problems(page) == {"console errors": [], "network requests": []}
    assert browser.evaluate("document.querySelector('.headline .key') !== null"), "no headline"
