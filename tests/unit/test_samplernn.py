"""SampleRNN: teacher-forced logits equal the step-by-step generator's, the frame tiers step at
their own rates, truncated BPTT carries the state, and the tiny training beats 8 bits/sample
on held-out clips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from wavefoundry.config import load_config
from wavefoundry.data.stored import DataSpec
from wavefoundry.families.samplernn import SampleRNNFamily
from wavefoundry.models.samplernn import SampleRNN, SampleRNNConfig

REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(**overrides) -> SampleRNNConfig:
    fields = dict(dim=24, embedding_dim=8, tbptt_length=32, segment_length=64)
    return SampleRNNConfig(**{**fields, **overrides})


@pytest.mark.parametrize("frame_sizes", [(8, 2), (16, 4, 2), (4,)])
@pytest.mark.parametrize("quantization", ["linear", "mu-law"])
def test_teacher_forced_logits_equal_the_step_by_step_generators(frame_sizes, quantization):
    torch.manual_seed(0)
    config = tiny(frame_sizes=frame_sizes, quantization=quantization, speakers=3, pitches=5)
    model = SampleRNN(config).eval()
    n = 64
    samples = torch.randint(0, config.q_levels, (2, n))
    labels = {"speaker": torch.tensor([0, 2]), "pitch": torch.tensor([4, 1])}
    padded = torch.cat([torch.full((2, config.lookback), config.silence), samples], dim=1)
    with torch.no_grad():
        forced, _ = model(padded, **labels)
    _, stepped = model.generate(n, **labels, return_logits=True, teacher_forcing=samples)
    assert forced.shape == stepped.shape == (2, config.q_levels, n)
    assert (forced - stepped).abs().max().item() < 1e-4


def test_each_frame_tier_steps_only_at_its_own_rate():
    model = SampleRNN(tiny(frame_sizes=(16, 4, 2))).eval()
    calls = [0, 0, 0]
    for k, tier in enumerate(model.frame_level):
        tier.register_forward_hook(lambda *_, k=k: calls.__setitem__(k, calls[k] + 1))
    samples = model.generate(96, generator=torch.Generator().manual_seed(1))
    assert samples.shape == (1, 96)
    assert calls == [96 // 16, 96 // 4, 96 // 2]


def test_carried_states_make_two_halves_equal_one_sequence():
    """What truncated BPTT relies on: the states out of one subsequence, fed to the next, give
    the logits of the whole sequence."""
    torch.manual_seed(0)
    config = tiny()
    model = SampleRNN(config).eval()
    padded = torch.randint(0, config.q_levels, (3, config.lookback + 64))
    with torch.no_grad():
        whole, _ = model(padded)
        first, states = model(padded[:, : config.lookback + 32])
        second, _ = model(padded[:, 32:], states=states)
    assert torch.allclose(torch.cat([first, second], dim=-1), whole, atol=1e-6)


def test_truncated_bptt_cuts_the_gradient_at_subsequence_boundaries():
    """The loss of the second subsequence sends no gradient into the first one's samples'
    frame-tier inputs: the states between them are detached."""
    torch.manual_seed(0)
    config = tiny(tbptt_length=32, segment_length=64)
    family = SampleRNNFamily(config, DataSpec("ljspeech", 16000))
    net = family.build()["samplernn"]
    audio = (torch.rand(2, 64) - 0.5) * 0.5
    batch = family.prepare({"audio": audio}, torch.device("cpu"))
    untruncated = family._nll(net, batch, 64)
    truncated = family._nll(net, batch, 32)
    # Same loss value (the states carry forward), different gradients (they stop there).
    assert torch.allclose(untruncated, truncated, atol=1e-5)
    grads = []
    for loss in (untruncated, truncated):
        net.zero_grad()
        loss.backward()
        grads.append(net.frame_level[0].rnn.weight_hh_l0.grad.clone())
    assert not torch.allclose(grads[0], grads[1])


def test_bad_frame_sizes_are_refused():
    with pytest.raises(ValueError, match="multiple of the next"):
        SampleRNNConfig(frame_sizes=(8, 3))
    with pytest.raises(ValueError, match="tbptt_length"):
        SampleRNNConfig(frame_sizes=(8, 2), tbptt_length=100)


def test_synthesize_makes_the_seconds_asked_at_the_pitch_asked():
    family = SampleRNNFamily(tiny(), DataSpec("nsynth", 16000))
    net = family.build()["samplernn"].eval()
    audio = family.synthesize(net, None, {"seconds": 0.01, "pitch": 64, "seed": 3})
    again = family.synthesize(net, None, {"seconds": 0.01, "pitch": 64, "seed": 3})
    assert audio.shape == (160,) and torch.equal(audio, again)
    assert audio.abs().max() <= 1.0
    with pytest.raises(ValueError, match="MIDI range"):
        family.synthesize(net, None, {"seconds": 0.01, "pitch": 200})


@pytest.mark.slow
def test_tiny_training_beats_8_bits_per_sample_on_held_out_clips(
    stored_samples: Path, tmp_path: Path
) -> None:
    """params.yaml's tiny SampleRNN, trained through the one trainer on the VCTK sample corpus,
    scores each held-out (test split) clip below 8 bits per sample, the cost of a uniform
    guess over 256 classes; untrained it does not."""
    from wavefoundry.evaluation.scorer import held_out_set
    from wavefoundry.families.io import load_model
    from wavefoundry.training.trainer import train

    cfg = load_config(
        REPO / "params.yaml",
        overrides=[
            f"paths.data={stored_samples}",
            f"paths.runs={tmp_path / 'runs'}",
            f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
            f"tracking.artifact_location={tmp_path / 'mlartifacts'}",
            "training.validate_every=1000",
        ],
    )
    result = train(cfg, "samplernn", "vctk")
    family, net = load_model(result.model_dir)
    untrained = family.build()["samplernn"].eval()
    held_out = held_out_set(cfg, "vctk")
    for clip in held_out.clips:
        audio = torch.from_numpy(clip.audio)
        conditions = {"speaker": clip.conditions.get("speaker")}
        if conditions["speaker"] not in family.data.speakers:
            conditions = {}
        bits = family.clip_metrics(net, audio, conditions)["bits_per_sample"]
        before = family.clip_metrics(untrained, audio, conditions)["bits_per_sample"]
        assert bits < 8.0, (clip.clip_id, bits)
        assert bits < before, (clip.clip_id, bits, before)
