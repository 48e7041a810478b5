"""Serving: bento build."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from wavefoundry.cli.common import (
    Command,
    command_group,
    common,
    in_this_store,
    out,
    read_json,
    serve_command,
    write_json,
)
from wavefoundry.cli.registry import model_name
from wavefoundry.config import Config
from wavefoundry.errors import UserError


def add_commands(commands: Any, command: Command) -> None:
    bento_commands = command_group(
        commands, "bento", "build the BentoML service of a registered model", "Bentos."
    )
    sub = bento_commands.add_parser(
        "build",
        help="fetch a registered version from MLflow and build a Bento serving it",
        description="Fetch the version an alias points at from the MLflow registry, import its "
        "weights (safetensors) and config into the BentoML model store, and build a Bento "
        "with pinned dependencies: serving/service.py for a vocoder, codec or generator; "
        "serving/voice.py for a TTS model, with the vocoder champion of its dataset beside it. "
        "Then: bentoml serve TAG, or "
        "wavefoundry bento containerize TAG (podman). BENTOML_HOME says where the stores are.",
    )
    common(sub)
    sub.set_defaults(handler=cmd_bento_build)
    model_name(sub, required=False)
    sub.add_argument(
        "--promotion",
        type=Path,
        metavar="FILE",
        help="instead of --model-name: the versions a promotion decided on (promote --out's file)",
    )
    sub.add_argument(
        "--version", help="which version of --model-name (default: the one --alias points at)"
    )
    sub.add_argument(
        "--alias",
        default="champion",
        help="which version, without --version (default: %(default)s)",
    )
    sub.add_argument("--out", type=Path, help="also write the Bento tags as JSON")

    sub = bento_commands.add_parser(
        "containerize",
        help="a Bento as an OCI image, with podman, on the component image",
        description="BentoML's containerize on the podman backend, starting from the component "
        "image (make image), which holds every package the Bento pins: nothing is downloaded. "
        "Then: podman run -p 3000:3000 IMAGE. Prints the image's name (last line).",
    )
    common(sub)
    sub.set_defaults(handler=cmd_bento_containerize)
    sub.add_argument("bento", help="the Bento's tag (NAME:VERSION; NAME for its latest)")
    sub.add_argument("--tag", "-t", help="the image's name (default: the Bento's tag)")


def cmd_bento_build(args: argparse.Namespace, cfg: Config) -> int:
    from wavefoundry.serving.bento import build

    if bool(args.model_name) == bool(args.promotion):
        raise UserError("give --model-name or --promotion (one of them)")
    if args.version and args.promotion:
        raise UserError("--version goes with --model-name; --promotion names its versions")
    chosen: list[tuple[str, str | None]] = [(args.model_name, args.version)]
    if args.promotion:
        record = read_json(args.promotion, "promotion file", ("champions",), "promote --out")
        try:
            chosen = [(str(c["registered_model"]), str(c["version"])) for c in record["champions"]]
        except (TypeError, KeyError):
            raise UserError(
                f"{args.promotion} is not a promotion file: its 'champions' are not a list of "
                "{'registered_model', 'version'} objects, as promote --out writes"
            ) from None
        if not chosen:
            out.print(f"{args.promotion}: no registered model has a champion; no Bento to build")
    tags = []
    for name, version in chosen:
        started = time.perf_counter()
        built = build(cfg, name, version, args.alias)
        models = f"model {built.model_tag}"
        if built.codec_tag:  # a code prior: its VQ-VAE travels as a second model
            models = f"models {built.model_tag} and its VQ-VAE {built.codec_tag}"
        out.print(
            f"built Bento [bold]{built.tag}[/] serving {built.registered_model} version "
            f"{built.version} (BentoML {models}) in "
            f"{time.perf_counter() - started:.1f} s"
        )
        out.print(f"serve it:       {serve_command(built.tag)}", markup=False)
        containerize = in_this_store(f"wavefoundry bento containerize {built.tag}")
        out.print(f"containerize:   {containerize}", markup=False)
        tags.append(built.tag)
    if args.out:
        write_json(args.out, {"tags": tags})
    for tag in tags:
        out.print(tag, markup=False)
    return 0


def cmd_bento_containerize(args: argparse.Namespace, cfg: Config) -> int:
    from wavefoundry.serving.containerize import containerize

    started = time.perf_counter()
    image = containerize(args.bento, args.tag)
    out.print(f"built image [bold]{image}[/] in {time.perf_counter() - started:.0f} s")
    out.print(f"run it:  podman run --rm -p 3000:3000 {image}")
    out.print(image, markup=False)
    return 0
