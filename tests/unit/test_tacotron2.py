"""Tacotron 2: the paper's sizes, teacher forcing vs free running, the stop token, masking
(a padded batch is each sentence alone), the losses, and the family's batches."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from wavefoundry.data.stored import DataSpec
from wavefoundry.evaluation.metrics import (
    attention_diagonality,
    attention_focus_rate,
    attention_is_monotonic,
)
from wavefoundry.families.tacotron2 import Tacotron2Family
from wavefoundry.models.tacotron2 import (
    Tacotron2,
    Tacotron2Config,
    forward_sum_loss,
    guided_attention_loss,
    lengths_to_mask,
    tacotron2_loss,
)
from wavefoundry.text import TextError

TINY = Tacotron2Config(
    symbols_embedding_dim=16,
    encoder_embedding_dim=16,
    attention_rnn_dim=32,
    decoder_rnn_dim=32,
    prenet_dim=16,
    attention_dim=8,
    attention_location_n_filters=4,
    postnet_embedding_dim=16,
    n_mels=20,
    n_frames_per_step=2,
    max_decoder_steps=40,
)


def test_config_defaults_are_nvidias_and_the_paper_sizes_give_28m_parameters() -> None:
    c = Tacotron2Config()
    assert (c.n_mels, c.hop_length, c.n_fft, c.f_max) == (80, 256, 1024, 8000.0)
    assert (c.encoder_embedding_dim, c.attention_rnn_dim, c.decoder_rnn_dim) == (512, 1024, 1024)
    assert (c.attention_dim, c.attention_location_n_filters) == (128, 32)
    assert (c.prenet_dim, c.prenet_dropout, c.gate_threshold) == (256, 0.5, 0.5)
    assert (c.max_decoder_steps, c.learning_rate, c.weight_decay) == (1000, 1e-3, 1e-6)
    parameters = sum(p.numel() for p in Tacotron2(c).parameters())
    assert 27.5e6 < parameters < 28.5e6, parameters


def _batch(config: Tacotron2Config, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    text_lengths = torch.tensor([11, 7, 4])
    mel_lengths = torch.tensor([16, 10, 5])  # 5: not a multiple of r
    text = torch.randint(2, config.n_symbols, (3, 11), generator=generator)
    mels = torch.randn(3, config.n_mels, 16, generator=generator)
    for i in range(3):
        text[i, text_lengths[i] :] = 0
        mels[i, :, mel_lengths[i] :] = 0
    return text, text_lengths, mels, mel_lengths


def test_teacher_forced_and_free_running_shapes_agree() -> None:
    torch.manual_seed(0)
    model = Tacotron2(TINY).eval()
    text, text_lengths, mels, mel_lengths = _batch(TINY)
    forced = model(text, text_lengths, mels, mel_lengths)
    r = TINY.n_frames_per_step
    assert forced.mel.shape == forced.mel_postnet.shape == mels.shape
    assert forced.gate.shape == (3, 16 // r)
    assert forced.alignments.shape == (3, 16 // r, 11)
    free = model.infer(text[:1])
    steps = free.alignments.shape[1]
    assert free.mel_postnet.shape == (1, TINY.n_mels, steps * r)
    assert free.gate.shape == (1, steps)
    assert free.alignments.shape == (1, steps, 11)
    # Attention is a distribution over the real characters at every step.
    assert torch.allclose(forced.alignments.sum(-1), torch.ones(3, 16 // r), atol=1e-5)
    assert (forced.alignments[1, :, 7:] == 0).all()


def test_free_running_stops_when_the_gate_fires() -> None:
    torch.manual_seed(0)
    model = Tacotron2(TINY).eval()
    text = torch.randint(2, TINY.n_symbols, (1, 9))
    with torch.no_grad():
        model.decoder.gate_layer.bias.fill_(-50.0)  # the gate never fires: the step limit
    never = model.infer(text)
    assert int(never.steps[0]) == TINY.max_decoder_steps == never.alignments.shape[1]
    with torch.no_grad():
        model.decoder.gate_layer.weight.zero_()
        model.decoder.gate_layer.bias.fill_(50.0)  # fires at the first step
    first = model.infer(text)
    assert int(first.steps[0]) == 1
    assert first.mel_postnet.shape[-1] == TINY.n_frames_per_step
    with torch.no_grad():
        model.decoder.gate_layer.bias.fill_(0.1)  # sigmoid(0.1) > 0.5 = gate_threshold
    assert int(model.infer(text).steps[0]) == 1
    with torch.no_grad():
        model.decoder.gate_layer.bias.fill_(-0.1)
    assert int(model.infer(text).steps[0]) == TINY.max_decoder_steps


@pytest.mark.parametrize("n_speakers", [0, 3])
def test_a_padded_batch_gives_each_sentence_what_it_gets_alone(n_speakers: int) -> None:
    """Prenet dropout is the model's only randomness at eval; off here so the two runs can be
    compared (its masks are drawn per batch shape)."""
    config = dataclasses.replace(TINY, prenet_dropout=0.0, n_speakers=n_speakers)
    torch.manual_seed(0)
    model = Tacotron2(config).eval()
    text, text_lengths, mels, mel_lengths = _batch(config)
    speaker = torch.tensor([2, 0, 1]) if n_speakers else None
    batch = model(text, text_lengths, mels, mel_lengths, speaker)
    r = config.n_frames_per_step
    for i in range(3):
        n, frames = int(text_lengths[i]), int(mel_lengths[i])
        padded_frames = -(-frames // r) * r
        alone = model(
            text[i : i + 1, :n],
            text_lengths[i : i + 1],
            mels[i : i + 1, :, :padded_frames],
            mel_lengths[i : i + 1],
            None if speaker is None else speaker[i : i + 1],
        )
        for name in ("mel", "mel_postnet"):
            a, b = getattr(alone, name)[0, :, :frames], getattr(batch, name)[i, :, :frames]
            assert (a - b).abs().max() < 1e-5, (name, i)
        steps = padded_frames // r
        assert (alone.gate[0] - batch.gate[i, :steps]).abs().max() < 1e-5
        assert (alone.alignments[0] - batch.alignments[i, :steps, :n]).abs().max() < 1e-5
        free_alone = model.infer(text[i : i + 1, :n], speaker=alone_speaker(speaker, i))
        free_batch = model.infer(text, text_lengths, speaker)
        steps = int(free_alone.steps[0])
        assert int(free_batch.steps[i]) == steps
        assert (
            free_alone.mel_postnet[0] - free_batch.mel_postnet[i, :, : steps * r]
        ).abs().max() < 1e-5


def alone_speaker(speaker: torch.Tensor | None, i: int) -> torch.Tensor | None:
    return None if speaker is None else speaker[i : i + 1]


def test_the_speaker_changes_the_voice() -> None:
    config = dataclasses.replace(TINY, n_speakers=3)
    torch.manual_seed(0)
    model = Tacotron2(config).eval()
    text, text_lengths, mels, mel_lengths = _batch(config)
    a = model(text, text_lengths, mels, mel_lengths, torch.tensor([0, 0, 0])).mel
    b = model(text, text_lengths, mels, mel_lengths, torch.tensor([1, 1, 1])).mel
    assert (a - b).abs().max() > 1e-3


def test_prenet_dropout_stays_on_at_inference_and_a_seed_repeats_it() -> None:
    torch.manual_seed(0)
    model = Tacotron2(dataclasses.replace(TINY, max_decoder_steps=8)).eval()
    with torch.no_grad():
        model.decoder.gate_layer.bias.fill_(-50.0)
    text = torch.randint(2, TINY.n_symbols, (1, 6))

    def run(seed: int) -> torch.Tensor:
        return model.infer(text, generator=torch.Generator().manual_seed(seed)).mel_postnet

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))


def test_attention_starts_on_the_first_character() -> None:
    torch.manual_seed(0)
    model = Tacotron2(TINY).eval()
    memory = torch.randn(2, 7, TINY.encoder_embedding_dim)
    state = model.decoder.initial_state(memory)
    expected = torch.zeros(2, 7)
    expected[:, 0] = 1.0
    assert torch.equal(state["attention_weights"], expected)
    assert torch.equal(state["attention_weights_cum"], expected)


def test_the_attention_constraint_keeps_free_running_attention_in_its_window() -> None:
    """Free running with the constraint, each step's attention lies within 1 character
    before and 3 after the last step's most attended one; teacher forcing is unconstrained."""
    config = dataclasses.replace(TINY, max_decoder_steps=30)
    torch.manual_seed(0)
    free = Tacotron2(config).eval()
    constrained = Tacotron2(dataclasses.replace(config, use_attention_constraint=True)).eval()
    constrained.load_state_dict(free.state_dict())
    with torch.no_grad():
        for model in (free, constrained):
            model.decoder.gate_layer.bias.fill_(-50.0)  # speak to the step limit
    text = torch.randint(2, TINY.n_symbols, (1, 11), generator=torch.Generator().manual_seed(1))

    def far_weight(alignment: torch.Tensor) -> float:
        """The most weight any step puts outside the window of the step before it."""
        last, worst = 0, 0.0
        for weights in alignment:
            outside = torch.ones_like(weights, dtype=torch.bool)
            outside[max(0, last - 1) : last + 4] = False
            worst = max(worst, float(weights[outside].sum()))
            last = int(weights.argmax())
        return worst

    generator = torch.Generator().manual_seed(0)
    held = constrained.infer(text, generator=generator).alignments[0]
    loose = free.infer(text, generator=torch.Generator().manual_seed(0)).alignments[0]
    assert far_weight(held) == 0.0
    assert far_weight(loose) > 0.1  # an untrained model's attention wanders
    assert torch.allclose(held.sum(-1), torch.ones(len(held)))
    _, text_lengths, mels, mel_lengths = _batch(config)
    batch = (text.expand(3, -1), torch.tensor([11, 11, 11]), mels, mel_lengths)
    torch.manual_seed(2)  # the prenet's dropout masks, the same for both
    forced = free(*batch).alignments
    torch.manual_seed(2)
    assert torch.equal(forced, constrained(*batch).alignments)


def test_sharpening_squares_the_attention_weights_at_beta_2() -> None:
    """softmax(2 e) is softmax(e) squared and renormalised; padding still gets no weight."""
    torch.manual_seed(0)
    plain = Tacotron2(TINY).decoder.attention_layer
    sharp = Tacotron2(dataclasses.replace(TINY, attention_sharpening=2.0)).decoder.attention_layer
    sharp.load_state_dict(plain.state_dict())
    query = torch.randn(2, TINY.attention_rnn_dim)
    memory = torch.randn(2, 9, TINY.encoder_embedding_dim)
    weights_cat = torch.rand(2, 2, 9)
    mask = lengths_to_mask(torch.tensor([9, 6]), 9)
    _, a = plain(query, memory, plain.memory_layer(memory), weights_cat, mask)
    _, b = sharp(query, memory, sharp.memory_layer(memory), weights_cat, mask)
    assert torch.allclose(b, a**2 / (a**2).sum(-1, keepdim=True), atol=1e-6)
    assert (b[1, 6:] == 0).all()
    assert (b.max(-1).values > a.max(-1).values).all()


def test_standardised_frames_are_log_mel_outside_the_decoder() -> None:
    """With mel_mean/mel_std the decoder works on standardised frames: the same weights give
    the log-mel of the plain model shifted and scaled, teacher-forced and free running."""
    plain_config = dataclasses.replace(TINY, prenet_dropout=0.0)
    scaled_config = dataclasses.replace(plain_config, mel_mean=-4.0, mel_std=2.0)
    torch.manual_seed(0)
    plain = Tacotron2(plain_config).eval()
    scaled = Tacotron2(scaled_config).eval()
    scaled.load_state_dict(plain.state_dict())
    text, text_lengths, mels, mel_lengths = _batch(plain_config)
    expected = plain(text, text_lengths, mels, mel_lengths).mel
    got = scaled(text, text_lengths, mels * 2.0 - 4.0, mel_lengths).mel
    mask = lengths_to_mask(mel_lengths, mels.shape[-1]).unsqueeze(1)
    assert torch.allclose(got, (expected * 2.0 - 4.0) * mask, atol=1e-5)
    assert torch.allclose(
        scaled.infer(text[:1]).mel, plain.infer(text[:1]).mel * 2.0 - 4.0, atol=1e-5
    )


def test_losses_fall_on_one_batch_and_the_guide_rewards_a_diagonal() -> None:
    torch.manual_seed(0)
    model = Tacotron2(TINY)
    text, text_lengths, mels, mel_lengths = _batch(TINY)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = []
    for _ in range(30):
        losses = tacotron2_loss(model(text, text_lengths, mels, mel_lengths), mels, mel_lengths,
                                text_lengths, TINY)  # fmt: skip
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        history.append({k: v.item() for k, v in losses.items()})
    assert history[-1]["loss"] < 0.9 * history[0]["loss"], history
    assert set(history[0]) == {
        "loss", "loss_mel", "loss_postnet", "loss_gate", "loss_guided_attention",
        "loss_forward_sum",
    }  # fmt: skip
    diagonal = torch.eye(8)[None]
    uniform = torch.full((1, 8, 8), 1 / 8)
    lengths = torch.tensor([8])
    assert guided_attention_loss(diagonal, lengths, lengths, 0.2) < 0.01
    assert guided_attention_loss(uniform, lengths, lengths, 0.2) > 0.3


def _walk(steps_per_symbol: list[int], n_max: int, t_max: int, sharpness: float = 1.0):
    """(t_max, n_max) attention that dwells steps_per_symbol[n] steps on symbol n; with
    sharpness < 1 the rest of each step's weight goes to its neighbours."""
    a = torch.zeros(t_max, n_max)
    t = 0
    for n, dwell in enumerate(steps_per_symbol):
        for _ in range(dwell):
            a[t, n] = sharpness
            for m in (n - 1, n + 1):
                if 0 <= m < len(steps_per_symbol):
                    a[t, m] += (1 - sharpness) / 2
            a[t] /= a[t].sum()
            t += 1
    return a


def test_the_forward_sum_loss_rewards_a_sharp_walk_at_any_pace_and_ignores_padding() -> None:
    """Badlani et al. 2021: ~0 for any sharp monotonic walk through every symbol (uneven
    pace included), large when blurred, when a symbol is skipped or the walk goes back; a
    padded batch gives each sentence's loss alone."""
    n = torch.tensor([6])

    def loss(a: torch.Tensor, steps: int) -> float:
        return forward_sum_loss(a[None], n, torch.tensor([steps])).item()

    even = loss(_walk([2] * 6, 6, 12), 12)
    uneven = loss(_walk([1, 4, 1, 3, 2, 1], 6, 12), 12)
    blurred = loss(_walk([2] * 6, 6, 12, sharpness=0.4), 12)
    skipping = _walk([2] * 6, 6, 12)
    skipping[4:6] = 0.0
    skipping[4:6, 3] = 1.0  # symbol 2 never attended
    backwards = _walk([2] * 6, 6, 12).flip(0)
    assert even < 0.6 and uneven < 0.6
    assert blurred > even + 0.5
    assert loss(skipping, 12) > even + 2 and loss(backwards, 12) > even + 10
    # A batch: the second sentence padded to the first's symbols and steps.
    second = torch.zeros(12, 6)
    second[:8, :4] = _walk([2] * 4, 4, 8)
    second[8:, 0] = 1.0  # whatever sits on padded steps
    batch = torch.stack((_walk([2] * 6, 6, 12), second))
    both = forward_sum_loss(batch, torch.tensor([6, 4]), torch.tensor([12, 8])).item()
    alone = forward_sum_loss(_walk([2] * 4, 4, 8)[None], torch.tensor([4]), torch.tensor([8]))
    assert both == pytest.approx((even + alone.item()) / 2, rel=1e-5)


def test_the_masked_stop_loss_counts_only_real_steps_and_weights_the_stop() -> None:
    """use_masking: the gate's logits on padded steps change nothing; bce_pos_weight scales
    the stop step's term alone. Unmasked (NVIDIA's), padded steps count as stop targets."""
    torch.manual_seed(0)
    model = Tacotron2(TINY).eval()
    text, text_lengths, mels, mel_lengths = _batch(TINY)
    out = model(text, text_lengths, mels, mel_lengths)  # gate (3, 8): real steps 8, 5, 3
    masked = dataclasses.replace(TINY, use_masking=True)

    def gate_loss(config: Tacotron2Config, gate: torch.Tensor) -> float:
        changed = dataclasses.replace(out, gate=gate)
        return tacotron2_loss(changed, mels, mel_lengths, text_lengths, config)["loss_gate"].item()

    padding = ~lengths_to_mask(torch.tensor([8, 5, 3]), 8)
    loud_padding = out.gate.masked_fill(padding, -20.0)  # "never stop" on the padding
    assert gate_loss(masked, loud_padding) == pytest.approx(gate_loss(masked, out.gate))
    assert gate_loss(TINY, loud_padding) > gate_loss(TINY, out.gate) + 1.0
    # Every step's logit 0: each term is ln 2, the stop steps' (3 of 16 real) times the weight.
    zeros = torch.zeros_like(out.gate)
    weighted = dataclasses.replace(masked, bce_pos_weight=5.0)
    assert gate_loss(masked, zeros) == pytest.approx(math.log(2))
    assert gate_loss(weighted, zeros) == pytest.approx(math.log(2) * (13 + 3 * 5) / 16)


def test_alignment_scores() -> None:
    diagonal = torch.eye(10)
    assert attention_focus_rate(diagonal) == 1.0
    assert attention_diagonality(diagonal) > 0.9
    assert attention_is_monotonic(diagonal)
    uniform = torch.full((10, 10), 0.1)
    assert attention_focus_rate(uniform) == pytest.approx(0.1)
    backwards = torch.eye(10).flip(0)
    assert not attention_is_monotonic(backwards)
    stuck = torch.zeros(10, 10)
    stuck[:, 2] = 1.0
    assert not attention_is_monotonic(stuck)  # never reaches the end of the text


def test_the_family_batches_encode_transcripts_with_the_models_own_table() -> None:
    family = Tacotron2Family(TINY, DataSpec("ljspeech", 22050))
    audio = torch.zeros(2, 256 * 9)
    batch = {
        "audio": audio,
        "length": torch.tensor([256 * 9, 256 * 5]),
        "clip_id": ["LJ001", "LJ002"],
        "text": ["Mr. Fry.", "In 1862."],
        "normalized_text": ["Mister Fry.", "In eighteen sixty-two."],
    }
    prepared = family.prepare(batch, torch.device("cpu"))
    assert prepared["text_lengths"].tolist() == [
        len("mister fry.") + 1,
        len("in eighteen sixty-two.") + 1,
    ]
    assert prepared["mel"].shape == (2, TINY.n_mels, 10)  # 9 frames, rounded up to r = 2
    assert prepared["mel_lengths"].tolist() == [9, 5]
    assert family.symbols.decode(prepared["text"][1].tolist()) == "in eighteen sixty-two."
    bad = {**batch, "normalized_text": ["Mister Fry.", "?!"]}
    with pytest.raises(Exception, match="clip LJ002: its transcript cannot be spoken"):
        family.prepare(bad, torch.device("cpu"))


def test_the_family_speaks_text_and_refuses_what_it_cannot() -> None:
    torch.manual_seed(0)
    family = Tacotron2Family(TINY, DataSpec("vctk", 22050, ("p225", "p226")))
    assert family.config.n_speakers == 2
    net = family.build()["tacotron2"].eval()
    a = family.synthesize(net, None, {"text": "hello there", "speaker": "p226", "seed": 1})
    b = family.synthesize(net, None, {"text": "hello there", "speaker": "p226", "seed": 1})
    assert a.dim() == 1 and torch.equal(a, b)
    assert a.abs().max() <= 1.0
    with pytest.raises(ValueError, match="unknown speaker 'p999'"):
        family.synthesize(net, None, {"text": "hello", "speaker": "p999"})
    with pytest.raises(TextError):
        family.synthesize(net, None, {"text": "..."})
