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
    accept_encoding: str | None = None


class FileServer:
    """Serves the files under `root` over HTTP/1.1 on 127.0.0.1, honouring `Range: bytes=N-[M]`.

    Test hooks: `drop_after(n)` makes the next file response stop after `n` body bytes and
    close the connection (once); `fail_next(status)` answers the next request with that status;
    `honour_range = False` makes it ignore Range and send the whole file with 200.
    `content_encoding = "gzip"` labels every file (GET and HEAD) with that Content-Encoding and
    sends it as stored, as a server does that maps `.gz` to an encoding; `gzip_on_the_fly = True`
    compresses each file for a client whose Accept-Encoding allows gzip (no Range then), with its
    own length and ETag, as nginx's `gzip on` does. `requests` records every request (with its
    Accept-Encoding); `bytes_sent` totals the body bytes sent.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.requests: list[Served] = []
        self.honour_range = True
        self.content_encoding: str | None = None
        self.gzip_on_the_fly = False
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
            record = Served(
                self.path, self.headers.get("Range"), 0, 0, self.headers.get("Accept-Encoding")
            )
            server.requests.append(record)
            path = (server.root / unquote(urlsplit(self.path).path).lstrip("/")).resolve()
            if fail is not None:
                self._answer(record, fail)
            elif not path.is_file() or server.root.resolve() not in path.parents:
                self._answer(record, 404)
            else:
                self._send_file(record, path.read_bytes(), drop)

        def do_HEAD(self) -> None:  # noqa: N802 - what a server says of a file without sending it
            import hashlib

            server.requests.append(
                Served(self.path, None, 0, 0, self.headers.get("Accept-Encoding"))
            )
            path = (server.root / unquote(urlsplit(self.path).path).lstrip("/")).resolve()
            if not path.is_file() or server.root.resolve() not in path.parents:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            stored = path.read_bytes()
            data, encoding = self._representation(stored)
            tag = hashlib.md5(stored).hexdigest()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("ETag", f'"{tag}-gzip"' if self._compressing() else f'"{tag}"')
            if encoding:
                self.send_header("Content-Encoding", encoding)
            self.end_headers()

        def _compressing(self) -> bool:
            accepted = self.headers.get("Accept-Encoding") or ""
            return server.gzip_on_the_fly and "gzip" in accepted

        def _representation(self, data: bytes) -> tuple[bytes, str | None]:
            """The body this request gets and its Content-Encoding."""
            if self._compressing():
                import gzip

                return gzip.compress(data, mtime=0), "gzip"
            return data, server.content_encoding

        def _send_file(self, record: Served, data: bytes, drop: int | None) -> None:
            data, encoding = self._representation(data)
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", record.range or "")
            if not (match and server.honour_range) or self._compressing():
                self._answer(record, 200, data, drop=drop, encoding=encoding)
                return
            start = int(match.group(1))
            end = min(int(match.group(2) or len(data) - 1), len(data) - 1)
            if start >= len(data):
                self._answer(record, 416, content_range=f"bytes */{len(data)}")
                return
            content_range = f"bytes {start}-{end}/{len(data)}"
            self._answer(record, 206, data[start : end + 1], content_range, drop, encoding)

        def _answer(
            self,
            record: Served,
            status: int,
            body: bytes = b"",
            content_range: str | None = None,
            drop: int | None = None,
            encoding: str | None = None,
        ) -> None:
            """Send `body` with an honest Content-Length, cut after `drop` bytes if given."""
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            if content_range:
                self.send_header("Content-Range", content_range)
            if encoding:
                self.send_header("Content-Encoding", encoding)
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

    `url` is its base URL; `pid` its process id; `log()` the tail of its output; `stop()` ends it.
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

    @property
    def pid(self) -> int:
        return self._proc.pid

    def log(self, chars: int | None = 4000) -> str:
        """The last `chars` characters of its output (None: all of it)."""
        self._log.seek(0)
        text = self._log.read().decode(errors="replace")
        return text if chars is None else text[-chars:]

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
        start_timeout: float = 300.0,
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
        # MLflow's job runner (huey consumers for GenAI scorers and trace roll-ups) is eight more
        # processes, each importing mlflow; nothing here submits a job, so it stays off.
        env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(env or {})}
        super().__init__(command, start_timeout, env)


class BentoServer(ServerProcess):
    """`bentoml serve TAG` of a built Bento, up once /readyz says so."""

    name = "bentoml serve"
    health_path = "/readyz"

    def __init__(self, tag: str, bentoml_home: Path, start_timeout: float = 300.0) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        bentoml = Path(sys.executable).with_name("bentoml")
        command = [str(bentoml), "serve", tag, "--host", "127.0.0.1", "--port", str(self.port)]
        super().__init__(command, start_timeout, env={"BENTOML_HOME": str(bentoml_home)})


@dataclass
class KfpRequest:
    method: str
    path: str  # without the query
    query: dict[str, list[str]]
    headers: dict[str, str]  # names in lower case
    body: dict


class KfpApiServer:
    """What a Kubeflow Pipelines host answers on its v2beta1 REST API, on loopback: healthz,
    experiments (listed by name, created), runs and recurring runs (created, recorded). Kubernetes
    does not run here; this stands in for the cluster behind the API.

    `requests` records every request with its JSON body; `refuse(status)` answers every request
    (or those to `path`) with that status from then on; `token`, when set, must come as
    `Authorization: Bearer`.
    """

    def __init__(self, token: str | None = None) -> None:
        self.requests: list[KfpRequest] = []
        self.experiments: list[dict] = []
        self.token = token
        self.refusing: dict[str | None, int] = {}
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _kfp_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def refuse(self, status: int, path: str | None = None) -> None:
        self.refusing[path] = status

    def posted(self, path: str) -> list[dict]:
        return [r.body for r in self.requests if r.method == "POST" and r.path == path]

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _kfp_handler(server: KfpApiServer) -> type[BaseHTTPRequestHandler]:
    import json
    import uuid
    from urllib.parse import parse_qs

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self, method: str) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else {}
            server.requests.append(
                KfpRequest(
                    method,
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )  # fmt: skip
            )
            refused = server.refusing.get(parts.path) or server.refusing.get(None)
            if refused:
                return self._send(refused, {"error": "refused", "code": 7})
            expected = f"Bearer {server.token}" if server.token else None
            if expected and self.headers.get("Authorization") != expected:
                return self._send(401, {"error": "Unauthenticated"})
            route = (method, parts.path)
            if route == ("GET", "/apis/v2beta1/healthz"):
                return self._send(200, {"multi_user": False})
            if route == ("GET", "/apis/v2beta1/experiments"):
                wanted = json.loads(parse_qs(parts.query).get("filter", ["{}"])[0])
                names = [p.get("stringValue") for p in wanted.get("predicates", [])]
                found = [e for e in server.experiments if e["display_name"] in names]
                return self._send(200, {"experiments": found, "total_size": len(found)})
            if route == ("POST", "/apis/v2beta1/experiments"):
                experiment = {**body, "experiment_id": str(uuid.uuid4())}
                server.experiments.append(experiment)
                return self._send(200, experiment)
            if route == ("POST", "/apis/v2beta1/runs"):
                return self._send(200, {**body, "run_id": str(uuid.uuid4()), "state": "PENDING"})
            if route == ("POST", "/apis/v2beta1/recurringruns"):
                return self._send(200, {**body, "recurring_run_id": str(uuid.uuid4())})
            return self._send(404, {"error": f"no route {method} {parts.path}"})

        def do_GET(self) -> None:  # noqa: N802
            self._handle("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._handle("POST")

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    return Handler


def wavefoundry(
    project: Path, *args: str, env: dict[str, str], timeout: float = 3600
) -> subprocess.CompletedProcess:
    """`python -m wavefoundry.cli ARGS` in the folder `project`, as a user runs it, its output
    captured. The timeout is generous: trainings on a shared 2-core machine, where a verdict
    must not depend on the load."""
    return subprocess.run(
        [sys.executable, "-m", "wavefoundry.cli", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def serve_and_try_it(stdout: str, registered_model: str) -> tuple[str, str]:
    """The run's closing lines for one champion's Bento: its `serve NAME: ... --port N` line and
    the `then:  curl ...` line after it, as a user reads them; the curl must use that port."""
    lines = stdout.splitlines()
    serve = next(i for i, line in enumerate(lines) if line.startswith(f"serve {registered_model}:"))
    port = lines[serve].rsplit("--port ", 1)[1]
    try_it = lines[serve + 1]
    assert try_it.startswith(f"  then:  curl -s -X POST http://localhost:{port}/"), try_it
    return lines[serve], try_it


def kill_after_checkpoint(process: subprocess.Popen, checkpoints: Path, step: int) -> None:
    """Kill a `wavefoundry train` process once its checkpoint of `step` is on disk, as a
    preempted node would, and drop any later checkpoint the kill came too late for."""
    from wavefoundry.training import checkpoint

    wanted = checkpoints / f"step-{step:08d}"
    deadline = time.monotonic() + 1200  # generous: only a run that never gets there trips it
    while not wanted.is_dir():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"no checkpoint at step {step}"
        time.sleep(0.05)
    process.kill()
    process.communicate()
    for later in checkpoint.checkpoints(checkpoints):
        if later.name != wanted.name:
            checkpoint.shutil.rmtree(later)
