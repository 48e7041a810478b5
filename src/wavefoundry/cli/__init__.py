"""`wavefoundry`: one command per stage. Thin: parse, call the library, print what happened.

One module per group of commands (data, train, registry, serving, pipeline); each has an
`add_commands(commands, command)` that declares its subcommands and their handlers.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from rich.markup import escape

from wavefoundry import __version__
from wavefoundry.cli import data, image, pipeline, registry, serving, train
from wavefoundry.cli.common import Handler, Parser, common, err, out, params_file
from wavefoundry.config import FAMILIES, Config, load_config, model_config, model_sources
from wavefoundry.errors import UserError, disk_error

DESCRIPTION = """\
The lifecycle of audio generation models, one stage per command.

Data stages, in order (each reads what the one before wrote under paths.data, default data/):
  sample-data   generate small LJ Speech, VCTK and NSynth corpora in their official layouts
  ingest        fetch a dataset (folder, archive, http(s) URL, s3://), list every clip, write the manifest
  validate      run the Great Expectations suite; write report.json, summary.txt, quarantine.csv
  store         pack usable clips into per-split int16 audio.npy + index.parquet; record the data version
  prepare       ingest, validate and store one or all datasets

Model stages:
  train         train one model family (-m NAME: see train --help) on a stored dataset,
                tracked in MLflow; checkpoints under runs/DATASET-MODEL/, --resume continues
  evaluate      score a run's model on the fixed held-out clips, log eval/ metrics, audio and
                spectrograms on the run, register it as a version of wavefoundry-DATASET-TASK
  promote       the gate: the challenger takes the `champion` alias only if it beats the champion
  rollback      move the alias back to the version the champion replaced
  compare       every version of a registered model: a table, a chart, an MLflow run

Serving:
  bento build   the champion (or --alias) of a registered model as a Bento: bentoml serve TAG
  bento containerize  that Bento as an OCI image with podman, on the component image

Containers (podman; README "Containers"):
  image build   components/Dockerfile on a local Debian base: the image every component runs in

The lifecycle as one Kubeflow pipeline (what `make demo` runs):
  pipeline run       the whole pipeline here on the CPU: ingest -> validate -> train the
                     families -> evaluate -> promote -> bento build; cached; outcome recorded
  pipeline compile   pipelines/compiled/training_pipeline.yaml from wavefoundry.pipeline.dag
  pipeline submit    one run on a Kubeflow Pipelines host; pipeline schedule: a recurring run

Configuration: params.yaml in the working directory, then --config FILE, then --set KEY=VALUE.
A wrong key or value stops before any work, naming the key (exit 2).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="wavefoundry",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"wavefoundry {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        common(sub)
        sub.set_defaults(handler=handler)
        return sub

    for group in (data, train, registry, serving, image, pipeline):
        group.add_commands(commands, command)
    sub = command(
        "config", cmd_config, "print the configuration after params, recipe and overrides"
    )
    sub.add_argument(
        "--model",
        "-m",
        action="append",
        choices=list(FAMILIES),
        help="show only this family's model settings (repeatable; default: every family)",
    )
    sub.epilog = (
        "After the settings, a table per model family: every key of its config dataclass, its "
        "value and the layer that set it (the recipe, --set, or the model file's default), "
        "then its training keys as it trains (training.per_family.NAME over training)."
    )
    return parser


def cmd_config(args: argparse.Namespace, cfg: Config) -> int:
    import dataclasses

    import yaml
    from rich.table import Table

    from wavefoundry.evaluation.names import check_names
    from wavefoundry.families.registry import get_family

    check_names(cfg.evaluation, cfg.promotion)  # what evaluate and promote would refuse
    params = args.params if args.params.exists() else None
    sources = model_sources(params, args.config, args.overrides)
    settings = cfg.model_dump(mode="json")
    settings.pop("models")
    families = args.model or list(FAMILIES)
    # Every model config resolved before anything is printed: a bad key is one line, alone.
    resolved_by_family = {
        family: model_config(cfg, family, get_family(family).config_class) for family in families
    }
    out.print(yaml.safe_dump(settings, sort_keys=False), markup=False)
    for family in families:
        config_class = get_family(family).config_class
        resolved = dataclasses.asdict(resolved_by_family[family])
        table = Table(
            title=f"models.{family}",
            caption=f"default: the dataclass in {config_class.__module__.replace('.', '/')}.py",
        )
        for column in ("key", "value", "set by"):
            table.add_column(column)
        for key, value in resolved.items():
            source = sources.get(family, {}).get(key)
            default = "[dim]default[/]"
            table.add_row(key, escape(repr(value)), escape(source) if source else default)
        out.print(table)
        out.print(_training_table(cfg, family))
    return 0


def _training_table(cfg: Config, family: str) -> Any:
    """`family`'s training keys as it trains: `training.per_family.FAMILY` over `training`."""
    from rich.table import Table

    own = cfg.training.per_family.get(family)
    own_keys = own.model_dump() if own is not None else {}
    table = Table(
        title=f"training as {family} trains",
        caption=f"training.per_family.{family} over the common training keys",
    )
    for column in ("key", "value", "set by"):
        table.add_column(column)
    for key, value in cfg.training.for_family(family).model_dump().items():
        source = f"training.per_family.{family}" if key in own_keys else "[dim]training[/]"
        table.add_row(key, escape(repr(value)), source)
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # named by the command they were given to, not the top level
        getattr(args, "command_parser", parser).error(
            f"unrecognized arguments: {' '.join(unknown)}"
        )
    try:
        args.params = params_file(args.params)
        cfg = load_config(args.params, args.config, args.overrides)
        return args.handler(args, cfg)
    except UserError as error:
        err.print(f"[bold red]error:[/] {escape(str(error))}")
        return error.exit_code
    except OSError as error:  # a full disk, a read-only folder: one line naming the path
        user = disk_error(error)
        if user is None:
            raise
        err.print(f"[bold red]error:[/] {escape(str(user))}")
        return user.exit_code
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
