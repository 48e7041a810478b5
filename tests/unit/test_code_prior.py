"""The code prior: the key/value cache changes nothing but the cost, the context window moves
on past block_size, the VQ-VAE stays frozen, and a tiny training beats the codes' unigram
entropy on held-out audio."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from wavefoundry.data.stored import DataSpec
from wavefoundry.families.code_prior import CodePriorFamily
from wavefoundry.models.code_prior import CodePrior, CodePriorConfig
from wavefoundry.models.vqvae import VQVAE, VQVAEConfig
from wavefoundry.training.step import Stepper

pytestmark = pytest.mark.usefixtures("one_torch_thread")


CODEC = VQVAEConfig(
    downsamplings=2,
    encoder_channels=16,
    codebook_size=16,
    code_dim=8,
    speakers=3,
    speaker_embedding_dim=4,
    decoder_channels=8,
    decoder_layers=2,
    dilation_cycle=2,
    segment_length=256,
)


def tiny(**overrides) -> CodePriorConfig:
    fields = dict(codec=CODEC, n_layer=2, n_head=2, n_embd=32, block_size=24, speakers=3)
    return CodePriorConfig(**{**fields, **overrides})


@pytest.mark.parametrize("n_codes", [10, 23, 80])  # inside one block, a full block, past it
def test_cached_generation_equals_uncached_token_for_token_when_greedy(n_codes):
    torch.manual_seed(0)
    model = CodePrior(tiny()).eval()
    labels = torch.tensor([0, 2, 1])
    cached = model.generate(n_codes, labels, temperature=0)
    uncached = model.generate(n_codes, labels, temperature=0, use_cache=False)
    assert cached.shape == (3, n_codes)
    assert torch.equal(cached, uncached)
    assert len(set(cached.flatten().tolist())) > 1  # not one token over and over


def test_cached_logits_equal_the_whole_sequences():
    torch.manual_seed(0)
    model = CodePrior(tiny()).eval()
    tokens = torch.cat(
        [model.label_tokens(torch.tensor([1, 0]))[:, None], torch.randint(0, 16, (2, 20))], 1
    )
    with torch.no_grad():
        whole, _ = model(tokens)
        first, cache = model(tokens[:, :7])
        steps = [first]
        for i in range(7, tokens.shape[1]):
            logits, cache = model(tokens[:, i : i + 1], cache)
            steps.append(logits)
    assert (torch.cat(steps, dim=1) - whole).abs().max().item() < 1e-5


def test_the_context_window_keeps_the_label_and_moves_by_half_a_block():
    model = CodePrior(tiny(block_size=24))
    assert [model.window_start(n) for n in (0, 23, 24, 34, 35, 45, 46)] == [
        0,
        0,
        11,
        11,
        22,
        22,
        33,
    ]
    with pytest.raises(ValueError, match="context"):
        model(torch.zeros(1, 25, dtype=torch.long))


def test_labels_outside_the_vocabulary_are_refused():
    model = CodePrior(tiny())
    with pytest.raises(ValueError, match="labels must be 0-2"):
        model.generate(4, torch.tensor([3]))


def test_the_vqvae_is_frozen_and_stays_in_eval_mode():
    model = CodePrior(tiny())
    model.train()
    assert not model.codec.training
    assert not any(p.requires_grad for p in model.codec.parameters())
    family = CodePriorFamily(tiny(), DataSpec("vctk", 16000, ("p1", "p2", "p3")))
    nets = family.build()
    optimized = {
        id(p) for group in family.optimizers(nets)["prior"].param_groups for p in group["params"]
    }
    assert optimized.isdisjoint(id(p) for p in nets["prior"].codec.parameters())


def test_synthesize_decodes_the_seconds_asked_with_the_speaker_asked():
    family = CodePriorFamily(tiny(), DataSpec("vctk", 16000, ("p1", "p2", "p3")))
    net = family.build()["prior"].eval()
    audio = family.synthesize(net, None, {"seconds": 0.01, "speaker": "p2", "seed": 1})
    again = family.synthesize(net, None, {"seconds": 0.01, "speaker": "p2", "seed": 1})
    assert audio.shape == (160,) and torch.equal(audio, again)
    with pytest.raises(ValueError, match="unknown speaker"):
        family.synthesize(net, None, {"seconds": 0.01, "speaker": "p9"})


def _tones(count: int, length: int, seed: int) -> torch.Tensor:
    """Audio with structure a prior can learn: tones with a slow random pitch and level."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(length) / 16000
    freq = 200 + 600 * torch.rand(count, 1, generator=generator)
    level = 0.2 + 0.5 * torch.rand(count, 1, generator=generator)
    return level * torch.sin(2 * math.pi * freq * t)


def test_tiny_training_beats_the_unigram_entropy_of_held_out_codes():
    """A VQ-VAE trained briefly on tones gives the codes; the prior, trained through the
    family's own train_step, predicts held-out codes with a cross-entropy below their own
    unigram entropy (the best any model that ignores context can do)."""
    torch.manual_seed(0)
    codec = VQVAE(dataclasses.replace(CODEC, speakers=1))  # LJ Speech: one speaker
    optimizer = torch.optim.Adam(codec.parameters(), lr=3e-3)
    for step in range(30):
        audio = _tones(8, 256, step)
        output = codec(audio)
        loss = (output.reconstruction - audio).abs().mean() + output.commitment_loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    family = CodePriorFamily(tiny(block_size=33), DataSpec("ljspeech", 16000))
    family.codec_state = codec.state_dict()
    nets = family.build()
    stepper = Stepper(family.optimizers(nets), torch.device("cpu"))
    for step in range(60):
        nets["prior"].train()
        batch = family.prepare({"audio": _tones(8, family.segment_length, 1000 + step)}, "cpu")
        family.train_step(nets, batch, stepper)
        stepper.finish()
    nets["prior"].eval()
    held_out = _tones(16, family.segment_length, 99)
    codes = nets["prior"].encode(held_out)
    counts = torch.bincount(codes.flatten(), minlength=CODEC.codebook_size).float()
    p = counts[counts > 0] / counts.sum()
    unigram_bits = float(-(p * p.log2()).sum())
    cross_entropy_bits = family.evaluate(nets, family.prepare({"audio": held_out}, "cpu"))
    assert unigram_bits > 1.0  # the codebook is in use: there is something to predict
    assert cross_entropy_bits["bits_per_code"] < unigram_bits, (cross_entropy_bits, unigram_bits)
