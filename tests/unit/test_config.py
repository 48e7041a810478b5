import os
import subprocess
import sys
from pathlib import Path

import pytest

from wavefoundry.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]


def test_defaults_load_without_a_params_file():
    cfg = load_config(None)
    assert cfg.datasets.vctk.mic == "mic1"
    assert cfg.validation.ljspeech.sample_rate == 22050


def test_params_recipe_and_overrides_apply_in_order(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("workers: 1\ndatasets:\n  vctk:\n    mic: mic2\n")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("workers: 3\n")
    cfg = load_config(params, recipe, ["validation.nsynth.pitch_range=[30, 90]"])
    assert cfg.workers == 3
    assert cfg.datasets.vctk.mic == "mic2"
    # A partial override keeps the section's other defaults.
    assert cfg.validation.nsynth.pitch_range == (30, 90)
    assert cfg.validation.nsynth.velocities == [25, 50, 75, 100, 127]


def test_a_single_source_string_becomes_a_list():
    cfg = load_config(None, overrides=["datasets.ljspeech.source=s3://bucket/LJSpeech-1.1.tar.bz2"])
    assert cfg.datasets.ljspeech.source == ["s3://bucket/LJSpeech-1.1.tar.bz2"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("datasets.vctk.mik=mic2", "unknown key 'datasets.vctk.mik'"),
        ("datasets.vctk.mic=mic3", "bad value for 'datasets.vctk.mic'"),
        ("workers=-1", "bad value for 'workers'"),
        ("workers", "expected KEY=VALUE"),
        (
            "training.per_family={vocos: {stepz: 5}}",
            "unknown key 'training.per_family.vocos.stepz'",
        ),
        (
            "training.per_family={vocos: {steps: 0}}",
            "bad value for 'training.per_family.vocos.steps'",
        ),
        ("training.per_family={vocoss: {steps: 5}}", "training.per_family.vocoss"),
        # A split by speaker with no valid speakers left the valid split silently empty.
        ("datasets.vctk.split={by: speaker, test_speakers: [p225]}", "name valid_speakers"),
        (
            "datasets.vctk.split={by: speaker, valid_speakers: [p225], test_speakers: [p225]}",
            "p225 in both valid_speakers and test_speakers",
        ),
    ],
)
def test_bad_keys_and_values_name_the_key(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides=[override])
    assert message in str(info.value)


def test_bad_yaml_is_one_clear_error(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("workers: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(params)


def test_the_cli_prints_one_line_and_exits_2_before_any_work(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "wavefoundry.cli",
            "ingest",
            "-d",
            "ljspeech",
            "--set",
            "datasets.ljspeech.sauce=x",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --set: unknown key 'datasets.ljspeech.sauce'"
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()


def test_every_recipe_in_configs_loads():
    from pathlib import Path

    recipes = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
    assert recipes
    for recipe in recipes:
        load_config(Path(__file__).resolve().parents[2] / "params.yaml", recipe)


def test_a_family_of_its_own_trains_by_its_own_keys_and_the_rest_by_the_common_ones():
    cfg = load_config(
        None,
        overrides=[
            "training.steps=40",
            "training.batch_size=4",
            "training.per_family={vocos: {steps: 1500, batch_size: 8, grad_clip: null}}",
        ],
    )
    vocos, hifigan = cfg.training.for_family("vocos"), cfg.training.for_family("hifigan")
    assert (vocos.steps, vocos.batch_size, vocos.lr_schedule) == (1500, 8, "constant")
    assert (hifigan.steps, hifigan.batch_size) == (40, 4)
    # The resolved configuration travels to pipeline tasks as plain data: only the keys the
    # family set go with it, so the common ones still reach it there.
    again = load_config(None, layers=[cfg.model_dump(mode="json")])
    assert again.training.per_family["vocos"].model_dump() == {
        "steps": 1500,
        "batch_size": 8,
        "grad_clip": None,
    }
    assert again.training.for_family("vocos") == vocos
    # `train --steps` / `pipeline run --steps` win over both.
    again.training.set_steps("vocos", 3)
    assert again.training.for_family("vocos").steps == 3
    assert again.training.for_family("vocos").batch_size == 8


def test_per_family_null_leaves_every_family_to_the_common_keys():
    cfg = load_config(REPO / "params.yaml", overrides=["training.per_family=null"])
    assert cfg.training.per_family == {}
    assert cfg.training.for_family("vocos").steps == cfg.training.steps


def test_the_tiny_recipe_gives_the_vocoder_that_must_beat_griffin_lim_a_longer_run():
    cfg = load_config(REPO / "params.yaml")
    assert cfg.training.for_family("vocos").steps > cfg.training.steps


def test_config_shows_each_familys_training_keys_as_it_trains(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "wavefoundry.cli", "config", "--params", str(REPO / "params.yaml")]
        + ["-m", "vocos", "-m", "hifigan", "--set", "training.per_family.vocos.steps=777"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    vocos, hifigan = result.stdout.split("training as vocos trains")[1].split("models.hifigan")
    rows = {
        line.split("│")[1].strip(): line.split("│")[2:4]
        for line in vocos.splitlines()
        if line.count("│") == 4
    }
    assert rows["steps"][0].strip() == "777"
    assert rows["steps"][1].strip() == "training.per_family.vocos"
    assert rows["seed"][1].strip() == "training"
    assert "training as hifigan trains" in hifigan


def test_params_yaml_runs_the_demo_families():
    """params.yaml writes pipeline.families out for its reader; it must say what the code's
    default says (config.DEMO_FAMILIES, which dag.py, the e2e test and bench/quality.py use)."""
    from wavefoundry.config import DEMO_FAMILIES

    assert load_config(REPO / "params.yaml").pipeline.families == list(DEMO_FAMILIES)
    assert load_config(None).pipeline.families == list(DEMO_FAMILIES)
