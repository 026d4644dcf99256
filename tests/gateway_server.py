"""A real `pyexchange serve` process on a loopback port, for the gateway's tests."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

STARTUP_TIMEOUT_S = 60


@dataclass
class Server:
    base_url: str
    ws_url: str
    data_dir: Path
    credentials: list[dict[str, Any]]
    process: subprocess.Popen[str]

    def okx(self, n: int = 0, **options: Any) -> Any:
        """A ccxt okx client of demo account `n`, pointed at this server."""
        import ccxt

        creds = self.credentials[n]
        ex = ccxt.okx({"apiKey": creds["apiKey"], "secret": creds["secretKey"], "password": creds["passphrase"],
                       "options": options, "timeout": 20_000})  # fmt: skip
        ex.urls["api"] = {"rest": self.base_url, "ws": self.ws_url}
        return ex

    def okx_pro(self, n: int = 0, **options: Any) -> Any:
        """A ccxt.pro okx client (asyncio, WebSocket) of demo account `n`."""
        import ccxt.pro

        creds = self.credentials[n]
        ex = ccxt.pro.okx({"apiKey": creds["apiKey"], "secret": creds["secretKey"], "password": creds["passphrase"],
                           "options": options, "timeout": 20_000})  # fmt: skip
        ex.urls["api"] = {"rest": self.base_url, "ws": self.ws_url}
        return ex


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.contextmanager
def running_server(data_dir: Path, config: Path | None = None, *, port: int | None = None) -> Iterator[Server]:
    """Starts `pyexchange serve` on `data_dir` and stops it (SIGTERM) at the end."""
    port = port or free_port()
    command = [sys.executable, "-m", "pyexchange", "serve", "--data-dir", str(data_dir), "--port", str(port)]
    if config is not None:
        command += ["--config", str(config)]
    # The output goes to a file: a pipe read only at the end fills up and stalls the server.
    log = (data_dir.parent / f"{data_dir.name}-server.log").open("w+")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base_url, process, log)
        credentials = json.loads((data_dir / "demo-credentials.json").read_text())
        yield Server(base_url, f"ws://127.0.0.1:{port}/ws/v5", data_dir, credentials, process)
    finally:
        stop(process)
        log.close()


def stop(process: subprocess.Popen[str], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(base_url: str, process: subprocess.Popen[str], log: IO[str]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"the server exited: {log.read()}")
        url = f"{base_url}/api/v5/public/time"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as answer:
            if answer.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError("the server did not answer in time")
