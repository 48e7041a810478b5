"""The component image: image build."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from wavefoundry.cli.common import Command, command_group, common, out
from wavefoundry.config import Config
from wavefoundry.errors import UserError

BUILD_HELP = """\
Build components/Dockerfile with podman: the image every pipeline component runs in (and the
base of a containerized Bento). The base is a local Debian bookworm image made from Debian's
packages when it is missing (mmdebstrap, about 90 s); the project is installed from uv.lock with
uv sync --locked, as make setup does. The image is tagged with the name the compiled pipeline
gives its components (WAVEFOUNDRY_IMAGE, else the release's), so the container runner and a
Bento built on it find it here. A rebuild with nothing changed reuses every layer. Prints the
tag (last line).
"""


def add_commands(commands: Any, command: Command) -> None:
    sub = command_group(commands, "image", "the component image: build", "The component image.")
    parser = sub.add_parser(
        "build",
        help="build components/Dockerfile with podman on the local base",
        description=BUILD_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(parser)
    parser.set_defaults(handler=cmd_image_build)
    parser.add_argument("--tag", help="the image's name (default: the components' image)")
    parser.add_argument(
        "--base",
        help="the base image (default: the local Debian base; a CUDA runtime on a cluster)",
    )
    parser.add_argument("--context", type=Path, help="the checkout to build (default: this one)")


def cmd_image_build(args: argparse.Namespace, cfg: Config) -> int:
    from wavefoundry import containers

    tag = args.tag or containers.IMAGE
    started = time.perf_counter()
    context = args.context or containers.REPO
    if not (context / "components" / "Dockerfile").is_file():
        raise UserError(f"no components/Dockerfile under {context}: give a wavefoundry checkout")
    containers.build_image(tag, args.base or containers.LOCAL_BASE, context=context)
    size = containers.image_size(tag) / 2**30
    out.print(f"built {tag} in {time.perf_counter() - started:.0f} s ({size:.1f} GiB)")
    out.print(tag, markup=False)
    return 0
