"""Recipes mean exactly what they say: a recipe in configs/ resolves to the model file's
published defaults plus what the recipe itself sets (nothing of the tiny CPU sizes leaks in),
the networks it builds have the parameter counts its header states, and the tiny recipe that
params.yaml names is what runs when no recipe is given."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from wavefoundry.config import ConfigError, load_config, model_config, parse_model_config
from wavefoundry.data.stored import DataSpec
from wavefoundry.families.registry import FAMILIES, get_family

REPO = Path(__file__).resolve().parents[2]
PARAMS = REPO / "params.yaml"
TINY = REPO / "configs" / "tiny.yaml"
SAMPLE_RATES = {"ljspeech": 22050, "vctk": 22050, "nsynth": 16000}
VCTK_SPEAKERS = tuple(f"p{i}" for i in range(225, 335))  # 110, as in VCTK 0.92


def paper_recipes() -> list[Path]:
    """Every recipe that sizes a model (the real-datasets layer and tiny.yaml aside)."""
    found = [p for p in sorted((REPO / "configs").glob("*.yaml")) if p != TINY]
    return [p for p in found if (yaml.safe_load(p.read_text()) or {}).get("models")]


def built(recipe: Path, family: str, overrides: tuple[str, ...] = ()) -> dict[str, int]:
    """Parameters of each network the recipe builds for `family`, on its dataset's spec."""
    cfg = load_config(PARAMS, recipe, overrides)
    family_class = get_family(family)
    dataset = recipe.name.split("-")[0]
    speakers = VCTK_SPEAKERS if dataset == "vctk" else ()
    config = model_config(cfg, family, family_class.config_class)
    nets = family_class(config, DataSpec(dataset, SAMPLE_RATES[dataset], speakers)).build()
    return {name: sum(p.numel() for p in net.parameters()) for name, net in nets.items()}


def test_every_family_has_a_recipe() -> None:
    sized = {
        family
        for recipe in paper_recipes()
        for family in yaml.safe_load(recipe.read_text())["models"]
    }
    assert sized >= set(FAMILIES)


@pytest.mark.parametrize("recipe", paper_recipes(), ids=lambda p: p.name)
def test_a_recipe_is_the_papers_defaults_plus_what_it_sets(recipe: Path) -> None:
    cfg = load_config(PARAMS, recipe)
    stated = yaml.safe_load(recipe.read_text())["models"]
    for family, keys in stated.items():
        config_class = get_family(family).config_class
        expected = parse_model_config(keys, config_class, f"{recipe.name}: models.{family}")
        assert model_config(cfg, family, config_class) == expected
    # The tiny run's settings do not leak either: what the recipe leaves out is the default.
    assert cfg.training.device == "cuda" and cfg.training.steps >= 100_000


@pytest.mark.parametrize("recipe", paper_recipes(), ids=lambda p: p.name)
def test_a_recipe_builds_the_parameter_count_its_header_states(recipe: Path) -> None:
    header = re.search(r"^# Parameters: ([\d.]+) M \((\w+)", recipe.read_text(), re.M)
    assert header, f"{recipe.name} states no '# Parameters: N M (net, ...)' line"
    stated, net = float(header[1]) * 1e6, header[2]
    (family,) = yaml.safe_load(recipe.read_text())["models"]
    assert built(recipe, family)[net] == pytest.approx(stated, rel=0.01)


@pytest.mark.parametrize(("preset", "millions"), [("v1", 13.92), ("v2", 0.92), ("v3", 1.46)])
def test_hifigan_presets_on_the_recipe_build_the_published_generators(
    preset: str, millions: float
) -> None:
    recipe = REPO / "configs" / "ljspeech-hifigan-v1.yaml"
    generator = built(recipe, "hifigan", (f"models.hifigan.preset={preset}",))["generator"]
    assert generator == pytest.approx(millions * 1e6, rel=0.01)


def test_no_recipe_means_the_tiny_recipe_params_yaml_names() -> None:
    assert yaml.safe_load(PARAMS.read_text())["recipe"] == "configs/tiny.yaml"
    assert "models" not in yaml.safe_load(PARAMS.read_text())
    cfg = load_config(PARAMS)
    tiny = yaml.safe_load(TINY.read_text())
    assert cfg.training.steps == tiny["training"]["steps"]
    for family in FAMILIES:
        config_class = get_family(family).config_class
        config = model_config(cfg, family, config_class)
        assert config != config_class(), "the tiny recipe should shrink the paper's model"
        assert config == parse_model_config(tiny["models"][family], config_class, family)


def test_a_recipe_cannot_name_another_recipe(tmp_path: Path) -> None:
    recipe = tmp_path / "nested.yaml"
    recipe.write_text("recipe: configs/tiny.yaml\n")
    with pytest.raises(ConfigError, match="cannot name another recipe"):
        load_config(PARAMS, recipe)


def test_a_recipe_with_a_wrong_shape_names_the_key(tmp_path: Path) -> None:
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("models:\n  hifigan:\n    upsample_rates: [8, 8, 2]\n")
    cfg = load_config(PARAMS, recipe)
    with pytest.raises(ConfigError, match="models.hifigan"):
        model_config(cfg, "hifigan", get_family("hifigan").config_class)


def test_config_shows_which_layer_set_each_model_key() -> None:
    from wavefoundry.config import model_sources

    recipe = REPO / "configs" / "ljspeech-hifigan-v1.yaml"
    sources = model_sources(PARAMS, recipe, ["models.hifigan.preset=v3"])["hifigan"]
    assert sources["preset"] == "--set models.hifigan.preset=v3"
    assert sources["segment_length"] == str(recipe)
    assert "upsample_initial_channel" not in sources  # the model file's default
    assert "hifigan" in model_sources(PARAMS)  # the tiny recipe, named by params.yaml
    assert model_sources(PARAMS)["hifigan"]["upsample_initial_channel"] == str(TINY)


def test_an_unknown_model_names_the_families_in_the_order_help_lists_them():
    from wavefoundry import config
    from wavefoundry.errors import UserError

    assert list(FAMILIES) == list(config.FAMILIES)
    with pytest.raises(UserError) as raised:
        get_family("wavernn")
    assert str(raised.value) == f"unknown model 'wavernn': choose from {', '.join(config.FAMILIES)}"
