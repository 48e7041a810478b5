"""WaveNet: causal teacher-forced logits, Fast WaveNet generation equal to them, and the family."""

from __future__ import annotations

import math

import pytest
import torch

from wavefoundry.data.stored import DataSpec
from wavefoundry.families.wavenet import WaveNetFamily
from wavefoundry.models.wavenet import WaveNet, WaveNetConfig, bits_per_sample
from wavefoundry.training.step import Stepper


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: a second OpenMP thread only adds synchronisation, which on a busy 2-core
    machine costs milliseconds per convolution."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(**overrides) -> WaveNetConfig:
    fields = dict(
        quantization_channels=256,
        residual_channels=8,
        dilation_channels=6,
        skip_channels=16,
        layers=6,
        dilation_cycles=2,
        kernel_size=2,
        n_mels=0,
        n_fft=64,
        hop_length=16,
        win_length=64,
        upsample_scales=(4, 4),
        segment_length=256,
    )
    return WaveNetConfig(**(fields | overrides))


def wavenet(config: WaveNetConfig, perturbation: float = 0.1) -> WaveNet:
    """A network in eval mode with every weight perturbed: some start at zero or constant."""
    net = WaveNet(config).eval()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.add_(perturbation * torch.randn_like(parameter))
    return net


def conditioning(config: WaveNetConfig, batch: int, samples: int) -> dict[str, torch.Tensor]:
    out = {}
    if config.n_mels:
        out["mel"] = torch.randn(batch, config.n_mels, math.ceil(samples / config.hop_length))
    if config.speakers:
        out["speaker"] = torch.randint(0, config.speakers, (batch,))
    if config.pitches:
        out["pitch"] = torch.randint(0, config.pitches, (batch,))
    if config.instrument_families:
        out["instrument_family"] = torch.randint(0, config.instrument_families, (batch,))
    return out


def test_receptive_field_of_the_paper_recipe():
    assert WaveNetConfig(layers=30, dilation_cycles=3, kernel_size=3).receptive_field == 6139
    assert WaveNetConfig(layers=30, dilation_cycles=3, kernel_size=2).receptive_field == 3070
    assert WaveNetConfig(layers=30, dilation_cycles=3).dilations[:11] == (
        *(2**i for i in range(10)),
        1,
    )


def test_config_refuses_an_upsampler_that_misses_the_hop():
    with pytest.raises(ValueError, match="upsample_scales"):
        tiny(n_mels=4, hop_length=16, upsample_scales=(4, 2))
    with pytest.raises(ValueError, match="multiple of hop_length"):
        tiny(n_mels=4, segment_length=250)


def test_logits_are_causal():
    torch.manual_seed(0)
    config = tiny(kernel_size=3, n_mels=4, speakers=3)
    net = wavenet(config)
    x = torch.randint(0, 256, (2, 40))
    cond = conditioning(config, 2, 40)
    logits = net(x, **cond)
    assert logits.shape == (2, 256, 40)
    changed = x.clone()
    changed[:, 25] = (x[:, 25] + 100) % 256
    after = net(changed, **cond)
    torch.testing.assert_close(after[..., :25], logits[..., :25])
    assert (after[..., 25] - logits[..., 25]).abs().max() > 1e-3
    other_mel = cond | {"mel": cond["mel"] + 1.0}
    assert (net(x, **other_mel) - logits).abs().max() > 1e-3


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "torch"])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("kernel_size", [2, 3])
@pytest.mark.parametrize("local", [False, True])
@pytest.mark.parametrize("global_", [False, True])
def test_cached_generation_gives_the_teacher_forced_logits(
    kernel_size, local, global_, batch, compiled
):
    torch.manual_seed(kernel_size + 2 * local + 4 * global_ + 8 * batch)
    config = tiny(
        kernel_size=kernel_size,
        n_mels=5 if local else 0,
        speakers=4 if global_ else 0,
        pitches=128 if global_ else 0,
        instrument_families=11 if global_ else 0,
    )
    net = wavenet(config)
    # past the receptive field, and past a 256-step chunk of projected local conditioning
    samples = 300 if local else 3 * config.receptive_field
    x = torch.randint(0, 256, (batch, samples))
    cond = conditioning(config, batch, samples)
    with torch.no_grad():
        expected = net(x, **cond)
    _, logits = net.generate(
        samples, **cond, teacher_forcing=x, return_logits=True, compiled=compiled
    )
    assert logits.shape == expected.shape
    assert (logits - expected).abs().max() < 1e-4


def test_compiled_and_torch_generation_draw_the_same_samples_from_a_seed():
    """Both draw by inverse CDF from the same seeded uniforms: given the same inputs (teacher
    forcing), only a uniform within float rounding of a class boundary could tell them apart."""
    torch.manual_seed(5)
    config = tiny(kernel_size=3, n_mels=4, speakers=3)
    net = wavenet(config, perturbation=0.3)
    samples = 500
    x = torch.randint(0, 256, (2, samples))
    cond = conditioning(config, 2, samples)

    def draw(compiled):
        seed = torch.Generator().manual_seed(7)
        return net.generate(samples, **cond, teacher_forcing=x, generator=seed, compiled=compiled)

    compiled, eager = draw(True), draw(False)
    assert (compiled == eager).float().mean() > 0.99
    assert len(compiled.unique()) > 50  # drawn from the softmax, not its argmax


def test_compiled_generation_splits_a_batch_across_threads_without_changing_it():
    torch.manual_seed(6)
    config = tiny(kernel_size=3, speakers=4)
    net = wavenet(config, perturbation=0.3)
    speaker = torch.tensor([0, 1, 2, 3, 1])

    def draw(threads):
        torch.set_num_threads(threads)
        try:
            return net.generate(400, speaker=speaker, generator=torch.Generator().manual_seed(3))
        finally:
            torch.set_num_threads(1)

    one, two = draw(1), draw(2)
    assert torch.equal(one, two)
    assert not torch.equal(one[0], one[1])


@pytest.mark.parametrize("kernel_size", [2, 3])
def test_cached_and_naive_generation_agree(kernel_size):
    torch.manual_seed(1)
    config = tiny(kernel_size=kernel_size, layers=4, n_mels=3, speakers=2)
    net = wavenet(config, perturbation=0.5)  # else greedy decoding repeats one class
    samples = config.receptive_field + 6
    cond = conditioning(config, 2, samples)
    first = torch.tensor([0, 255])
    fast = net.generate(samples, **cond, temperature=0, first_sample=first)
    naive = net.generate_naive(samples, **cond, temperature=0, first_sample=first)
    assert fast.shape == (2, samples)
    assert torch.equal(fast, naive)
    assert len(fast.unique()) > 4
    x = torch.randint(0, 256, (2, samples))
    _, logits = net.generate_naive(samples, **cond, teacher_forcing=x, return_logits=True)
    assert (logits - net(x, **cond)).abs().max() < 1e-4


def test_sampling_is_seeded_and_conditioning_matters():
    torch.manual_seed(2)
    net = wavenet(tiny(speakers=2))
    speaker = torch.tensor([0])

    def draw(seed, speaker):
        return net.generate(200, speaker=speaker, generator=torch.Generator().manual_seed(seed))

    first = draw(0, speaker)
    assert torch.equal(first, draw(0, speaker))
    assert not torch.equal(first, draw(1, speaker))
    assert first.min() >= 0 and first.max() < 256
    x = torch.randint(0, 256, (1, 50))
    assert not torch.allclose(net(x, speaker=torch.tensor([0])), net(x, speaker=torch.tensor([1])))
    with pytest.raises(ValueError, match="speaker"):
        net(x)


def test_bits_per_sample_of_a_uniform_guess_is_eight():
    logits = torch.zeros(2, 256, 10)
    targets = torch.randint(0, 256, (2, 10))
    nats = torch.nn.functional.cross_entropy(logits, targets)
    assert bits_per_sample(nats).item() == pytest.approx(8.0)


def synthetic_batch(dataset: str, batch: int, samples: int) -> dict:
    t = torch.arange(samples) / 16000
    freqs = torch.tensor([220.0, 330.0, 440.0, 550.0])[:batch, None]
    items = {"audio": 0.5 * torch.sin(2 * math.pi * freqs * t) + 0.01 * torch.randn(batch, samples)}
    if dataset == "vctk":
        items["speaker"] = ["p225", "p226", "p999", "p225"][:batch]
    if dataset == "nsynth":
        items["pitch"] = torch.tensor([57, 64, 69, 72])[:batch]
        items["instrument_family"] = torch.tensor([0, 3, 10, 6])[:batch]
        items["instrument_family_str"] = ["bass", "guitar", "vocal", "organ"][:batch]
    return items


@pytest.mark.parametrize("dataset", ["ljspeech", "vctk", "nsynth"])
def test_family_trains_samples_and_synthesizes(dataset):
    torch.manual_seed(0)
    data = DataSpec(dataset=dataset, sample_rate=16000, speakers=("p225", "p226"))
    config = tiny(n_mels=0 if dataset == "nsynth" else 8, segment_length=512)
    family = WaveNetFamily(config, data)
    assert family.config.speakers == (2 if dataset == "vctk" else 0)
    assert family.config.pitches == (128 if dataset == "nsynth" else 0)
    nets = family.build()
    step = Stepper(family.optimizers(nets), torch.device("cpu"), grad_clip=1.0)
    batch = family.prepare(synthetic_batch(dataset, 4, 512), torch.device("cpu"))
    losses = []
    for _ in range(3):
        terms = family.train_step(nets, batch, step)
        step.finish()
        losses.append(terms["loss"])
        assert terms["bits_per_sample"] == pytest.approx(terms["loss"] / math.log(2))
    assert all(math.isfinite(loss) for loss in losses)
    assert losses[-1] < losses[0]
    assert math.isfinite(family.evaluate(nets, batch)["bits_per_sample"])

    reference, generated = family.sample(nets, batch)
    assert reference.shape == generated.shape == (2, 512)
    assert generated.abs().max() <= 1.0

    net = nets["wavenet"]
    conditions = {"speaker": "p226", "pitch": 60, "instrument_family": "guitar", "seed": 3}
    audio = 0.3 * torch.sin(torch.arange(1000) / 5.0)
    if dataset == "nsynth":
        out = family.synthesize(net, None, conditions | {"seconds": 0.05})
        assert torch.equal(out, family.synthesize(net, None, conditions | {"seconds": 0.05}))
        assert out.shape == (800,)
    else:
        out = family.synthesize(net, audio, conditions)
        assert out.shape == (1000,)
    assert out.abs().max() <= 1.0 and out.std() > 0


def test_synthesize_refuses_an_unknown_speaker_or_a_pitch_out_of_range():
    vctk = WaveNetFamily(tiny(n_mels=8, segment_length=512), DataSpec("vctk", 16000, ("p225",)))
    audio = 0.3 * torch.sin(torch.arange(600) / 5.0)
    with pytest.raises(ValueError, match="unknown speaker 'p999': known speakers are p225"):
        vctk.synthesize(vctk.build()["wavenet"], audio, {"speaker": "p999"})
    nsynth = WaveNetFamily(tiny(n_mels=0, segment_length=512), DataSpec("nsynth", 16000))
    with pytest.raises(ValueError, match="pitch 200 is outside the MIDI range 0-127"):
        nsynth.synthesize(nsynth.build()["wavenet"], None, {"pitch": 200, "seconds": 0.01})
