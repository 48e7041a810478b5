import subprocess
import sys

import pytest

from wavefoundry.config import ConfigError, load_config


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
