"""What `pipeline run` prints last: its champions (or why there is none), and for each served
champion a curl that fits its task's endpoint."""

import pytest

from wavefoundry.cli.pipeline import _champion_lines, _try_it


@pytest.mark.parametrize(
    ("family", "endpoint"),
    [
        ("vocos", "/vocode -F audio=@clip.wav"),
        ("hifigan", "/vocode -F audio=@clip.wav"),
        ("vqvae", "/vocode -F audio=@clip.wav"),
        ("tacotron2", "/synthesize -H 'Content-Type: application/json' -d '{\"text\": "),
        ("samplernn", "/generate -H 'Content-Type: application/json' -d '{}'"),
    ],
)
def test_each_champion_s_curl_asks_its_task_s_endpoint_on_its_own_port(family, endpoint):
    line = _try_it(family, 3001)
    assert line.startswith(f"curl -s -X POST http://localhost:3001{endpoint}")


def test_a_run_whose_gate_let_nothing_through_ends_saying_so_with_each_verdict():
    candidates = [
        {
            "family": "vocos",
            "registered_model": "wavefoundry-ljspeech-vocoder",
            "version": "1",
            "verdict": "refused: below the griffin_lim floor: pesq 2.60 < 2.79",
        },
        {
            "family": "hifigan",
            "registered_model": "wavefoundry-ljspeech-vocoder",
            "version": "2",
            "verdict": "refused: below the griffin_lim floor: mrstft 2.71 > 1.75",
        },
    ]
    lines = _champion_lines({"candidates": candidates, "champions": []})
    assert lines[0] == "champion: none (no candidate passed the gate)"
    assert lines[1:] == [
        "  vocos (wavefoundry-ljspeech-vocoder v1): refused: below the griffin_lim floor: "
        "pesq 2.60 < 2.79",
        "  hifigan (wavefoundry-ljspeech-vocoder v2): refused: below the griffin_lim floor: "
        "mrstft 2.71 > 1.75",
    ]
    assert _champion_lines({"candidates": [], "champions": []}) == []  # a run that failed early
