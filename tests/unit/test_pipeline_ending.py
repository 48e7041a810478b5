"""What `pipeline run` prints last: its champions (or why there is none), and for each served
champion a curl that fits its task's endpoint."""

import pytest

from wavefoundry.cli.pipeline import _champion_lines, _example_clip, _try_it


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


def test_a_vocoder_s_curl_sends_a_recording_that_exists(tmp_path, monkeypatch):
    """The demo's vocoder curl must work as printed: it sends the first clip of the run's
    local source folder, named from the working folder, not a file the user does not have."""
    corpus = tmp_path / "data" / "sample" / "LJSpeech-1.1"
    (corpus / "wavs").mkdir(parents=True)
    (corpus / "._LJ001-0000.wav").write_bytes(b"")  # macOS junk is no recording
    for name in ("LJ001-0002.wav", "LJ001-0001.wav"):
        (corpus / "wavs" / name).write_bytes(b"RIFF")
    (corpus / "metadata.csv").write_text("")
    monkeypatch.chdir(tmp_path)

    clip = _example_clip(["s3://bucket/LJSpeech-1.1.tar.bz2", str(corpus)])
    assert clip == "data/sample/LJSpeech-1.1/wavs/LJ001-0001.wav"
    assert (tmp_path / clip).is_file()
    assert _try_it("vocos", 3000, clip).endswith(f"-F audio=@{clip} -o resynthesized.wav")
    # Only remote sources or archives: the curl names a clip of the user's own.
    assert _example_clip(["https://example.org/LJSpeech-1.1.tar.bz2"]) == "clip.wav"


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
