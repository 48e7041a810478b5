"""Training and scoring: train, evaluate."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from wavefoundry.cli.common import Command, err, metric_table, out, read_json, write_json
from wavefoundry.config import DATASETS, FAMILIES, Config
from wavefoundry.errors import UserError


def add_commands(commands: Any, command: Command) -> None:
    sub = command(
        "train",
        cmd_train,
        "train a model family on a stored dataset, logged to MLflow (several GPUs: torchrun)",
    )
    sub.add_argument("--model", "-m", required=True, metavar="NAME", help=", ".join(FAMILIES))
    sub.add_argument("--dataset", "-d", required=True, metavar="NAME", help=", ".join(DATASETS))
    sub.add_argument(
        "--resume",
        action="store_true",
        help="continue from the run's latest checkpoint (a fresh run replaces old checkpoints)",
    )
    sub.add_argument(
        "--steps", type=int, help="this run's steps, over training.steps and training.per_family"
    )
    sub.add_argument(
        "--out", type=Path, help="also write the run (id, model folder, steps, metrics) as JSON"
    )
    sub.epilog = (
        "Run length, batch and schedule: training.* in the recipe (configs/tiny.yaml, which "
        "params.yaml names, unless --config gives another), with training.per_family.NAME "
        "overriding any of them for one family (the tiny recipe gives vocos and tacotron2 "
        "their own); `wavefoundry config -m NAME` shows what NAME will use. "
        "Sizes: models.NAME in the recipe (tiny, CPU) or another, e.g. "
        "--config configs/ljspeech-hifigan-v1.yaml. Several GPUs on one node: "
        "torchrun --nproc-per-node 8 -m wavefoundry.cli train -m hifigan -d ljspeech ..."
    )

    sub = command(
        "evaluate",
        cmd_evaluate,
        "score a training run on the held-out clips and register it as a candidate",
    )
    sub.add_argument("--run-id", help="the MLflow run to score (default: the latest of -m on -d)")
    sub.add_argument(
        "--trained",
        type=Path,
        metavar="FILE",
        help="instead of --run-id: the run `train --out FILE` wrote (dvc.yaml hands it on)",
    )
    sub.add_argument("--model", "-m", metavar="NAME", help=", ".join(FAMILIES))
    sub.add_argument("--dataset", "-d", metavar="NAME", help=", ".join(DATASETS))
    sub.add_argument(
        "--out", type=Path, help="also write the candidate (version, family, metrics) as JSON"
    )
    sub.epilog = (
        "Every candidate of a task renders the same clips: evaluation.clips from the "
        "evaluation.split split drawn with evaluation.seed, each cut to evaluation.max_seconds."
    )


def cmd_train(args: argparse.Namespace, cfg: Config) -> int:
    from wavefoundry.errors import Preempted
    from wavefoundry.progress import interactive, progress_lines
    from wavefoundry.training.trainer import Distributed, resolve_family, train

    resolve_family(cfg, args.model, args.dataset)  # a bad name or pairing: one line, first
    if args.steps is not None:
        if args.steps <= 0:
            raise UserError(f"--steps must be positive, got {args.steps}")
        cfg.training.set_steps(args.model, args.steps)
    # On a terminal the trainer draws a bar; into a pipe or a file, lines every 10 s instead.
    total = cfg.training.for_family(args.model).steps
    main = Distributed.from_environment().main  # only rank 0 reports, under torchrun
    on_step = None if interactive() or not main else progress_lines(total, sys.stderr)
    try:
        result = train(cfg, args.model, args.dataset, resume=args.resume, on_step=on_step)
    except Preempted as stopped:
        err.print(str(stopped))
        return stopped.exit_code
    if not main:
        return 0
    if args.out:
        write_json(args.out, result.as_record())
    out.print(
        metric_table(
            f"{args.model} on {args.dataset}: {result.steps} steps",
            {**result.metrics, **result.validation},
        )
    )
    out.print(f"model: {result.model_dir} (safetensors + config.json)")
    out.print(f"checkpoints: {result.run_dir / 'checkpoints'}")
    if result.run_id:
        out.print(f"MLflow run {result.run_id} at {cfg.tracking.uri}; model {result.model_uri}")
    out.print(f"done in {result.seconds:.1f} s")
    return 0


def cmd_evaluate(args: argparse.Namespace, cfg: Config) -> int:
    from wavefoundry.stages import evaluate

    started = time.perf_counter()
    run_id = args.run_id
    if args.model and args.dataset:  # a bad name or pairing: one line, not "train one first"
        from wavefoundry.training.trainer import resolve_family

        resolve_family(cfg, args.model, args.dataset)
    if args.trained:
        if run_id:
            raise UserError("give --run-id or --trained, not both")
        run_id = read_json(args.trained, "training record", ("run_id",), "train --out")["run_id"]
        if not run_id:
            raise UserError(f"{args.trained} names no MLflow run: the training was not tracked")
    done = evaluate(cfg, run_id, args.model, args.dataset)
    candidate, score = done.candidate, done.score
    out.print(
        metric_table(
            f"{done.run_name}: {len(score.clips)} held-out clips (set {score.fingerprint}"
            + (f", voiced by {score.vocoder})" if score.vocoder else ")"),
            score.metrics,
            beside=None if done.baseline is None else (done.baseline.name, done.baseline.metrics),
        )
    )
    then = (
        f"it is the {cfg.promotion.alias} already"
        if cfg.promotion.alias in candidate.aliases
        else "promote it with: wavefoundry promote --model-name "
        f"{candidate.name} --version {candidate.version}"
    )
    out.print(
        f"registered as [bold]{candidate.name}[/] version {candidate.version} "
        f"(run {candidate.run_id}); {then}"
    )
    if args.out:
        write_json(args.out, candidate.as_record())
    out.print(f"done in {time.perf_counter() - started:.1f} s")
    return 0
