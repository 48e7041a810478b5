"""Model families by name. Imported lazily: naming a family does not import torch."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from wavefoundry.config import FAMILIES as NAMES
from wavefoundry.errors import UserError

if TYPE_CHECKING:
    from wavefoundry.families.base import Family

# name -> "module:class" of its training family (the model itself is in models/<name>.py)
_CLASSES = {
    "wavenet": "wavefoundry.families.wavenet:WaveNetFamily",
    "vqvae": "wavefoundry.families.vqvae:VQVAEFamily",
    "hifigan": "wavefoundry.families.hifigan:HiFiGANFamily",
    "wavegan": "wavefoundry.families.wavegan:WaveGANFamily",
    "samplernn": "wavefoundry.families.samplernn:SampleRNNFamily",
    "code_prior": "wavefoundry.families.code_prior:CodePriorFamily",
    "tacotron2": "wavefoundry.families.tacotron2:Tacotron2Family",
    "vocos": "wavefoundry.families.vocos:VocosFamily",
    "waveglow": "wavefoundry.families.waveglow:WaveGlowFamily",
    "vae": "wavefoundry.families.vae:VAEFamily",
}
# In config.FAMILIES' order (the names' one definition, which --help lists); a name there
# without a class here fails at import.
FAMILIES: dict[str, str] = {name: _CLASSES[name] for name in NAMES}


def get_family(name: str) -> type[Family]:
    if name not in FAMILIES:
        raise UserError(f"unknown model '{name}': choose from {', '.join(FAMILIES)}")
    module, _, attr = FAMILIES[name].partition(":")
    return getattr(importlib.import_module(module), attr)
