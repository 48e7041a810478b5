"""What `pipeline run` prints for each served champion: a curl that fits its task's endpoint."""

import pytest

from wavefoundry.cli.pipeline import _try_it


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
