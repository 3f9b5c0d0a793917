"""A real ``cdx realtime serve`` process (uvicorn) for tests: start, wait until healthy, SIGKILL, restart."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.realtime.conftest import KEYS, PRINCIPALS, REPO, env_name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(folder: Path, dialect: str, dsn: str) -> tuple[Path, Path]:
    """A topology (the sample's, HQ on ``dsn``) and a realtime.yaml with keys by ``${VAR}``."""
    text = (REPO / "topology.yaml").read_text()
    start = text.index("hq:\n")
    end = text.index("\n\n", start)
    topology = folder / "topology.yaml"
    topology.write_text(text[:start] + f"hq:\n  name: hq\n  dialect: {dialect}\n  dsn: \"{dsn}\"" + text[end:])
    config = folder / "realtime.yaml"
    config.write_text("credentials:\n" + "".join(
        f"  - {{principal: {p}, api_key: '${{{env_name(p)}}}'}}\n" for p in PRINCIPALS) + "retry_after_seconds: 1\n")
    return topology, config


class Service:
    """``cdx realtime serve`` on a free port; ``kill()`` sends SIGKILL, ``start()`` brings it back."""

    def __init__(self, topology: Path, config: Path, log: Path, extra: list[str] | None = None,
                 scheme: str = "http") -> None:
        self.topology, self.config, self.log, self.extra = topology, config, log, extra or []
        self.port = free_port()
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> None:
        env = {**os.environ, **{env_name(p): KEYS[p] for p in PRINCIPALS}}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cdx.cli.main", "realtime", "serve", "-t", str(self.topology), "-c",
                 str(self.config), "--port", str(self.port), *self.extra],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        deadline = time.monotonic() + timeout
        with self.health_client() as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise AssertionError(f"cdx realtime serve exited with {self.proc.returncode}: "
                                         f"{self.log.read_text()[-2000:]}")
                try:
                    if http.get(f"{self.url}/health").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
        raise AssertionError(f"cdx realtime serve not healthy after {timeout}s: {self.log.read_text()[-2000:]}")

    def health_client(self) -> httpx.Client:
        return httpx.Client(timeout=15)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
