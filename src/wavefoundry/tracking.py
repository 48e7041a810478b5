"""MLflow tracking of a training run: params, the dataset input, curves, audio, the model."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wavefoundry import __version__
from wavefoundry.audio import MelConfig, log_mel, write_wav
from wavefoundry.config import TrackingConfig
from wavefoundry.errors import UserError

MODEL_CODE = Path(__file__).parent / "families" / "mlflow_model.py"

# MLflow tag names: the one place each is spelled. A run and the registered model version made
# from it carry the same name for the same fact.
TAG_FAMILY = "family"  # the model family (--model)
TAG_DATASET = "dataset"
TAG_TASK = "task"  # vocoder, codec, generator, ...
TAG_DATA_VERSION = "data_version"  # the stored data the model trained on
TAG_GIT_COMMIT = "git_commit"
TAG_MODEL_URI = "model_uri"  # the logged pyfunc model of a finished training run
TAG_RUN_ID = "run_id"
TAG_CONFIG_HASH = "config_hash"
TAG_EVAL_PREFIX = "eval."  # eval.<metric> on a version: its score
TAG_EVAL_FINGERPRINT = "eval_fingerprint"  # the held-out set it was scored on
TAG_EVAL_DATA_VERSION = "eval_data_version"  # the data that held-out set came from
TAG_EVAL_DEVICE = "eval_device"  # cpu, cuda, ...: where it was scored (and its rtf measured)
TAG_EVAL_VOCODER = "eval_vocoder"  # an acoustic model's: what voiced the sentences it was scored on
TAG_PREVIOUS_CHAMPION = "previous_champion"  # on a version and its registered model
TAG_BENTO = "bento_tag"  # on a version: the Bento built from it
TAG_AUDIT_PREFIX = "audit."  # audit.<time> on a registered model: a promotion record
TAG_VALIDATION_VOCODER = "validation_vocoder"  # an acoustic run's: what voiced its samples
TAG_KIND = "wavefoundry.kind"  # runs that are not training runs ("comparison", "baseline")
TAG_BASELINE = "baseline"  # on a baseline's run: which one ("griffin_lim")
TAG_REGISTERED_MODEL = "registered_model"
TAG_PIPELINE_JOB = "wavefoundry.pipeline.job_id"
TAG_PIPELINE_STATUS = "wavefoundry.pipeline.status"
TAG_PIPELINE_DECISION = "wavefoundry.pipeline.decision"
TAG_PIPELINE_VERSION = "wavefoundry.pipeline.registered_version"  # NAME:VERSION
# NAME:VERSION the promotion of a pipeline run left the alias on ("" for none), on its runs
TAG_PIPELINE_CHAMPION = "wavefoundry.pipeline.champion"
TAG_PIPELINE_ERROR = "wavefoundry.pipeline.error"  # on the outcome run of a failed pipeline
# A model built on another registered model (a code prior on its VQ-VAE) names it on its run,
# its registered version and its Bento's /info.
TAG_CODEC_MODEL = "codec_model"  # the registered model
TAG_CODEC_VERSION = "codec_version"  # its version number
TAG_CODEC_RUN_ID = "codec_run_id"  # the run that trained it
UPSTREAM_TAGS = (TAG_CODEC_MODEL, TAG_CODEC_VERSION, TAG_CODEC_RUN_ID)


# How a task is called in a registered model's name where it differs from the task.
REGISTERED_TASK_NAMES = {"acoustic": "tts"}


def registered_model_name(dataset: str, task: str) -> str:
    """The registered model a task's candidates on a dataset join: wavefoundry-DATASET-TASK
    (an acoustic model's is wavefoundry-DATASET-tts)."""
    return f"wavefoundry-{dataset}-{REGISTERED_TASK_NAMES.get(task, task)}"


def registered_version(tracking: TrackingConfig, name: str, version: str) -> Any:
    """Version `version` (a number, or an alias such as champion) of registered model `name`,
    as MLflow's ModelVersion; one line when there is none."""
    import mlflow

    connect(tracking)
    client = mlflow.MlflowClient(tracking.uri)
    try:
        if version.isdigit():
            return client.get_model_version(name, version)
        return client.get_model_version_by_alias(name, version)
    except mlflow.exceptions.MlflowException as err:
        raise UserError(
            f"no version '{version}' of registered model '{name}' at {tracking.uri} "
            f"({str(err).splitlines()[0]})"
        ) from None


def version_by_alias(client: Any, name: str, alias: str) -> Any:
    """The version of registered model `name` that `alias` points at, as MLflow's
    ModelVersion, through MlflowClient `client`; None when the model or the alias is missing."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as err:
        if is_missing(err) or "alias" in str(err).lower():
            return None
        raise


def is_missing(err: Exception) -> bool:
    """Whether an MlflowException says the registered model, version or run does not exist."""
    return getattr(err, "error_code", "") in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts to {"a.b.c": value}; lists and tuples stay whole values."""
    if not isinstance(data, dict):
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


@contextlib.contextmanager
def quiet_loggers(*names: str) -> Iterator[None]:
    """MLflow's INFO/WARNING chatter while logging a model (uv.lock copied, pip version
    unknown) says nothing a user must act on; errors still show."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """One quick look at an http(s) tracking server's /health, so a wrong address fails in
    seconds with one line, not after MLflow's minutes of retries."""
    import requests

    if not uri.startswith(("http://", "https://")):
        return
    try:
        response = requests.get(f"{uri.rstrip('/')}/health", timeout=timeout)
    except requests.RequestException as err:
        reason = type(err).__name__.replace("Error", " error").lower()
        raise UserError(f"MLflow tracking server {uri} unreachable ({reason})") from None
    if response.status_code >= 400:
        raise UserError(
            f"MLflow tracking server {uri} answered /health with HTTP {response.status_code}"
        )


def connect(tracking: TrackingConfig) -> str:
    """Point MLflow at the tracking URI and make sure the experiment exists; its id."""
    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    uri = tracking.uri
    check_reachable(uri)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    try:
        # A new SQLite store announces its tables at INFO (MLflow, then alembic's migrations).
        with quiet_loggers("mlflow.store.db.utils", "alembic.runtime.migration"):
            experiment = mlflow.get_experiment_by_name(tracking.experiment)
        if experiment is not None:
            return experiment.experiment_id
        location = tracking.artifact_location
        if location is None and not uri.startswith(("http://", "https://", "databricks")):
            location = (Path(".wavefoundry") / "mlartifacts").resolve().as_uri()
        return mlflow.create_experiment(tracking.experiment, artifact_location=location)
    except mlflow.exceptions.MlflowException as err:
        raise UserError(f"MLflow tracking server {uri}: {str(err).splitlines()[0]}") from None
    except OSError as err:
        raise UserError(f"MLflow tracking server {uri} unreachable: {err}") from None


class Tracker:
    """One MLflow run. Only rank 0 of a DDP job makes one; the others log nothing."""

    def __init__(self, tracking: TrackingConfig, run_name: str, run_id: str | None = None):
        import mlflow

        self.mlflow = mlflow
        experiment_id = connect(tracking)
        self.run = mlflow.start_run(run_id=run_id, experiment_id=experiment_id, run_name=run_name)
        self.run_id = self.run.info.run_id

    def log_start(self, params: dict[str, Any], tags: dict[str, str], dataset: Any) -> None:
        self.mlflow.set_tags(tags)
        existing = self.mlflow.get_run(self.run_id).data.params
        fresh = {k: v for k, v in params.items() if k not in existing}
        if fresh:
            self.mlflow.log_params(fresh)
        if dataset is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # MLflow's hint on integer columns
                self.mlflow.log_input(dataset, context="training")

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        finite = {k: float(v) for k, v in metrics.items() if np.isfinite(v)}
        self.mlflow.log_metrics(finite, step=step)

    def log_audio(
        self,
        step: int,
        sample_rate: int,
        reference: torch.Tensor | None,
        generated: torch.Tensor,
    ) -> None:
        """Each example as .wav (generated, and reference when there is one) and a PNG of the
        reference and generated log-mel spectrograms one above the other."""
        folder = f"samples/step-{step:08d}"
        with tempfile.TemporaryDirectory() as tmp:
            for i, audio in enumerate(generated):
                write_wav(Path(tmp) / f"{i}-generated.wav", audio.cpu().numpy(), sample_rate)
                if reference is not None:
                    write_wav(
                        Path(tmp) / f"{i}-reference.wav", reference[i].cpu().numpy(), sample_rate
                    )
                figure = spectrogram_figure(
                    None if reference is None else reference[i], audio, sample_rate
                )
                figure.savefig(Path(tmp) / f"{i}-spectrogram.png", dpi=80)
                figure.clf()
            self.mlflow.log_artifacts(tmp, folder)

    def log_figures(self, step: int, figures: dict[str, Any]) -> None:
        """Each figure as samples/step-N/NAME.png."""
        for name, figure in figures.items():
            self.mlflow.log_figure(figure, f"samples/step-{step:08d}/{name}.png")
            figure.clf()

    def log_model(self, model_dir: Path, family_name: str) -> str:
        """The exported model as an MLflow pyfunc model (code + safetensors); its URI."""
        from mlflow.models import ModelSignature
        from mlflow.types import ParamSchema, ParamSpec, Schema, TensorSpec

        signature = ModelSignature(
            inputs=Schema([TensorSpec(np.dtype(np.float32), (-1,))]),
            outputs=Schema([TensorSpec(np.dtype(np.float32), (-1,))]),
            params=ParamSchema(
                [
                    ParamSpec("speaker", "string", ""),
                    ParamSpec("pitch", "long", 60),
                    ParamSpec("seed", "long", 0),
                    ParamSpec("seconds", "double", 1.0),
                ]
            ),
        )
        with warnings.catch_warnings(), quiet_loggers("mlflow.utils", "mlflow.models"):
            # No input example on purpose: checking one would run a (slow) generation now.
            warnings.filterwarnings("ignore", message=".*input example.*")
            info = self._log_pyfunc(model_dir, family_name, signature)
        self.mlflow.set_tag(TAG_MODEL_URI, info.model_uri)
        return info.model_uri

    def _log_pyfunc(self, model_dir: Path, family_name: str, signature: Any) -> Any:
        return self.mlflow.pyfunc.log_model(
            name="model",
            python_model=str(MODEL_CODE),
            artifacts={"model": str(model_dir)},
            signature=signature,
            pip_requirements=[
                f"wavefoundry=={__version__}",
                f"torch=={torch.__version__.split('+')[0]}",
                "safetensors",
                "numpy",
            ],
            tags={TAG_FAMILY: family_name},
        )

    def set_tag(self, key: str, value: str) -> None:
        self.mlflow.set_tag(key, value)

    def end(self, status: str = "FINISHED") -> None:
        self.mlflow.end_run(status=status)


def download_logged_model(model_uri: str, into: Path | None = None) -> Path:
    """The safetensors folder (model.safetensors + config.json) of a model `log_model`
    logged, downloaded from the tracking server."""
    import mlflow
    import yaml

    try:
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=model_uri, dst_path=str(into) if into else None
            )
        )
    except mlflow.exceptions.MlflowException as err:
        raise UserError(f"cannot fetch model {model_uri}: {str(err).splitlines()[0]}") from None
    flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]
    return local / flavor["artifacts"]["model"]["path"]


def load_logged_model(model_uri: str, device: torch.device | str = "cpu") -> tuple[Any, Any]:
    """The (family, inference network) of a model `log_model` logged: its safetensors folder
    is downloaded and read; nothing of MLflow's model code runs and nothing is unpickled."""
    from wavefoundry.families.io import load_model

    family, net = load_model(download_logged_model(model_uri))
    return family, net.to(device)


def spectrogram_figure(
    reference: torch.Tensor | None,
    generated: torch.Tensor,
    sample_rate: int,
    side_by_side: bool = False,
):
    """Log-mel spectrograms of the reference (when there is one) and the generated audio, one
    above the other or side by side."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    mel = MelConfig(sample_rate=sample_rate, f_max=min(8000.0, sample_rate / 2))
    panels = [("reference", reference), ("generated", generated)]
    panels = [(title, audio) for title, audio in panels if audio is not None]
    rows, columns = (1, len(panels)) if side_by_side else (len(panels), 1)
    figure = Figure(figsize=(5 * columns, 2.4 * rows))
    for row, (title, audio) in enumerate(panels, start=1):
        axes = figure.add_subplot(rows, columns, row)
        frames = log_mel(audio.detach().float().cpu(), mel).numpy()
        axes.imshow(frames, origin="lower", aspect="auto", interpolation="none")
        axes.set_title(title, fontsize=9)
        axes.set_ylabel("mel")
    figure.tight_layout()
    return figure
