"""What voices an acoustic model: the vocoder champion of its dataset, when it reads the same
mel frames, else Griffin-Lim. The scorer, `bento build` and the voice service agree on it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wavefoundry import tracking
from wavefoundry.config import Config
from wavefoundry.families.base import Family, mel_config
from wavefoundry.registry import candidates
from wavefoundry.registry.candidates import Candidate
from wavefoundry.tracking import load_logged_model


@dataclass
class Voice:
    """What voices an acoustic model's mel frames: the dataset's vocoder champion when its
    mel matches, else Griffin-Lim (`vocode` None). `label` names it for the fingerprint."""

    label: str
    vocode: Any = None  # (n_mels, frames) log-mel -> (samples,) audio
    candidate: Candidate | None = None


def voice_for(cfg: Config, client: Any, family: Family, device: Any = "cpu") -> Voice:
    """The vocoder champion of `family`'s dataset, when one is registered and reads the same
    mel frames (rate, FFT, hop, mels, band); Griffin-Lim otherwise."""
    name = tracking.registered_model_name(family.data.dataset, "vocoder")
    champion = candidates.by_alias(client, name, cfg.promotion.alias)
    if champion is None:
        return Voice("griffin-lim")
    vocoder_family, vocoder = load_logged_model(champion.model_uri, device)
    same_mel = mel_config(vocoder_family.data.sample_rate, vocoder_family.config) == mel_config(
        family.data.sample_rate, family.config
    )
    if not same_mel or not hasattr(vocoder_family, "vocode_mel"):
        return Voice("griffin-lim")
    label = f"{name}/{champion.version}"
    return Voice(label, lambda mel: vocoder_family.vocode_mel(vocoder, mel), champion)
