"""The GPU recipes in configs/ and the tiny configs in params.yaml are valid and say what
they claim: the papers' sizes in the recipes, small models in params.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

from wavefoundry.config import ConfigError, load_config, model_config
from wavefoundry.models.registry import FAMILIES, get_family

REPO = Path(__file__).resolve().parents[2]
RECIPES = {
    "wavenet": "ljspeech-wavenet.yaml",
    "hifigan": "ljspeech-hifigan-v1.yaml",
    "vqvae": "vctk-vqvae.yaml",
    "wavegan": "nsynth-wavegan.yaml",
    "waveglow": "ljspeech-waveglow.yaml",
    "vae": "vctk-vae.yaml",
}


@pytest.mark.parametrize("family", FAMILIES)
def test_each_recipe_loads_with_the_papers_sizes(family: str) -> None:
    cfg = load_config(REPO / "params.yaml", REPO / "configs" / RECIPES[family])
    config = model_config(cfg, family, get_family(family).config_class)
    assert cfg.training.device == "cuda" and cfg.training.steps >= 100_000
    published = {
        "wavenet": {"layers": 30, "dilation_cycles": 3, "quantization_channels": 256},
        "hifigan": {"preset": "v1", "hop_length": 256, "mel_weight": 45.0},
        "vqvae": {"downsamplings": 6, "codebook_size": 512, "commitment_cost": 0.25},
        "wavegan": {"slice_length": 16384, "kernel_size": 25, "stride": 4, "model_size": 64},
        "waveglow": {"n_flows": 12, "n_group": 8, "n_channels": 256, "sigma_infer": 0.6},
        "vae": {"ratios": (4, 4, 4, 2), "latent_size": 128, "beta": 0.1},
    }[family]
    assert {key: getattr(config, key) for key in published} == published


@pytest.mark.parametrize("family", FAMILIES)
def test_params_yaml_keeps_a_tiny_version_of_each_family(family: str) -> None:
    cfg = load_config(REPO / "params.yaml")
    family_class = get_family(family)
    config = model_config(cfg, family, family_class.config_class)
    assert config != family_class.config_class(), "params.yaml should shrink the paper's model"


def test_a_recipe_with_a_wrong_shape_names_the_key(tmp_path: Path) -> None:
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("models:\n  hifigan:\n    upsample_rates: [8, 8, 2]\n")
    cfg = load_config(REPO / "params.yaml", recipe)
    with pytest.raises(ConfigError, match="models.hifigan"):
        model_config(cfg, "hifigan", get_family("hifigan").config_class)
