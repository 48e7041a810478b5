"""Griffin-Lim from the mel: the floor every learned vocoder and codec must beat.

Griffin and Lim 1984 (phase recovered by alternating projections), after a least-squares
inverse of the mel filterbank (wavefoundry.audio.griffin_lim, over torchaudio's GriffinLim),
from the same mel a vocoder candidate is given. No training, no weights: a vocoder that
does not beat it has learned nothing a listener would want.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from wavefoundry import tracking
from wavefoundry.audio import MelConfig, whole_frame_log_mel
from wavefoundry.audio import griffin_lim as audio_griffin_lim
from wavefoundry.config import Config
from wavefoundry.evaluation.scorer import (
    held_out_set,
    log_score,
    metric_mel,
    score_baseline,
)

NAME = "griffin_lim"  # the baseline's name: tags, the gate's floor, compare's row
N_ITER = 32  # Griffin-Lim iterations (torchaudio's default)


@torch.no_grad()
def griffin_lim(audio: np.ndarray, mel: MelConfig, n_iter: int = N_ITER) -> np.ndarray:
    """`audio` (1-D float, mel.sample_rate) resynthesized from its log-mel (wavefoundry.audio
    .whole_frame_log_mel, as a vocoder is given it) by wavefoundry.audio.griffin_lim; float32
    of the same length, lined up with the input."""
    samples = torch.as_tensor(np.asarray(audio, dtype=np.float32))
    rebuilt = audio_griffin_lim(whole_frame_log_mel(samples, mel), mel, n_iter)
    return rebuilt[: len(samples)].numpy()


# --- the baseline's scores, kept in MLflow beside the candidates' ----------------------------

# The tasks whose candidates reconstruct a held-out clip, for which Griffin-Lim is the floor.
TASKS: tuple[str, ...] = ("vocoder", "codec")


@dataclass(frozen=True)
class Baseline:
    name: str
    run_id: str
    fingerprint: str
    metrics: dict[str, float]


def find_baseline(client: Any, experiment_id: str, fingerprint: str) -> Baseline | None:
    """The newest Griffin-Lim run scored on held-out set `fingerprint`, if any."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.`{tracking.TAG_KIND}` = 'baseline' and tags.`{tracking.TAG_BASELINE}` = "
            f"'{NAME}' and tags.`{tracking.TAG_EVAL_FINGERPRINT}` = '{fingerprint}' "
            "and attributes.status = 'FINISHED'"
        ),
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        return None
    run = runs[0]
    scores = {
        key.removeprefix("eval/"): float(value)
        for key, value in run.data.metrics.items()
        if key.startswith("eval/")
    }
    return Baseline(NAME, run.info.run_id, fingerprint, scores)


def griffin_lim_baseline(cfg: Config, dataset: str, fingerprint: str) -> Baseline:
    """Griffin-Lim's score on held-out set `fingerprint` of `dataset`: the stored one, else
    scored now on the held-out set here (which must be that one) exactly as a candidate is,
    and logged as a run tagged `wavefoundry.kind=baseline`, `baseline=griffin_lim` (eval/
    metrics, the per-clip table, audio and spectrograms)."""
    import mlflow

    from wavefoundry.errors import UserError
    from wavefoundry.tracking import connect

    experiment_id = connect(cfg.tracking)
    client = mlflow.MlflowClient(cfg.tracking.uri)
    found = find_baseline(client, experiment_id, fingerprint)
    if found is not None:
        return found
    held_out = held_out_set(cfg, dataset)
    if held_out.fingerprint != fingerprint:
        raise UserError(
            f"no {NAME} score for held-out set {fingerprint}, and the {dataset} data here gives "
            f"{held_out.fingerprint} (data version {held_out.data_version[:12]}): evaluate the "
            "candidate again on this data"
        )
    mel = metric_mel(held_out.sample_rate)
    result = score_baseline(
        NAME, lambda audio: griffin_lim(audio, mel), held_out, cfg.evaluation.audio_examples
    )
    run = client.create_run(
        experiment_id,
        run_name=f"{NAME}-{dataset}-{fingerprint[:8]}",
        tags={
            tracking.TAG_KIND: "baseline",
            tracking.TAG_BASELINE: NAME,
            tracking.TAG_DATASET: dataset,
            tracking.TAG_DATA_VERSION: held_out.data_version,
        },
    )
    client.log_param(run.info.run_id, "n_iter", N_ITER)
    log_score(run.info.run_id, result, held_out.sample_rate)
    client.set_terminated(run.info.run_id)
    return Baseline(NAME, run.info.run_id, fingerprint, dict(result.metrics))
