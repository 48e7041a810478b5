"""`wavefoundry evaluate`: score a training run's model on the held-out set, log the score on
its MLflow run and register it as a version of its task's registered model."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from wavefoundry.config import Config
from wavefoundry.errors import UserError
from wavefoundry.evaluation import baseline
from wavefoundry.evaluation.scorer import HeldOutSet, Score, held_out_set, log_score, score
from wavefoundry.registry import candidates
from wavefoundry.registry.candidates import Candidate
from wavefoundry.training.family import Family
from wavefoundry.training.step import choose_device


@dataclass
class Evaluated:
    candidate: Candidate
    score: Score
    run_name: str


def device(cfg: Config) -> torch.device:
    return choose_device(cfg.evaluation.device, "evaluation.device")


def latest_run(client: Any, cfg: Config, model: str, dataset: str) -> str:
    """The newest finished run of `model` on `dataset` in the experiment that logged a model."""
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    runs = []
    if experiment is not None:
        runs = client.search_runs(
            [experiment.experiment_id],
            filter_string=(
                f"tags.family = '{model}' and tags.dataset = '{dataset}' "
                "and attributes.status = 'FINISHED'"
            ),
            order_by=["attributes.start_time DESC"],
            max_results=20,
        )
    runs = [run for run in runs if run.data.tags.get("model_uri")]
    if not runs:
        raise UserError(
            f"no finished {model} run on {dataset} with a model in experiment "
            f"'{cfg.tracking.experiment}' at {cfg.tracking.uri}: train one first "
            f"(wavefoundry train -m {model} -d {dataset})"
        )
    return runs[0].info.run_id


def score_model(cfg: Config, family: Family, net: torch.nn.Module, held_out: HeldOutSet) -> Score:
    """Score a loaded model, training or loading the note classifier when it is a generator."""
    if family.task != "generator" or held_out.dataset != "nsynth":
        return score(family, net, held_out, None, cfg.evaluation.audio_examples)
    from wavefoundry.evaluation.note_classifier import note_classifier

    classifier, accuracy = note_classifier(cfg)
    result = score(family, net, held_out, classifier, cfg.evaluation.audio_examples)
    result.metrics["classifier_pitch_accuracy"] = accuracy["pitch_accuracy"]
    return result


def evaluate(
    cfg: Config,
    run_id: str | None = None,
    model: str | None = None,
    dataset: str | None = None,
) -> Evaluated:
    """Score run `run_id` (else the latest run of `model` on `dataset`) and register it."""
    from mlflow.exceptions import MlflowException

    from wavefoundry.training.tracking import load_logged_model

    client = candidates.client(cfg.tracking)
    if run_id is None:
        if not (model and dataset):
            raise UserError("give a run (--run-id) or a model and a dataset (-m, -d)")
        run_id = latest_run(client, cfg, model, dataset)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise UserError(f"no run {run_id} at {cfg.tracking.uri}") from None
    model_uri = run.data.tags.get("model_uri")
    if not model_uri:
        raise UserError(f"run {run_id} logged no model: it did not finish training")
    family, net = load_logged_model(model_uri, device(cfg))
    held_out = held_out_set(cfg, family.data.dataset)
    result = score_model(cfg, family, net, held_out)
    log_score(run_id, result, held_out.sample_rate)
    if family.task in baseline.TASKS:  # its floor, scored once per held-out set
        baseline.griffin_lim_baseline(cfg, held_out.dataset, held_out.fingerprint)
    candidate = candidates.register(
        client,
        run,
        family.task,
        dataclasses.asdict(family.config),
        result.metrics,
        result.fingerprint,
        result.data_version,
    )
    return Evaluated(candidate, result, run.info.run_name)


def rescore(
    cfg: Config, client: Any, candidate: Candidate, fingerprint: str, save: bool
) -> Candidate:
    """`candidate` scored again on the local held-out set, which must be the one `fingerprint`
    names (the challenger's); with `save`, the new score replaces the old on the run and the
    version."""
    from wavefoundry.training.tracking import load_logged_model

    dataset = candidate.tags.get("dataset", "")
    held_out = held_out_set(cfg, dataset)
    if held_out.fingerprint != fingerprint:
        raise UserError(
            f"the challenger was scored on held-out set {fingerprint}, but the {dataset} data "
            f"here gives {held_out.fingerprint} (data version {held_out.data_version[:12]}): "
            "evaluate the challenger again on this data, then promote"
        )
    family, net = load_logged_model(candidate.model_uri, device(cfg))
    result = score_model(cfg, family, net, held_out)
    if not save:
        tags = {k: v for k, v in candidate.tags.items() if not k.startswith(candidates.EVAL_PREFIX)}
        tags.update(candidates.score_tags(result.metrics, result.fingerprint, result.data_version))
        return dataclasses.replace(candidate, tags=tags)
    log_score(candidate.run_id, result, held_out.sample_rate)
    return candidates.update_scores(
        client, candidate, result.metrics, result.fingerprint, result.data_version
    )
