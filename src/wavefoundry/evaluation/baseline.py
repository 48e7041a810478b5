"""Griffin-Lim from the mel: the floor every learned vocoder and codec must beat.

Griffin and Lim 1984 (phase recovered by alternating projections), after a least-squares
inverse of the mel filterbank: torchaudio's InverseMelScale and GriffinLim, from the same mel
the candidates are scored with (scorer.metric_mel). No training, no weights: a vocoder that
does not beat it has learned nothing a listener would want.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from wavefoundry import tracking
from wavefoundry.audio import MelConfig, whole_frame_log_mel
from wavefoundry.config import Config
from wavefoundry.evaluation.scorer import (
    held_out_set,
    log_score,
    metric_mel,
    score_baseline,
)

NAME = "griffin_lim"  # the baseline's name: tags, the gate's floor, compare's row
N_ITER = 32  # Griffin-Lim iterations (torchaudio's default)


@functools.lru_cache(maxsize=4)
def _transforms(mel: MelConfig, n_iter: int):
    import torchaudio.transforms as T

    inverse_mel = T.InverseMelScale(
        n_stft=mel.n_fft // 2 + 1,
        n_mels=mel.n_mels,
        sample_rate=mel.sample_rate,
        f_min=mel.f_min,
        f_max=mel.f_max,
        norm="slaney",
        mel_scale="slaney",
        # gelsd: a filterbank with empty bands (more mels than FFT bins can fill) is rank
        # deficient, which the default driver refuses.
        driver="gelsd",
    )
    griffin_lim = T.GriffinLim(
        n_fft=mel.n_fft,
        n_iter=n_iter,
        win_length=mel.win_length,
        hop_length=mel.hop_length,
        power=1.0,  # log_mel is of magnitudes
        rand_init=False,  # the same output on every run
    )
    return inverse_mel, griffin_lim


@torch.no_grad()
def griffin_lim(audio: np.ndarray, mel: MelConfig, n_iter: int = N_ITER) -> np.ndarray:
    """`audio` (1-D float, mel.sample_rate) resynthesized from its log-mel (wavefoundry.audio
    .log_mel) by an inverse mel filterbank and `n_iter` Griffin-Lim iterations; float32 of the
    same length. log_mel's frame t is centred on sample t * hop + hop / 2 and GriffinLim's on
    t * hop, so the output is delayed by half a hop to line up with the input."""
    inverse_mel, rebuild = _transforms(mel, n_iter)
    samples = torch.as_tensor(np.asarray(audio, dtype=np.float32))
    hop = mel.hop_length
    out = rebuild(inverse_mel(torch.exp(whole_frame_log_mel(samples, mel))))
    out = torch.nn.functional.pad(out, (hop // 2, 0))[: len(samples)]
    out = torch.nn.functional.pad(out, (0, len(samples) - len(out)))
    return out.clamp(-1.0, 1.0).numpy()


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
