"""What every command module shares: the consoles, the configuration options, output helpers."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console
from rich.table import Table

from wavefoundry.config import DATASETS, Config
from wavefoundry.errors import UserError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose mistakes are one line naming the command to ask for help,
    `error: ... (see wavefoundry train --help)`, exit 2 (argparse prints its usage first)."""

    def error(self, message: str) -> NoReturn:
        from rich.markup import escape

        err.print(f"[bold red]error:[/] {escape(message)} (see {self.prog} --help)")
        sys.exit(2)


Handler = Callable[[argparse.Namespace, Config], int]
# command(name, handler, help) -> the subcommand's parser, with the configuration options
Command = Callable[[str, Handler, str], argparse.ArgumentParser]


def command_group(commands: Any, name: str, help: str, description: str) -> Any:
    """`wavefoundry NAME COMMAND ...`: a command of subcommands; returns their subparsers."""
    group = commands.add_parser(name, help=help, description=description)
    return group.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")


DEFAULT_PARAMS = Path("params.yaml")


def in_this_store(command: str) -> str:
    """`command` as a user pastes it: run from this project's environment (uv run), with
    BENTOML_HOME set as it is here, so it finds the Bentos this process built."""
    home = f"BENTOML_HOME={os.environ['BENTOML_HOME']} " if "BENTOML_HOME" in os.environ else ""
    return f"{home}uv run {command}"


def serve_command(tag: str, port: int = 3000) -> str:
    """The command that serves Bento `tag` from this project's environment and BentoML store."""
    return in_this_store(f"bentoml serve {tag} --port {port}")


def params_file(given: Path | None) -> Path:
    """The params file to read: `given` (UserError when there is no such file), else
    params.yaml, which a folder may lack (the code's defaults then)."""
    if given is None:
        return DEFAULT_PARAMS
    if not given.is_file():
        raise UserError(f"params file not found: {given}")
    return given


def common(parser: argparse.ArgumentParser) -> None:
    """The configuration options every command takes; `parser` is kept as the namespace's
    `command_parser`, the one to name in an error about the command's arguments."""
    parser.set_defaults(command_parser=parser)
    group = parser.add_argument_group("configuration")
    group.add_argument(
        "--params",
        type=Path,
        default=None,
        help=f"params file (default: {DEFAULT_PARAMS} when the folder has one; a file named "
        "here must exist)",
    )
    group.add_argument("--config", type=Path, help="a recipe from configs/, merged over the params")
    group.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting, e.g. --set datasets.vctk.mic=mic2 (repeatable)",
    )


def dataset_arg(parser: argparse.ArgumentParser, allow_all: bool = False) -> None:
    choices = [*DATASETS, "all"] if allow_all else list(DATASETS)
    parser.add_argument("--dataset", "-d", required=True, choices=choices, help="which dataset")


def metric_table(
    title: str, metrics: dict[str, float], beside: tuple[str, dict[str, float]] | None = None
) -> Table:
    """Each metric to 4 significant digits; `beside` (a name and its metrics, e.g. the
    Griffin-Lim baseline of the same held-out set) as a second column."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    if beside is not None:
        table.add_column(beside[0], justify="right")
    from wavefoundry.evaluation.metrics import metric_text

    for name, value in metrics.items():
        row = [name, metric_text(value)]
        if beside is not None:
            row.append(metric_text(beside[1].get(name)))
        table.add_row(*row)
    return table


def read_json(path: Path, what: str, keys: tuple[str, ...], written_by: str) -> dict[str, Any]:
    """The JSON object in `path` that `written_by` (a command) wrote, holding `keys`.

    Raises UserError (one line, exit 2) for a missing file, one that is not UTF-8 JSON, or
    one of another kind: a list, or an object without `keys` (a trained.json given where a
    promotion file goes)."""
    if not path.is_file():
        raise UserError(f"no {what} {path}: write it with {written_by}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"{path} is not a {what}: not JSON ({reason})") from None
    if not isinstance(data, dict) or any(key not in data for key in keys):
        raise UserError(
            f"{path} is not a {what}: {written_by} writes a JSON object with "
            + ", ".join(repr(key) for key in keys)
        )
    return data


def write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
