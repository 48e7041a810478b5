"""Reference implementations for the bench only: installed from the package index into a
directory of the bench's work folder, never into the project's environment, never vendored.

Their pins clash with the project's (old torch, librosa, ...), so they are installed with
`uv pip install --no-deps --target DIR` and run in a subprocess of the project's interpreter with
DIR on PYTHONPATH: they use the project's torch and numpy. `reference(packages, imports)` gives a
`Reference` that runs such a subprocess, or says in one line why it cannot (no uv, the install
failed, or the check import failed).

    uv run python bench/references.py [PACKAGE ...]   # install and check; default: all known

Known references, and the module each must import:
  wavenet-vocoder   r9y9's WaveNet (`wavenet_vocoder.WaveNet(...).incremental_forward`)
  parallel-wavegan  kan-bayashi's vocoders (`parallel_wavegan.models.HiFiGANGenerator`); with
                    h5py, which it imports, and scipy.signal.kaiser set to SciPy's
                    scipy.signal.windows.kaiser (moved there in SciPy 1.13) before it is imported
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

WORK = Path(tempfile.gettempdir()) / "wavefoundry-bench"


@dataclass(frozen=True)
class Known:
    """What a known reference needs beyond its own package."""

    imports: tuple[str, ...]  # modules that must import
    extra: tuple[str, ...] = ()  # packages it imports that the project lacks
    setup: str = ""  # Python run before it is imported


KNOWN = {
    "wavenet-vocoder": Known(("wavenet_vocoder",)),
    "parallel-wavegan": Known(
        ("parallel_wavegan.models",),
        extra=("h5py",),
        setup="import scipy.signal, scipy.signal.windows\n"
        "scipy.signal.kaiser = scipy.signal.windows.kaiser",
    ),
}


@dataclass(frozen=True)
class Reference:
    """Packages installed for the bench: `run` a command with them importable, or `reason`
    (one line) why they are not available."""

    packages: tuple[str, ...]
    target: Path
    reason: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    setup: str = ""  # Python run before any code of the references

    @property
    def available(self) -> bool:
        return self.reason is None

    def env(self) -> dict[str, str]:
        """os.environ with the install directory first on PYTHONPATH."""
        paths = [str(self.target), os.environ.get("PYTHONPATH", "")]
        return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}

    def run(self, args: list[str], timeout: float = 600.0) -> subprocess.CompletedProcess:
        """`python SCRIPT ARGS...` (the project's interpreter) with the packages importable and
        `setup` run first; output captured as text. Raises RuntimeError with `reason` when they
        are not available."""
        runner = "import runpy, sys\nsys.argv = sys.argv[1:]\nrunpy.run_path(sys.argv[0], "
        return self.run_code(runner + "run_name='__main__')", args, timeout)

    def run_code(
        self, code: str, args: list[str] = (), timeout: float = 600.0
    ) -> subprocess.CompletedProcess:
        """`python -c CODE ARGS...`, as `run`."""
        if self.reason is not None:
            raise RuntimeError(self.reason)
        return subprocess.run(
            [sys.executable, "-c", f"{self.setup}\n{code}", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def describe(self) -> str:
        """One line: the packages and versions, or why they are not available."""
        if self.reason is not None:
            return self.reason
        return ", ".join(f"{p} {self.versions.get(p, '?')}" for p in self.packages)


def reference(
    packages: list[str] | tuple[str, ...],
    imports: list[str] | tuple[str, ...] = (),
    extra: list[str] | tuple[str, ...] = (),
    setup: str = "",
    work: Path = WORK,
) -> Reference:
    """Install `packages` (index names, optionally pinned: "wavenet-vocoder==0.1.1") and `extra`
    ones once under work/references/, without their dependencies, and check that each module
    of `imports` imports with the project's packages after `setup`. For the KNOWN packages,
    their imports, extra packages and setup are added."""
    packages = tuple(packages)
    known = [KNOWN[p] for p in packages if p in KNOWN]
    imports = tuple(imports) + tuple(m for k in known for m in k.imports)
    extra = tuple(extra) + tuple(e for k in known for e in k.extra)
    setup = "\n".join([k.setup for k in known if k.setup] + ([setup] if setup else []))
    target = work / "references" / "+".join(sorted(packages)).replace("/", "_")
    names = " and ".join(packages)
    installed = target / ".installed"
    if not installed.is_file():
        uv = shutil.which("uv")
        if uv is None:
            return Reference(packages, target, f"{names}: not installed (uv is not on PATH)")
        result = subprocess.run(
            [uv, "pip", "install", "--quiet", "--no-deps", "--target", str(target)]
            + ["--python", sys.executable, *packages, *extra],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            return Reference(
                packages, target, f"{names}: cannot be installed ({_last_line(result.stderr)})"
            )
        installed.write_text("\n".join(packages) + "\n")
    versions = _versions(target, packages)
    probe = Reference(packages, target, None, versions, setup)
    if imports:
        check = probe.run_code("\n".join(f"import {module}" for module in imports), timeout=300)
        if check.returncode != 0:
            reason = f"{names}: cannot be imported ({_last_line(check.stderr)})"
            return Reference(packages, target, reason, versions, setup)
    return probe


def _versions(target: Path, packages: tuple[str, ...]) -> dict[str, str]:
    """Each package's installed version, from its dist-info directory."""
    found = {}
    for package in packages:
        name = package.split("=")[0].split("<")[0].split(">")[0].strip()
        stem = name.replace("-", "_").lower()
        for info in target.glob("*.dist-info"):
            dist, _, version = info.name.removesuffix(".dist-info").rpartition("-")
            if dist.lower() == stem:
                found[package] = version
    return found


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("packages", nargs="*", default=list(KNOWN))
    parser.add_argument("--work", type=Path, default=WORK)
    args = parser.parse_args()
    for package in args.packages:
        print(reference([package], work=args.work).describe())


if __name__ == "__main__":
    main()
