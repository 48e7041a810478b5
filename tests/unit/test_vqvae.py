import dataclasses
import math

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from wavefoundry.data.stored import DataSpec
from wavefoundry.evaluation.metrics import snr_db
from wavefoundry.families.vqvae import VQVAEFamily
from wavefoundry.models.losses import multi_resolution_stft_loss
from wavefoundry.models.vqvae import (
    VQVAE,
    VectorQuantizerEMA,
    VQVAEConfig,
    vqvae_loss,
)
from wavefoundry.training.step import Stepper

# Smaller than params.yaml's tiny config so that the whole file stays fast.
TINY = VQVAEConfig(
    downsamplings=3,
    encoder_channels=16,
    codebook_size=32,
    code_dim=8,
    ema_decay=0.9,
    speakers=3,
    speaker_embedding_dim=8,
    decoder_channels=16,
    decoder_layers=4,
    dilation_cycle=4,
    stft_loss_weight=0.05,
    learning_rate=3e-3,
    segment_length=2048,
)


def speech_like(items: int, length: int, sample_rate: int = 16000, seed: int = 0) -> torch.Tensor:
    """Vowel-like sounds: harmonics of a gliding f0 (90-250 Hz) falling off as 1/k^2 like a
    glottal source, boosted near two formants, under a syllable-rate envelope that drops to
    near silence. (items, length) in [-1, 1]."""
    generator = torch.Generator().manual_seed(seed)

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(items, 1, generator=generator)

    t = torch.arange(length) / sample_rate
    f0 = uniform(90, 250) * (1 + 0.08 * torch.sin(2 * math.pi * uniform(2, 5) * t))
    phase = 2 * math.pi * torch.cumsum(f0, dim=1) / sample_rate
    formant_1, formant_2 = uniform(300, 800), uniform(900, 2500)
    audio = torch.zeros(items, length)
    for harmonic in range(1, 25):
        frequency = harmonic * f0
        resonance = (
            1
            + 3 * torch.exp(-(((frequency - formant_1) / 150) ** 2))
            + 2 * torch.exp(-(((frequency - formant_2) / 250) ** 2))
        )
        audio += resonance / harmonic**2 * torch.sin(harmonic * phase)
    syllables = torch.sin(2 * math.pi * uniform(3, 6) * t + uniform(0, 2 * math.pi))
    audio = audio * syllables.clamp_min(0.02)
    return 0.6 * audio / audio.abs().amax(dim=1, keepdim=True)


@pytest.fixture
def one_thread():
    """Convolutions this small run faster on one thread than on two that a busy machine keeps
    descheduling."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- multi-resolution STFT loss --------------------------------------------------------------


def test_stft_loss_is_zero_for_identical_audio_and_grows_with_the_difference():
    reference = speech_like(2, 4096)
    sc, log_magnitude = multi_resolution_stft_loss(reference, reference)
    assert sc.item() == pytest.approx(0.0, abs=1e-6)
    assert log_magnitude.item() == pytest.approx(0.0, abs=1e-6)

    noise = torch.randn(2, 4096, generator=torch.Generator().manual_seed(1))
    near = multi_resolution_stft_loss(reference + 0.01 * noise, reference)
    far = multi_resolution_stft_loss(reference + 0.1 * noise, reference)
    assert 0 < near[0] < far[0] and 0 < near[1] < far[1]


def test_stft_loss_has_gradients_and_accepts_clips_shorter_than_the_fft():
    generated = (0.01 * torch.randn(1, 300)).requires_grad_()
    sc, log_magnitude = multi_resolution_stft_loss(generated, speech_like(1, 300))
    (sc + log_magnitude).backward()
    assert torch.isfinite(generated.grad).all() and generated.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="B, T"):
        multi_resolution_stft_loss(torch.zeros(1, 300), torch.zeros(1, 301))


# --- model ------------------------------------------------------------------------------------


def test_forward_shapes_for_any_length():
    torch.manual_seed(0)
    model = VQVAE(TINY)
    audio = speech_like(2, 1001)
    output = model(audio, torch.tensor([0, 2]))
    assert output.reconstruction.shape == (2, 1001)
    assert output.codes.shape == (2, math.ceil(1001 / 8)) and output.codes.dtype == torch.long
    assert output.reconstruction.abs().max() < 1
    assert 1 <= output.perplexity.item() <= TINY.codebook_size
    assert 0 < output.usage.item() <= 1
    assert output.commitment_loss.item() >= 0


def test_config_rejects_a_segment_that_is_not_a_whole_number_of_codes():
    with pytest.raises(ValueError, match="multiple of"):
        VQVAEConfig(downsamplings=6, segment_length=1000)


def test_straight_through_gradients_reach_the_encoder():
    torch.manual_seed(0)
    model = VQVAE(TINY)
    audio = speech_like(2, 2048)
    output = model(audio)
    # The waveform loss alone: the encoder's only path to it is through the quantiser.
    F.l1_loss(output.reconstruction, audio).backward()
    for parameter in model.encoder.parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0


def test_every_parameter_gets_a_gradient_as_ddp_requires():
    torch.manual_seed(0)
    model = VQVAE(TINY)
    audio = speech_like(2, 2048)
    vqvae_loss(model(audio, torch.tensor([0, 1])), audio, TINY.stft_loss_weight).total.backward()
    unused = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not unused


def test_ema_moves_the_codebook_and_evaluation_leaves_it_alone():
    torch.manual_seed(0)
    quantizer = VectorQuantizerEMA(16, 4, 0.25, decay=0.9, dead_code_threshold=1.0)
    data = torch.randn(8, 4, 64)
    quantizer(data)  # first training batch: the codebook starts on encoder outputs
    before = quantizer.codebook.clone()
    for _ in range(30):
        quantizer(data + 3.0)
    assert (quantizer.codebook.mean() - before.mean()).item() > 2.0

    moved = quantizer.codebook.clone()
    with torch.no_grad():
        quantizer(data)
    quantizer.eval()
    quantizer(data)
    assert torch.equal(quantizer.codebook, moved)


def test_dead_codes_are_restarted_on_encoder_outputs_of_the_batch():
    torch.manual_seed(0)
    quantizer = VectorQuantizerEMA(16, 4, 0.25, decay=0.9, dead_code_threshold=1.0)
    quantizer(torch.randn(4, 4, 32))
    with torch.no_grad():  # five codes far from the data, their usage already below threshold
        quantizer.codebook[:5] = 100.0
        quantizer.cluster_size[:5] = 0.5
        quantizer.code_sum[:5] = 50.0
    data = torch.randn(4, 4, 32)
    quantizer(data)
    outputs = data.transpose(1, 2).reshape(-1, 4)
    for code in quantizer.codebook[:5]:
        assert (outputs - code).abs().sum(1).min() < 1e-6  # sits exactly on an encoder output
    _, _, _, _, usage = quantizer(torch.randn(4, 4, 32))
    assert usage.item() > 0.5


def test_encode_decode_and_voice_conversion():
    torch.manual_seed(0)
    model = VQVAE(TINY).eval()
    audio = speech_like(1, 1500)
    codes = model.encode(audio)
    assert codes.shape == (1, math.ceil(1500 / 8))
    assert codes.min() >= 0 and codes.max() < TINY.codebook_size
    decoded = model.decode(codes, torch.tensor([1]))
    assert decoded.shape == (1, codes.shape[1] * 8) and decoded.abs().max() <= 1

    as_speaker_1 = model.convert(audio, torch.tensor([1]))
    as_speaker_2 = model.convert(audio, torch.tensor([2]))
    assert as_speaker_1.shape == audio.shape
    assert torch.allclose(as_speaker_1, decoded[:, :1500])
    assert (as_speaker_1 - as_speaker_2).abs().max() > 1e-4


def test_short_training_uses_most_of_the_codebook_and_improves_snr(one_thread):
    """60 steps of batch 4 on speech-like tones. Usage is counted over one held-out batch of
    8 segments (1024 vectors for 32 codes): more than half of the codebook is chosen, and the
    held-out SNR beats the first training step's by more than 1 dB."""
    torch.manual_seed(0)
    config = dataclasses.replace(TINY, speakers=1)
    model = VQVAE(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    held_out = speech_like(8, config.segment_length, seed=1000)
    first_snr = None
    for step in range(60):
        audio = speech_like(4, config.segment_length, seed=step)
        output = model(audio)
        loss = vqvae_loss(output, audio, config.stft_loss_weight)
        optimizer.zero_grad()
        loss.total.backward()
        optimizer.step()
        if first_snr is None:
            first_snr = snr_db(audio, output.reconstruction)
    model.eval()
    with torch.no_grad():
        output = model(held_out)
    assert output.usage.item() > 0.5
    assert snr_db(held_out, output.reconstruction) > first_snr + 1.0


# --- training family --------------------------------------------------------------------------


def family_batch(speakers: list[str], length: int) -> dict:
    """What `collate_segments` makes of VCTK segments."""
    return {
        "audio": speech_like(len(speakers), length),
        "clip_id": [f"{s}_{i:03d}" for i, s in enumerate(speakers)],
        "speaker": speakers,
        "text": ["please call stella"] * len(speakers),
        "age": torch.full((len(speakers),), 23),
    }


def test_family_trains_samples_and_synthesizes():
    torch.manual_seed(0)
    data = DataSpec(dataset="vctk", sample_rate=16000, speakers=("p225", "p226", "p227"))
    family = VQVAEFamily(dataclasses.replace(TINY, speakers=0), data)
    assert family.config.speakers == 3 and family.segment_length == 2048
    nets = family.build()
    stepper = Stepper(family.optimizers(nets), torch.device("cpu"), grad_clip=1.0)
    raw = family_batch(["p225", "p226", "p227", "p999"], family.segment_length)
    batch = family.prepare(raw, torch.device("cpu"))
    assert batch["speaker"].tolist() == [0, 1, 2, 0]  # unseen speakers fall back to the first

    for _ in range(3):
        terms = family.train_step(nets, batch, stepper)
        stepper.finish()
        assert set(terms) >= {"loss", "loss_l1", "loss_stft", "loss_commitment"}
        assert set(terms) >= {"perplexity", "codebook_usage", "snr_db"}
        assert all(math.isfinite(v) for v in terms.values())
    scores = family.evaluate(nets, batch)
    assert all(math.isfinite(v) for v in scores.values()) and "snr_db" in scores

    reference, generated = family.sample(nets, batch)
    assert reference.shape == generated.shape == (2, family.segment_length)
    assert generated.abs().max() <= 1

    audio = speech_like(1, 1001)[0]
    default = family.synthesize(nets["vqvae"], audio, {})
    as_p226 = family.synthesize(nets["vqvae"], audio, {"speaker": "p226"})
    assert default.shape == as_p226.shape == (1001,)
    assert default.abs().max() <= 1 and as_p226.abs().max() <= 1
    assert not torch.allclose(default, as_p226)
    with pytest.raises(ValueError, match="p225"):
        family.synthesize(nets["vqvae"], audio, {"speaker": "p999"})


def test_family_on_ljspeech_has_one_speaker():
    data = DataSpec(dataset="ljspeech", sample_rate=22050)
    family = VQVAEFamily(TINY, data)
    assert family.config.speakers == 1
    batch = family.prepare({"audio": speech_like(2, 2048), "text": ["a", "b"]}, torch.device("cpu"))
    assert batch["speaker"].tolist() == [0, 0]
    nets = family.build()
    out = family.synthesize(nets["vqvae"], speech_like(1, 700)[0], {"speaker": None})
    assert out.shape == (700,)
    with pytest.raises(ValueError, match="no speakers"):
        family.synthesize(nets["vqvae"], speech_like(1, 700)[0], {"speaker": "p225"})


# --- data parallel ----------------------------------------------------------------------------


def _replica(rank: int, world_size: int, init_file: str, results: dict) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    torch.manual_seed(rank)  # each rank draws its own randomness and sees its own data
    quantizer = VectorQuantizerEMA(16, 4, 0.25, decay=0.9, dead_code_threshold=1.0)
    for step in range(5):
        quantizer(torch.randn(2, 4, 16) + step)
    results[rank] = quantizer.codebook.clone()
    dist.destroy_process_group()


def test_replicas_keep_identical_codebooks_under_torch_distributed(tmp_path):
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_replica, args=(2, str(tmp_path / "init"), results), nprocs=2)
        assert torch.equal(results[0], results[1])
        assert not torch.equal(results[0], torch.zeros(16, 4))
