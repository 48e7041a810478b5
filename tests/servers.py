"""Real servers on loopback for tests: a Range-capable HTTP file server and moto's S3 server.

Both are plain classes so any test or fixture can start one; `conftest.py` wraps them in
fixtures (`http_server`, `moto_server`).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import requests


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the moment of asking)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Served:
    """One request as the file server saw it."""

    path: str
    range: str | None
    status: int
    bytes_sent: int


class FileServer:
    """Serves the files under `root` over HTTP/1.1 on 127.0.0.1, honouring `Range: bytes=N-[M]`.

    Test hooks: `drop_after(n)` makes the next file response stop after `n` body bytes and
    close the connection (once); `fail_next(status)` answers the next request with that status;
    `honour_range = False` makes it ignore Range and send the whole file with 200.
    `requests` records every request; `bytes_sent` totals the body bytes sent.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.requests: list[Served] = []
        self.honour_range = True
        self._drop_after: int | None = None
        self._fail: list[int] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def bytes_sent(self) -> int:
        return sum(r.bytes_sent for r in self.requests)

    def drop_after(self, nbytes: int) -> None:
        self._drop_after = nbytes

    def fail_next(self, status: int, times: int = 1) -> None:
        self._fail.extend([status] * times)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _take(self) -> tuple[int | None, int | None]:
        """The failure status and drop point for the request being answered, each used once."""
        with self._lock:
            fail = self._fail.pop(0) if self._fail else None
            drop, self._drop_after = self._drop_after, None
            return fail, drop


def _handler_for(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            fail, drop = server._take()
            # Recorded before answering, so a client that has its answer sees the record.
            record = Served(self.path, self.headers.get("Range"), 0, 0)
            server.requests.append(record)
            path = (server.root / unquote(urlsplit(self.path).path).lstrip("/")).resolve()
            if fail is not None:
                self._answer(record, fail)
            elif not path.is_file() or server.root.resolve() not in path.parents:
                self._answer(record, 404)
            else:
                self._send_file(record, path.read_bytes(), drop)

        def _send_file(self, record: Served, data: bytes, drop: int | None) -> None:
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", record.range or "")
            if not (match and server.honour_range):
                self._answer(record, 200, data, drop=drop)
                return
            start = int(match.group(1))
            end = min(int(match.group(2) or len(data) - 1), len(data) - 1)
            if start >= len(data):
                self._answer(record, 416, content_range=f"bytes */{len(data)}")
                return
            content_range = f"bytes {start}-{end}/{len(data)}"
            self._answer(record, 206, data[start : end + 1], content_range, drop)

        def _answer(
            self,
            record: Served,
            status: int,
            body: bytes = b"",
            content_range: str | None = None,
            drop: int | None = None,
        ) -> None:
            """Send `body` with an honest Content-Length, cut after `drop` bytes if given."""
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            if content_range:
                self.send_header("Content-Range", content_range)
            self.end_headers()
            if drop is not None and drop < len(body):
                body = body[:drop]
                self.close_connection = True
            record.status, record.bytes_sent = status, len(body)
            self.wfile.write(body)
            self.wfile.flush()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # quiet: pytest shows failures, not access logs

    return Handler


class ServerProcess:
    """A server run as a subprocess on a free loopback port, up once `health_path` answers.

    `url` is its base URL; `log()` the tail of its output; `stop()` ends it.
    """

    name = "server"
    health_path = "/"

    def __init__(self, command: list[str], start_timeout: float, env: dict[str, str] | None = None):
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server
        self._proc = subprocess.Popen(
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        try:
            self._wait_until_up(start_timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_until_up(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self._proc.returncode}:\n{self.log()}"
                )
            try:
                if requests.get(f"{self.url}{self.health_path}", timeout=1).status_code < 500:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not answer within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-4000:]

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=5)
        self._log.close()


class MotoServer(ServerProcess):
    """`python -m moto.server`: an S3-compatible endpoint at `endpoint_url`."""

    name = "moto server"
    health_path = "/moto-api/"

    def __init__(self, start_timeout: float = 30.0) -> None:
        self.port = free_port()
        self.url = self.endpoint_url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        super().__init__(command, start_timeout)

    def reset(self) -> None:
        """Forget every bucket and object."""
        requests.post(f"{self.endpoint_url}/moto-api/reset", timeout=5).raise_for_status()


class MlflowServer(ServerProcess):
    """`mlflow server` with a SQLite backend store and artifacts at `artifacts` (a folder or
    s3://...; for s3 pass the endpoint in `env` as MLFLOW_S3_ENDPOINT_URL)."""

    name = "mlflow server"
    health_path = "/health"

    def __init__(
        self,
        root: Path,
        artifacts: str | None = None,
        env: dict[str, str] | None = None,
        start_timeout: float = 120.0,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        root.mkdir(parents=True, exist_ok=True)
        mlflow = Path(sys.executable).with_name("mlflow")
        command = [
            str(mlflow),
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            artifacts or str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        super().__init__(command, start_timeout, env)


class BentoServer(ServerProcess):
    """`bentoml serve TAG` of a built Bento, up once /readyz says so."""

    name = "bentoml serve"
    health_path = "/readyz"

    def __init__(self, tag: str, bentoml_home: Path, start_timeout: float = 120.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        bentoml = Path(sys.executable).with_name("bentoml")
        command = [str(bentoml), "serve", tag, "--host", "127.0.0.1", "--port", str(self.port)]
        super().__init__(command, start_timeout, env={"BENTOML_HOME": str(bentoml_home)})
