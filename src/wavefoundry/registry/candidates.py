"""Candidates in the MLflow model registry: one registered model per dataset and task
(`wavefoundry-ljspeech-vocoder`), one version per scored training run.

A version's tags say what it is (family, dataset, task, training data version, git commit,
config hash) and how it scored (`eval.<metric>`, `eval_fingerprint`, `eval_data_version`).
The tags, not the run's metric history, are what the promotion gate reads.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wavefoundry import tracking
from wavefoundry.config import TrackingConfig
from wavefoundry.errors import UserError
from wavefoundry.tracking import registered_model_name

if TYPE_CHECKING:  # the registry imports no torch at run time
    from wavefoundry.evaluation.scorer import Score


def config_hash(model_config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(model_config, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Candidate:
    """One registered model version, as the gate and the tables see it."""

    name: str
    version: str
    run_id: str
    model_uri: str
    tags: dict[str, str]
    aliases: tuple[str, ...] = ()

    @property
    def family(self) -> str:
        return self.tags.get(tracking.TAG_FAMILY, "?")

    @property
    def task(self) -> str:
        return self.tags.get(tracking.TAG_TASK, "?")

    @property
    def dataset(self) -> str:
        return self.tags.get(tracking.TAG_DATASET, "?")

    @property
    def metrics(self) -> dict[str, float]:
        return {
            key.removeprefix(tracking.TAG_EVAL_PREFIX): float(value)
            for key, value in self.tags.items()
            if key.startswith(tracking.TAG_EVAL_PREFIX)
        }

    @property
    def fingerprint(self) -> str:
        return self.tags.get(tracking.TAG_EVAL_FINGERPRINT, "")

    @property
    def label(self) -> str:
        return f"v{self.version} {self.family}"

    def as_record(self) -> dict[str, Any]:
        """What a pipeline task hands on and `evaluate --out` writes (JSON: NaN becomes null)."""
        return {
            "registered_model": self.name,
            "version": self.version,
            "run_id": self.run_id,
            "family": self.family,
            "task": self.task,
            "metrics": {k: v if math.isfinite(v) else None for k, v in self.metrics.items()},
        }


def client(tracking: TrackingConfig) -> Any:
    """An MlflowClient on the tracking server (its registry too), checked to be reachable."""
    import mlflow

    from wavefoundry.tracking import connect

    connect(tracking)
    return mlflow.MlflowClient(tracking.uri)


def _candidate(version: Any, aliases: tuple[str, ...] | None = None) -> Candidate:
    """A registry version as a Candidate; `aliases` where the version object lacks them
    (search results carry tags but not aliases)."""
    return Candidate(
        name=version.name,
        version=str(version.version),
        run_id=version.run_id or version.tags.get(tracking.TAG_RUN_ID, ""),
        model_uri=version.source,
        tags=dict(version.tags),
        aliases=tuple(getattr(version, "aliases", ()) or ()) if aliases is None else aliases,
    )


_missing = tracking.is_missing


def _invalid(err: Exception) -> bool:
    return getattr(err, "error_code", "") == "INVALID_PARAMETER_VALUE"


def _first_line(err: Exception) -> str:
    return str(err).splitlines()[0].removeprefix("INVALID_PARAMETER_VALUE: ")


NAMING = "wavefoundry names them wavefoundry-DATASET-TASK, e.g. wavefoundry-ljspeech-vocoder"


def name_filter(name: str) -> str:
    """A search filter for registered model `name`, quoted so a name with a quote (MLflow
    allows one) is still one string."""
    if "'" not in name:
        return f"name='{name}'"
    if '"' not in name:
        return f'name="{name}"'
    raise UserError(f"registered model name {name!r} has both kinds of quote ({NAMING})")


def candidates(mlflow_client: Any, name: str) -> list[Candidate]:
    """Every version of registered model `name`, oldest first; one clear error when the name
    is not one MLflow takes (empty, '/' or ':' in it), there is no such model, or it has no
    versions."""
    from mlflow.exceptions import MlflowException

    hint = "score a training run first: wavefoundry evaluate -m MODEL -d DATASET"
    if not name.strip():
        raise UserError(f"the registered model name is empty ({NAMING})")
    try:
        model = mlflow_client.get_registered_model(name)
    except MlflowException as err:
        if _missing(err):
            raise UserError(f"no registered model '{name}' ({hint})") from None
        if _invalid(err):
            raise UserError(f"{_first_line(err)} ({NAMING})") from None
        raise
    versions = mlflow_client.search_model_versions(name_filter(name))
    if not versions:
        raise UserError(f"registered model '{name}' has no versions ({hint})")
    aliases = dict(model.aliases or {})
    found = [
        _candidate(v, tuple(a for a, held in aliases.items() if str(held) == str(v.version)))
        for v in versions
    ]
    return sorted(found, key=lambda c: int(c.version))


def find(
    mlflow_client: Any, name: str, version: str | None = None, run_id: str | None = None
) -> Candidate:
    """A version of `name` by number, by the run it came from, or else the newest."""
    every = candidates(mlflow_client, name)
    if version is not None:
        chosen = [c for c in every if c.version == str(version)]
        what = f"version {version}"
    elif run_id is not None:
        chosen = [c for c in every if c.run_id == run_id]
        what = f"a version from run {run_id}"
    else:
        return every[-1]
    if not chosen and run_id is not None:
        raise UserError(
            f"run {run_id} is not a version of '{name}': it has no eval metrics yet; "
            f"score it with: wavefoundry evaluate --run-id {run_id}"
        )
    if not chosen:
        known = ", ".join(c.version for c in every)
        raise UserError(f"registered model '{name}' has no {what} (versions: {known})")
    return chosen[-1]


def version(mlflow_client: Any, name: str, number: str, what: str) -> Candidate:
    """Version `number` of `name`; one clear error naming `what` it was (e.g. "the champion
    before v3") when it was deleted or is not a version number."""
    from mlflow.exceptions import MlflowException

    try:
        return _candidate(mlflow_client.get_model_version(name, number))
    except MlflowException as err:
        if _missing(err) or _invalid(err):
            known = ", ".join(c.version for c in candidates(mlflow_client, name))
            raise UserError(
                f"'{name}' has no version {number!r} ({what}): it was deleted or never existed "
                f"(versions: {known})"
            ) from None
        raise


def check_run(mlflow_client: Any, candidate: Candidate, what: str) -> None:
    """One clear error when the run `candidate` came from was deleted in MLflow (its scores
    can no longer be logged, its model may be gone with the next `mlflow gc`)."""
    from mlflow.exceptions import MlflowException

    if not candidate.run_id:
        return
    try:
        stage = mlflow_client.get_run(candidate.run_id).info.lifecycle_stage
    except MlflowException as err:
        if not _missing(err):
            raise
        stage = "deleted"
    if stage == "deleted":
        raise UserError(
            f"'{candidate.name}' v{candidate.version} ({what}) comes from run "
            f"{candidate.run_id}, which was deleted in MLflow: restore the run (MLflow UI, "
            "the experiment's deleted runs) or choose another version"
        )


def by_alias(mlflow_client: Any, name: str, alias: str) -> Candidate | None:
    version = tracking.version_by_alias(mlflow_client, name, alias)
    return None if version is None else _candidate(version)


def score_tags(
    metrics: dict[str, float],
    fingerprint: str,
    data_version: str,
    device: str = "",
    vocoder: str = "",
) -> dict[str, str]:
    tags = {
        f"{tracking.TAG_EVAL_PREFIX}{name}": repr(float(value)) for name, value in metrics.items()
    }
    return {
        **tags,
        tracking.TAG_EVAL_FINGERPRINT: fingerprint,
        tracking.TAG_EVAL_DATA_VERSION: data_version,
        **({tracking.TAG_EVAL_DEVICE: device} if device else {}),
        **({tracking.TAG_EVAL_VOCODER: vocoder} if vocoder else {}),
    }


def tags_of(score: Score) -> dict[str, str]:
    """A score's tags on its version (`score_tags` of its metrics and where it was made)."""
    return score_tags(
        score.metrics, score.fingerprint, score.data_version, score.device, score.vocoder
    )


def register(
    mlflow_client: Any,
    run: Any,
    task: str,
    model_config: dict[str, Any],
    score: Score,
) -> Candidate:
    """The scored run as a version of its task's registered model (the run's existing version
    when it was registered before: its scores are replaced)."""
    from mlflow.exceptions import MlflowException

    run_tags = run.data.tags
    model_uri = run_tags.get(tracking.TAG_MODEL_URI)
    if not model_uri:
        raise UserError(
            f"run {run.info.run_id} logged no model (no model_uri tag): nothing to register"
        )
    name = registered_model_name(run_tags[tracking.TAG_DATASET], task)
    try:
        mlflow_client.create_registered_model(
            name,
            tags={tracking.TAG_TASK: task, tracking.TAG_DATASET: run_tags[tracking.TAG_DATASET]},
            description=f"wavefoundry {task} candidates trained on {run_tags[tracking.TAG_DATASET]}",
        )
    except MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    tags = {
        tracking.TAG_FAMILY: run_tags.get(tracking.TAG_FAMILY, ""),
        tracking.TAG_DATASET: run_tags[tracking.TAG_DATASET],
        tracking.TAG_TASK: task,
        tracking.TAG_DATA_VERSION: run_tags.get(tracking.TAG_DATA_VERSION, ""),
        tracking.TAG_GIT_COMMIT: run_tags.get(tracking.TAG_GIT_COMMIT, ""),
        tracking.TAG_CONFIG_HASH: config_hash(model_config),
        tracking.TAG_RUN_ID: run.info.run_id,
        **{key: run_tags[key] for key in tracking.UPSTREAM_TAGS if key in run_tags},
        **tags_of(score),
    }
    existing = mlflow_client.search_model_versions(
        f"{name_filter(name)} and run_id='{run.info.run_id}'"
    )
    if existing:
        version = existing[0].version
        for key, value in tags.items():
            mlflow_client.set_model_version_tag(name, version, key, value)
    else:
        version = mlflow_client.create_model_version(
            name,
            source=model_uri,
            run_id=run.info.run_id,
            tags=tags,
            model_id=model_uri.removeprefix("models:/")
            if model_uri.startswith("models:/")
            else None,
        ).version
    return _candidate(mlflow_client.get_model_version(name, version))


def update_scores(
    mlflow_client: Any,
    candidate: Candidate,
    score: Score,
) -> Candidate:
    """Replace a version's scores (a champion re-scored on newer data)."""
    stale = [
        k
        for k in candidate.tags
        if k.startswith(tracking.TAG_EVAL_PREFIX)
        and k[len(tracking.TAG_EVAL_PREFIX) :] not in score.metrics
    ]
    for key in stale:
        mlflow_client.delete_model_version_tag(candidate.name, candidate.version, key)
    for key, value in tags_of(score).items():
        mlflow_client.set_model_version_tag(candidate.name, candidate.version, key, value)
    return _candidate(mlflow_client.get_model_version(candidate.name, candidate.version))
