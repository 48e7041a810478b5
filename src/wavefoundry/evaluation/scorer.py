"""Scoring a candidate on the held-out set that every candidate of its task renders.

The held-out set is a fixed draw (evaluation.seed, evaluation.clips) from the stored test
split, each clip cut to evaluation.max_seconds. Its fingerprint (dataset, data version, clip
ids, settings) travels with every score: two scores are comparable exactly when their
fingerprints are equal. Vocoders resynthesize each clip from its mel, codecs pass it through
their codes, generators make one note per held-out note at its pitch (or the requested
pitches) and are judged by the NSynth note classifier; on speech, where there is no such judge,
generators are judged by DNSMOS of what they make (no reference needed) and report the
held-out clips' likelihood (bits per sample, bits per code) beside it.
Reconstructions are also scored by the offline judges (evaluation.judges: PESQ, STOI, MCD, F0,
DNSMOS); a judge that cannot run on a clip leaves NaN there and says why in the table's
`judge_notes`. The Griffin-Lim baseline (evaluation/baseline.py) is scored on the same set by
`score_baseline`.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from wavefoundry import tracking
from wavefoundry.audio import MelConfig, write_wav
from wavefoundry.config import Config
from wavefoundry.data.stored import split_dir, stored_dataset
from wavefoundry.errors import UserError
from wavefoundry.evaluation import judges, metrics
from wavefoundry.evaluation.names import check_names
from wavefoundry.families.base import Family
from wavefoundry.progress import progress_bar

# Index columns that describe storage, not the clip: never passed to a model as conditioning.
_STORAGE_COLUMNS = {"offset", "length", "sha256", "duration", "path", "source"}


@dataclass(frozen=True)
class HeldOutClip:
    clip_id: str
    audio: np.ndarray  # float32 in [-1, 1]
    conditions: dict[str, Any]  # the clip's scalar conditioning columns: speaker, pitch, ...


@dataclass(frozen=True)
class HeldOutSet:
    dataset: str
    data_version: str
    sample_rate: int
    clips: tuple[HeldOutClip, ...]
    settings: dict[str, Any]  # the evaluation settings that shaped it

    @property
    def fingerprint(self) -> str:
        identity = {
            "dataset": self.dataset,
            "data_version": self.data_version,
            "clips": [clip.clip_id for clip in self.clips],
            **self.settings,
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def held_out_set(
    cfg: Config, dataset: str, whole_clips: bool = False, vocoder: str = ""
) -> HeldOutSet:
    """The fixed held-out clips of the stored `dataset` under the evaluation settings.

    `whole_clips` (text-to-speech: a sentence is spoken whole) keeps each clip entire instead
    of cutting it to `max_seconds`; `vocoder` names what voices an acoustic model's frames
    (a registered vocoder version, or "griffin-lim"). Both join the fingerprint."""
    settings = cfg.evaluation
    check_names(settings)
    spec, data_version = stored_dataset(cfg, dataset)
    folder = split_dir(cfg, dataset, settings.split)
    index = pd.read_parquet(folder / "index.parquet")
    samples = np.load(folder / "audio.npy", mmap_mode="r")
    # Sorted first so the draw depends on the clips alone, not on how the index was written.
    index = index.sort_values("clip_id", kind="stable").reset_index(drop=True)
    chosen = np.random.default_rng(settings.seed).permutation(len(index))[: settings.clips]
    longest = max(1, int(settings.max_seconds * spec.sample_rate))
    if whole_clips:
        longest = int(index["length"].max())
    clips = []
    for row in index.iloc[chosen].to_dict("records"):
        start, length = int(row["offset"]), min(int(row["length"]), longest)
        audio = np.asarray(samples[start : start + length], dtype=np.float32) / 32768.0
        conditions = {
            key: value.item() if isinstance(value, np.generic) else value
            for key, value in row.items()
            if key not in _STORAGE_COLUMNS
            and key != "clip_id"
            and isinstance(value, str | int | float | np.generic)
        }
        clips.append(HeldOutClip(str(row["clip_id"]), audio, conditions))
    return HeldOutSet(
        dataset,
        data_version,
        spec.sample_rate,
        tuple(clips),
        {
            **settings.model_dump(mode="json", exclude={"device", "audio_examples"}),
            **({"whole_clips": True, "vocoder": vocoder} if whole_clips else {}),
        },
    )


@dataclass
class Rendered:
    clip_id: str
    reference: np.ndarray | None
    generated: np.ndarray


@dataclass
class Score:
    fingerprint: str
    data_version: str
    metrics: dict[str, float]
    clips: pd.DataFrame  # one row per held-out clip
    examples: list[Rendered] = field(default_factory=list)
    device: str = "cpu"  # where it was scored: the rtf is this device's
    vocoder: str = ""  # an acoustic model's: what voiced its sentences (held_out_set's vocoder)


def metric_mel(sample_rate: int) -> MelConfig:
    """The one mel every candidate is measured with, whatever mel the model itself uses."""
    return MelConfig(sample_rate=sample_rate, f_max=min(8000.0, sample_rate / 2))


def score(
    family: Family,
    net: torch.nn.Module,
    held_out: HeldOutSet,
    classifier: Any = None,
    audio_examples: int = 4,
    vocoder: Any = None,
) -> Score:
    """Render every held-out clip with the candidate and measure it (see the module doc).
    `classifier` (evaluation.note_classifier) is needed for generators only; `vocoder` (a
    log-mel -> audio callable) voices an acoustic model's frames (None: Griffin-Lim)."""
    if held_out.dataset != family.data.dataset:
        raise UserError(
            f"a {family.name} model trained on {family.data.dataset} cannot be scored on "
            f"{held_out.dataset} clips"
        )
    net.eval()
    notes = family.task == "generator" and held_out.dataset == "nsynth"
    if notes:
        rows, rendered, compute = _render_notes(family, net, held_out, classifier)
    elif family.task == "generator":
        rows, rendered, compute = _render_utterances(family, net, held_out)
    elif family.task == "acoustic":
        rows, rendered, compute = _render_sentences(family, net, held_out, vocoder)
    else:
        rows, rendered, compute = _render_reconstructions(
            family.name,
            lambda audio, conditions: _timed(
                family, net, audio, _model_conditions(family, conditions)
            ),
            held_out,
            next(net.parameters()).device,
            lambda audio, conditions: family.clip_metrics(
                net, audio, _model_conditions(family, conditions)
            ),
        )
    table = pd.DataFrame(rows)
    values = _averages(table)
    if notes:
        values.update(_note_metrics(classifier, held_out, rendered, table))
    if family.task == "acoustic":
        # F0 is compared only where both voices sound; a sentence with no such frame (an
        # untrained voice) has no F0 error rather than an infinite one: left out of the mean,
        # and the metric left out when no sentence has one.
        f0 = float(table["f0_rmse_cents"].mean(skipna=True))
        values.pop("f0_rmse_cents", None)
        if math.isfinite(f0):
            values["f0_rmse_cents"] = f0
    made = sum(len(r.generated) for r in rendered) / held_out.sample_rate
    device = next(net.parameters()).device.type
    # On a CPU, the process's CPU seconds: other work on the machine does not inflate them
    # (wall seconds do). On a GPU, wall seconds after synchronising. Wall time is kept apart.
    values["rtf"] = metrics.real_time_factor(
        compute.wall if device == "cuda" else compute.cpu, made
    )
    values["rtf_wall"] = metrics.real_time_factor(compute.wall, made)
    return Score(
        held_out.fingerprint,
        held_out.data_version,
        values,
        table,
        rendered[:audio_examples],
        device,
        held_out.settings.get("vocoder", ""),
    )


@dataclass
class Compute:
    """Seconds spent rendering: on the wall clock, and of this process's CPU time (every
    thread's, which is what the work costs whatever else runs on the machine)."""

    wall: float = 0.0
    cpu: float = 0.0

    def __iadd__(self, other: Compute) -> Compute:
        self.wall += other.wall
        self.cpu += other.cpu
        return self


def score_baseline(
    name: str,
    synthesize: Callable[[np.ndarray], np.ndarray],
    held_out: HeldOutSet,
    audio_examples: int = 4,
) -> Score:
    """A method with no model (the Griffin-Lim baseline) scored exactly as a candidate is:
    `synthesize` maps each held-out clip (1-D float32) to its reconstruction."""

    def timed(audio: torch.Tensor, conditions: dict[str, Any]) -> tuple[np.ndarray, Compute]:
        started, started_cpu = time.perf_counter(), time.process_time()
        generated = synthesize(audio.cpu().numpy())
        spent = Compute(time.perf_counter() - started, time.process_time() - started_cpu)
        return np.asarray(generated, dtype=np.float32), spent

    rows, rendered, compute = _render_reconstructions(name, timed, held_out, torch.device("cpu"))
    table = pd.DataFrame(rows)
    values = _averages(table)
    made = sum(len(r.generated) for r in rendered) / held_out.sample_rate
    values["rtf"] = metrics.real_time_factor(compute.cpu, made)  # on the CPU, as scored
    values["rtf_wall"] = metrics.real_time_factor(compute.wall, made)
    return Score(
        held_out.fingerprint, held_out.data_version, values, table, rendered[:audio_examples]
    )


_JUDGED = {name for judge in judges.JUDGES.values() for name in judge.scores}


def _averages(table: pd.DataFrame) -> dict[str, float]:
    """Each metric's mean over the clips. A plain mean, so one non-finite clip makes the metric
    non-finite and the gate refuses it; but a judge's scores average over the clips it could
    score (the others are NaN with a note), and a judge that scored none is left out."""
    values = {}
    for name in table.columns:
        if name not in metrics.METRICS:
            continue
        column = table[name].astype(float)
        if name not in _JUDGED:
            values[name] = float(column.mean(skipna=False))
        elif column.notna().any():
            values[name] = float(column.mean())
    return values


def _timed(family: Family, net: torch.nn.Module, audio, conditions) -> tuple[np.ndarray, Compute]:
    started, started_cpu = time.perf_counter(), time.process_time()
    generated = family.synthesize(net, audio, conditions)
    if generated.is_cuda:
        torch.cuda.synchronize()
    spent = Compute(time.perf_counter() - started, time.process_time() - started_cpu)
    return generated.detach().float().cpu().numpy(), spent


def _model_conditions(family: Family, conditions: dict[str, Any]) -> dict[str, Any]:
    """A held-out clip's conditioning as the model takes it: a speaker it never saw (a
    held-out VCTK speaker) becomes None, so the model uses its default speaker."""
    if "speaker" not in conditions or str(conditions["speaker"]) in family.data.speakers:
        return dict(conditions)
    return {**conditions, "speaker": None}


def _render_reconstructions(
    name: str,
    synthesize: Callable[[torch.Tensor, dict[str, Any]], tuple[np.ndarray, Compute]],
    held_out: HeldOutSet,
    device: torch.device,
    clip_metrics: Callable[[torch.Tensor, dict[str, Any]], dict[str, float]] | None = None,
) -> tuple[list[dict[str, Any]], list[Rendered], Compute]:
    """Each held-out clip through `synthesize` ((audio, conditions) -> (output, compute)),
    measured against the clip by the metric functions and the evaluation's judges."""
    mel = metric_mel(held_out.sample_rate)
    chosen = list(held_out.settings.get("judges", []))
    first = held_out.clips[0]
    # Warm-up (allocator, kernels, caches) outside the timing, on a tenth of a second.
    warm_up = torch.from_numpy(first.audio[: max(1, held_out.sample_rate // 10)]).to(device)
    synthesize(warm_up, first.conditions)
    rows, rendered, compute = [], [], Compute()
    with progress_bar(f"scoring {name}", len(held_out.clips)) as advance:
        for clip in held_out.clips:
            audio = torch.from_numpy(clip.audio).to(device)
            generated, seconds = synthesize(audio, clip.conditions)
            compute += seconds
            reference = torch.from_numpy(clip.audio)
            produced = torch.from_numpy(generated)
            judged = judges.judge_clip(clip.audio, generated, held_out.sample_rate, chosen)
            rows.append(
                {
                    "clip_id": clip.clip_id,
                    "seconds": len(clip.audio) / held_out.sample_rate,
                    "mel_l1": metrics.log_mel_l1(reference, produced, mel),
                    "mrstft": metrics.mrstft_distance(reference, produced),
                    "snr_db": metrics.snr_db(reference, produced),
                    "si_sdr_db": metrics.si_sdr_db(reference, produced),
                    **judged.scores,
                    "judge_notes": "; ".join(judged.notes),
                    **(clip_metrics(audio, clip.conditions) if clip_metrics else {}),
                }
            )
            rendered.append(Rendered(clip.clip_id, clip.audio, generated))
            advance(1)
    return rows, rendered, compute


def _render_utterances(
    family: Family, net: torch.nn.Module, held_out: HeldOutSet
) -> tuple[list[dict[str, Any]], list[Rendered], Compute]:
    """A generator on speech: as many seconds as each held-out clip, with its speaker, judged
    by the evaluation's judges that need no reference (DNSMOS: what the generated speech
    alone sounds like, the score every generator on speech shares), beside the clip's
    likelihood under the model (`Family.clip_metrics`: bits per sample, or bits per code,
    which do not compare across families)."""
    seed = int(held_out.settings.get("seed", 0))
    chosen = [
        name
        for name in held_out.settings.get("judges", [])
        if not judges.JUDGES[name].needs_reference
    ]
    device = next(net.parameters()).device
    rows, rendered, compute = [], [], Compute()
    with progress_bar(f"scoring {family.name}", len(held_out.clips)) as advance:
        for i, clip in enumerate(held_out.clips):
            conditions = _model_conditions(family, clip.conditions)
            conditions.update(
                seed=seed * 100_003 + i, seconds=len(clip.audio) / held_out.sample_rate
            )
            generated, seconds = _timed(family, net, None, conditions)
            compute += seconds
            audio = torch.from_numpy(clip.audio).to(device)
            judged = judges.judge_clip(None, generated, held_out.sample_rate, chosen)
            rows.append(
                {
                    "clip_id": clip.clip_id,
                    "seconds": len(generated) / held_out.sample_rate,
                    **judged.scores,
                    "judge_notes": "; ".join(judged.notes),
                    **family.clip_metrics(net, audio, conditions),
                }
            )
            rendered.append(Rendered(clip.clip_id, clip.audio, generated))
            advance(1)
    return rows, rendered, compute


def _render_sentences(
    family: Any, net: torch.nn.Module, held_out: HeldOutSet, vocoder: Any
) -> tuple[list[dict[str, Any]], list[Rendered], Compute]:
    """Each held-out clip's transcript spoken free-running (prenet seed 0), voiced by
    `vocoder` (else the family's Griffin-Lim), judged against the recording after DTW; its
    alignment scored for focus, diagonality, whether it walks the text forwards (a column of
    eval/clips.json, not a metric) and whether it hit the decoder-step limit."""
    limit = family.config.max_decoder_steps
    rows, rendered, compute = [], [], Compute()
    with progress_bar(f"scoring {family.name}", len(held_out.clips)) as advance:
        for clip in held_out.clips:
            conditions = _model_conditions(family, clip.conditions)
            text = conditions.get("normalized_text") or conditions.get("text") or ""
            started, started_cpu = time.perf_counter(), time.process_time()
            out = family.text_to_mel(net, str(text), conditions.get("speaker"))
            speech = (vocoder or family.vocode)(out.mel_postnet[0]).reshape(-1)
            generated = speech.detach().float().cpu().clamp(-1.0, 1.0).numpy()
            compute += Compute(time.perf_counter() - started, time.process_time() - started_cpu)
            alignment = out.alignments[0]
            rows.append(
                {
                    "clip_id": clip.clip_id,
                    "seconds": len(generated) / held_out.sample_rate,
                    "reference_seconds": len(clip.audio) / held_out.sample_rate,
                    **metrics.dtw_speech_scores(clip.audio, generated, held_out.sample_rate),
                    "attention_focus": metrics.attention_focus_rate(alignment),
                    "attention_diagonality": metrics.attention_diagonality(alignment),
                    "attention_monotonic": metrics.attention_is_monotonic(alignment),
                    "decoder_limit_share": float(int(out.steps[0]) >= limit),
                }
            )
            rendered.append(Rendered(clip.clip_id, clip.audio, generated))
            advance(1)
    return rows, rendered, compute


def _note_requests(held_out: HeldOutSet) -> list[int]:
    pitches = held_out.settings.get("pitches")
    if pitches:
        return [int(pitches[i % len(pitches)]) for i in range(len(held_out.clips))]
    return [int(clip.conditions["pitch"]) for clip in held_out.clips]


def _render_notes(
    family: Family, net: torch.nn.Module, held_out: HeldOutSet, classifier: Any
) -> tuple[list[dict[str, Any]], list[Rendered], Compute]:
    if classifier is None:
        raise UserError(
            f"scoring a generator needs the note classifier, which is trained on NSynth; "
            f"{family.name} on {held_out.dataset} has no held-out notes to compare with"
        )
    seed = int(held_out.settings.get("seed", 0))
    rows, rendered, compute = [], [], Compute()
    with progress_bar(f"scoring {family.name}", len(held_out.clips)) as advance:
        for i, (clip, pitch) in enumerate(
            zip(held_out.clips, _note_requests(held_out), strict=True)
        ):
            conditions = {
                "pitch": pitch,
                "seed": seed * 100_003 + i,
                "seconds": len(clip.audio) / held_out.sample_rate,
                "instrument_family": clip.conditions.get("instrument_family", 0),
            }
            generated, seconds = _timed(family, net, None, conditions)
            compute += seconds
            rows.append(
                {
                    "clip_id": clip.clip_id,
                    "seconds": len(generated) / held_out.sample_rate,
                    "requested_pitch": pitch,
                }
            )
            rendered.append(Rendered(clip.clip_id, clip.audio, generated))
            advance(1)
    return rows, rendered, compute


def _classifier_batch(audio: list[np.ndarray], length: int) -> torch.Tensor:
    batch = torch.zeros(len(audio), length)
    for i, samples in enumerate(audio):
        clipped = torch.from_numpy(np.nan_to_num(samples[:length]).astype(np.float32))
        batch[i, : len(clipped)] = clipped
    return batch


@torch.no_grad()
def _note_metrics(
    classifier: Any, held_out: HeldOutSet, rendered: list[Rendered], table: pd.DataFrame
) -> dict[str, float]:
    """Pitch accuracy of the generated notes, and the Fréchet distance between the classifier's
    embeddings of generated and held-out notes. Adds the per-note predictions to `table`."""
    length = classifier.config.segment_length
    generated = classifier(_classifier_batch([r.generated for r in rendered], length))
    reference = classifier(_classifier_batch([r.reference for r in rendered], length))
    predicted = generated.pitch_logits.argmax(-1).numpy()
    table["predicted_pitch"] = predicted
    table["pitch_correct"] = predicted == table["requested_pitch"].to_numpy()
    finite = all(np.isfinite(r.generated).all() for r in rendered)
    return {
        "pitch_accuracy": float(table["pitch_correct"].mean()) if finite else math.nan,
        "frechet_distance": metrics.frechet_distance(
            generated.embedding.numpy(), reference.embedding.numpy()
        )
        if finite
        else math.nan,
    }


def log_score(run_id: str, result: Score, sample_rate: int) -> None:
    """The score on the candidate's MLflow run: `eval/<metric>` metrics, the per-clip table
    (eval/clips.json), reference/generated audio pairs and side-by-side spectrograms."""
    import mlflow

    from wavefoundry.tracking import spectrogram_figure

    client = mlflow.MlflowClient()
    client.log_batch(
        run_id,
        metrics=[
            mlflow.entities.Metric(f"eval/{name}", value, int(time.time() * 1000), 0)
            for name, value in result.metrics.items()
        ],
        tags=[
            mlflow.entities.RunTag(tracking.TAG_EVAL_FINGERPRINT, result.fingerprint),
            mlflow.entities.RunTag(tracking.TAG_EVAL_DATA_VERSION, result.data_version),
            mlflow.entities.RunTag(tracking.TAG_EVAL_DEVICE, result.device),
            *(
                [mlflow.entities.RunTag(tracking.TAG_EVAL_VOCODER, result.vocoder)]
                if result.vocoder
                else []
            ),
        ],
    )
    client.log_table(run_id, result.clips, "eval/clips.json")
    with tempfile.TemporaryDirectory() as tmp:
        for example in result.examples:
            stem = Path(tmp) / example.clip_id
            generated = np.nan_to_num(example.generated)
            write_wav(stem.with_name(f"{example.clip_id}-generated.wav"), generated, sample_rate)
            reference = None
            if example.reference is not None:
                write_wav(
                    stem.with_name(f"{example.clip_id}-reference.wav"),
                    example.reference,
                    sample_rate,
                )
                reference = torch.from_numpy(example.reference)
            figure = spectrogram_figure(
                reference, torch.from_numpy(generated), sample_rate, side_by_side=True
            )
            figure.savefig(stem.with_name(f"{example.clip_id}-spectrogram.png"), dpi=80)
        client.log_artifacts(run_id, tmp, "eval/examples")
