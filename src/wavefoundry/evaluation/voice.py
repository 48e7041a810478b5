"""What voices an acoustic model: the vocoder champion of its dataset, when it reads the same
mel frames, else Griffin-Lim. The trainer (validation audio), the scorer, `bento build` and the
voice service agree on it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wavefoundry import tracking
from wavefoundry.config import Config
from wavefoundry.families.base import Family, mel_config
from wavefoundry.tracking import load_logged_model

GRIFFIN_LIM = "griffin-lim"


def vocoder_label(name: str, version: str) -> str:
    """How a registered vocoder version is named where it voiced a score (NAME/VERSION)."""
    return f"{name}/{version}"


@dataclass
class Voice:
    """What voices an acoustic model's mel frames: the dataset's vocoder champion when its
    mel matches, else Griffin-Lim (`vocode` None). `label` names it (NAME/VERSION or
    griffin-lim) for the held-out set's fingerprint and the training run."""

    label: str
    vocode: Any = None  # (n_mels, frames) log-mel -> (samples,) audio
    name: str = ""  # the registered vocoder model and version voicing it; "" for Griffin-Lim
    version: str = ""
    champion: str = ""  # the champion's version when it was looked up ("" when none)


def voice_for(
    cfg: Config, client: Any, family: Family, device: Any = "cpu", current: Voice | None = None
) -> Voice:
    """The vocoder champion (`promotion.alias`) of `family`'s dataset, through MlflowClient
    `client`, when one is registered and reads the same mel frames (rate, FFT, hop, mels,
    band); Griffin-Lim otherwise. `current`, a voice this gave before, is returned as it is
    when the champion has not changed since (nothing is loaded again)."""
    name = tracking.registered_model_name(family.data.dataset, "vocoder")
    champion = tracking.version_by_alias(client, name, cfg.promotion.alias)
    version = "" if champion is None else str(champion.version)
    if current is not None and current.champion == version:
        return current
    if champion is None:
        return Voice(GRIFFIN_LIM)
    vocoder_family, vocoder = load_logged_model(champion.source, device)
    same_mel = mel_config(vocoder_family.data.sample_rate, vocoder_family.config) == mel_config(
        family.data.sample_rate, family.config
    )
    if not same_mel or not hasattr(vocoder_family, "vocode_mel"):
        return Voice(GRIFFIN_LIM, champion=version)
    return Voice(
        vocoder_label(name, version),
        lambda mel: vocoder_family.vocode_mel(vocoder, mel),
        name,
        version,
        version,
    )
