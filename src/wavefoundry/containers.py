"""Containers on this machine, with podman: the local base image, the component image
(components/Dockerfile), and podman's Docker-compatible API for kfp.local's DockerRunner.

No image registry is needed: the base is made from Debian's packages with mmdebstrap
(bookworm, whose Python is 3.11 as uv.lock wants) and imported; builds reach the package
registries on the host's network with the host's CA bundle. podman reads
`components/containers.conf` (runc, cgroupfs, the host's rlimits) unless CONTAINERS_CONF names
another file. Every failure is one `UserError` line.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from wavefoundry import __version__
from wavefoundry.errors import UserError

# The one image every pipeline component runs in (and a containerized Bento starts from): the
# release's name, or WAVEFOUNDRY_IMAGE. `wavefoundry image build` tags what it builds with it.
DEFAULT_IMAGE = f"ghcr.io/wavefoundry/wavefoundry:{__version__}"
IMAGE = os.environ.get("WAVEFOUNDRY_IMAGE", DEFAULT_IMAGE)
REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "components" / "Dockerfile"
CONTAINERS_CONF = REPO / "components" / "containers.conf"
LOCAL_BASE = "localhost/wavefoundry-base:bookworm"
# What the Dockerfile needs of a base: Python 3.11 with pip (to install uv) and CA certificates.
BASE_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-pip", "ca-certificates")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
BUILD_ULIMIT = "nofile=20000:20000"  # podman's default limits are refused here


# An image reference (the OCI distribution spec's grammar, without its rarely used forms):
# [registry[:port]/]path[:tag][@sha256:digest], the path lower case.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REFERENCE = re.compile(
    rf"(?:[A-Za-z0-9.-]+(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?"
)


def check_image_reference(name: str) -> str:
    """`name` when it is an image reference podman and Kubernetes take; else UserError."""
    if not _REFERENCE.fullmatch(name):
        raise UserError(
            f"{name!r} is not an image reference: [registry[:port]/]name[:tag], the name in lower "
            "case (e.g. ghcr.io/you/wavefoundry:1.0)"
        )
    return name


def env() -> dict[str, str]:
    """The environment podman runs in: ours, with CONTAINERS_CONF unless it is set."""
    values = dict(os.environ)
    values.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
    return values


def podman_missing() -> str:
    """Why containers cannot run here ('' when they can): the tests skip with this line."""
    for tool in ("podman", "runc"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install podman runc mmdebstrap uidmap)"
    try:
        podman("info", "--format", "{{.Host.OCIRuntime.Name}}", capture=True)
    except UserError as error:
        return str(error)
    return ""


def need_podman() -> None:
    """UserError, one line saying what to install, when podman is not installed."""
    if shutil.which("podman") is None:
        raise UserError("podman is not installed: apt-get install podman runc (see README)")


def podman(*args: str, capture: bool = False, timeout: float | None = None) -> str:
    """Run `podman ARGS`; its output when `capture`, else it goes to the terminal."""
    need_podman()
    result = subprocess.run(
        ["podman", *args],
        env=env(),
        text=True,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if capture else None,
        timeout=timeout,
    )
    if result.returncode != 0:
        last = (result.stderr or "").strip().splitlines()[-1:] if capture else []
        detail = f": {last[0]}" if last else " (its output is above)"
        raise UserError(f"podman {args[0]} failed with exit code {result.returncode}{detail}")
    return result.stdout or ""


def image_exists(name: str) -> bool:
    """Whether podman holds the image `name`; UserError when podman is not installed."""
    need_podman()
    return (
        subprocess.run(
            ["podman", "image", "exists", name], env=env(), capture_output=True
        ).returncode
        == 0
    )


def image_size(name: str) -> int:
    """Bytes the image takes (all its layers)."""
    return int(podman("image", "inspect", "--format", "{{.Size}}", name, capture=True).strip())


def ensure_base(name: str = LOCAL_BASE) -> bool:
    """Make the local base image when it is missing: a minimal Debian bookworm root file system
    with Python 3.11 from Debian's packages (mmdebstrap), imported into podman. Returns
    whether it was made."""
    if image_exists(name):
        return False
    if shutil.which("mmdebstrap") is None:
        raise UserError(
            f"no base image {name} and no mmdebstrap to make it: apt-get install mmdebstrap"
        )
    print(f"making the base image {name} from Debian {BASE_SUITE} (about 90 s)", flush=True)
    with tempfile.TemporaryDirectory(prefix="wavefoundry-base-") as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        made = subprocess.run(
            [
                "mmdebstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                BASE_SUITE,
                str(rootfs),
            ]
        )
        if made.returncode != 0:
            raise UserError(f"mmdebstrap failed with exit code {made.returncode} (output above)")
        podman("import", "--change", 'CMD ["/bin/bash"]', str(rootfs), name, capture=True)
    return True


def build_options() -> list[str]:
    """What a build here needs: the host's network (to reach the package registries) and CA
    bundle, and the host's file limits (podman's defaults are refused here)."""
    options = ["--network=host", "--ulimit", BUILD_ULIMIT]
    if CA_BUNDLE.is_file():
        options += ["--volume", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"]
    return options


def uv_version() -> str:
    """The version of the uv that installs this checkout (`make setup`'s)."""
    for command in (["uv", "--version"], [sys.executable, "-m", "uv", "--version"]):
        with contextlib.suppress(OSError):
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode == 0:
                return result.stdout.split()[1]
    raise UserError("uv is not installed: make setup installs it")


def build_image(
    tag: str, base: str = LOCAL_BASE, extra_tags: Sequence[str] = (), context: Path = REPO
) -> str:
    """Build components/Dockerfile on `base` as `tag` with podman (the local base is made when
    missing); the layers of an unchanged checkout are reused. Returns the tag."""
    if base == LOCAL_BASE:
        ensure_base(base)
    args = ["build", "--file", str(Path(context) / DOCKERFILE.relative_to(REPO)), *build_options()]
    args += ["--build-arg", f"BASE_IMAGE={base}", "--build-arg", f"UV_VERSION={uv_version()}"]
    for name in (tag, *extra_tags):
        args += ["--tag", name]
    podman(*args, str(context))
    return tag


# --- podman's Docker-compatible API ----------------------------------------------------------


def _answers(path: str) -> bool:
    """Whether a Docker API listens on the unix socket `path` (GET /_ping)."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(5)
        conn.connect(path)
        conn.sendall(b"GET /_ping HTTP/1.0\r\nHost: podman\r\n\r\n")
        status = conn.recv(64).split(b"\r\n", 1)[0]
        return status.startswith(b"HTTP/1.") and b" 200 " in status + b" "
    return False


@contextlib.contextmanager
def docker_api(timeout: float = 300) -> Iterator[str]:
    """A Docker API for the `docker` package (kfp.local's DockerRunner): DOCKER_HOST when it is
    set; else podman's own, `podman system service` on a socket of its own, started here and
    stopped on the way out. Yields the DOCKER_HOST URL, set in os.environ meanwhile."""
    if os.environ.get("DOCKER_HOST"):
        yield os.environ["DOCKER_HOST"]
        return
    need_podman()
    with tempfile.TemporaryDirectory(prefix="wavefoundry-podman-") as tmp:
        path = str(Path(tmp) / "podman.sock")
        url = f"unix://{path}"
        service = subprocess.Popen(
            ["podman", "system", "service", "--time=0", url],
            env=env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + timeout
            while not _answers(path):
                if service.poll() is not None:
                    last = (service.stderr.read() if service.stderr else "").strip()
                    raise UserError(
                        f"podman system service stopped: {last.splitlines()[-1] if last else ''}"
                    )
                if time.monotonic() > deadline:
                    raise UserError(f"podman system service did not answer in {timeout:.0f} s")
                time.sleep(0.2)
            os.environ["DOCKER_HOST"] = url
            yield url
        finally:
            os.environ.pop("DOCKER_HOST", None)
            service.terminate()
            try:
                service.wait(timeout=30)
            except subprocess.TimeoutExpired:
                service.kill()
                service.wait()
