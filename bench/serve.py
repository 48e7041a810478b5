"""Latency and throughput of the served Bento under a bounded load on loopback.

    uv run python bench/serve.py [--requests 300] [--concurrency 8] [--seconds 5]

In a scratch folder: the LJ Speech sample corpus is prepared, a HiFi-GAN V3 (the paper's
sizes) is trained for a few steps, scored and promoted to champion in a local MLflow
registry, built into a Bento by `wavefoundry bento build` and served by `bentoml serve`.
Then `--requests` POST /vocode requests of `--seconds` of audio go out at `--concurrency`
at once. Prints p50 / p99 latency, requests per second, errors, and the real-time factor of
one request on an idle server. Writes bench/results/serve-cpu.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
import soundfile as sf
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
V3 = [
    "models.hifigan.preset=v3",
    "models.hifigan.upsample_initial_channel=256",  # V3's own width (params.yaml is tiny)
    "models.hifigan.segment_length=8192",
]


def wavefoundry(workdir: Path, *args: str) -> str:
    command = [
        sys.executable,
        "-m",
        "wavefoundry.cli",
        *args,
        "--params",
        str(ROOT / "params.yaml"),
    ]
    done = subprocess.run(command, cwd=workdir, capture_output=True, text=True, env=os.environ)
    if done.returncode:
        raise SystemExit(f"wavefoundry {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_bento(tag: str, wait_seconds: float) -> tuple[subprocess.Popen, str]:
    """`bentoml serve TAG` on a free loopback port, once /readyz answers (or `wait_seconds`
    have passed); the process and its URL."""
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("bentoml")), "serve", tag, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(url + "/readyz", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            pass
        time.sleep(0.2)
    return server, url


def champion_bento(workdir: Path) -> str:
    settings = [*V3, "training.steps=2", "promotion.max_real_time_factor=100"]
    flags = [part for setting in settings for part in ("--set", setting)]
    wavefoundry(workdir, "sample-data", "-d", "ljspeech")
    wavefoundry(workdir, "prepare", "-d", "ljspeech")
    wavefoundry(workdir, "train", "-m", "hifigan", "-d", "ljspeech", *flags)
    wavefoundry(workdir, "evaluate", "-m", "hifigan", "-d", "ljspeech", *flags)
    wavefoundry(workdir, "promote", "--model-name", "wavefoundry-ljspeech-vocoder", *flags)
    built = wavefoundry(workdir, "bento", "build", "--model-name", "wavefoundry-ljspeech-vocoder")
    return built.strip().splitlines()[-1]


def clip(seconds: float, rate: int = 22050) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    audio = 0.3 * np.sin(2 * np.pi * 160 * t) * (1 + 0.5 * np.sin(2 * np.pi * 2 * t))
    buffer = io.BytesIO()
    sf.write(buffer, audio.astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    console = Console()

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        os.environ["BENTOML_HOME"] = str(workdir / "bentoml")
        started = time.perf_counter()
        tag = champion_bento(workdir)
        console.print(f"Bento {tag} built in {time.perf_counter() - started:.0f} s")
        server, url = start_bento(tag, wait_seconds=120)
        try:
            body = clip(args.seconds)

            def vocode(_: int) -> tuple[float, int]:
                begun = time.perf_counter()
                response = requests.post(
                    url + "/vocode", files={"audio": ("clip.wav", body)}, timeout=300
                )
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                return time.perf_counter() - begun, response.status_code

            failures: list[str] = []

            for i in range(3):  # warm-up
                vocode(i)
            alone = statistics.median(vocode(i)[0] for i in range(5))
            begun = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                results = list(pool.map(vocode, range(args.requests)))
            wall = time.perf_counter() - begun
        finally:
            server.terminate()
            server.wait(timeout=30)

    latencies = sorted(seconds for seconds, status in results if status == 200)
    errors = sum(status != 200 for _, status in results)
    p50 = float(np.percentile(latencies, 50)) if latencies else float("nan")
    p99 = float(np.percentile(latencies, 99)) if latencies else float("nan")
    figures = {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "audio_seconds": args.seconds,
        "errors": errors,
        "p50_s": p50,
        "p99_s": p99,
        "p99_over_p50": p99 / p50,
        "requests_per_second": args.requests / wall,
        "single_request_s": alone,
        "single_request_rtf": alone / args.seconds,
        "model": "HiFi-GAN V3 (1.46 M parameters)",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
    }
    table = Table(
        title=f"POST /vocode, {args.seconds:g} s clips, {args.requests} requests at concurrency {args.concurrency}"
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    for name in (
        "errors",
        "p50_s",
        "p99_s",
        "p99_over_p50",
        "requests_per_second",
        "single_request_s",
        "single_request_rtf",
    ):
        value = figures[name]
        table.add_row(name, f"{value:.3f}" if isinstance(value, float) else str(value))
    console.print(table)
    for failure in sorted(set(failures))[:5]:
        console.print(f"error: {failure}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "serve-cpu.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
