"""Generation speed: WaveNet's cached (Fast WaveNet) vs naive generation, HiFi-GAN's
real-time factor per preset, Tacotron 2's decoder steps per second, WaveGlow's, SampleRNN's
samples per second, and the code prior's
tokens per second with and without its key/value cache.

    uv run python bench/generate.py [--device cpu|cuda] [--threads N] [--only NAME ...]

WaveNet: 30 layers in 3 dilation cycles, 64 residual channels, skip 256, no conditioning,
kernel 3 and 2; samples per second of `generate` (Fast WaveNet, compiled on a CPU) at batch 1
and 8, beside r9y9's wavenet_vocoder (`incremental_forward`, the same net configuration, weight
norm off; installed for the bench only by bench/references.py) and `generate_naive` (the whole
receptive field recomputed per sample). One process per measurement, the implementations
interleaved, median of --rounds. Targets: cached at least 50x naive; at least 5,000 samples/s
at batch 1 on 2 cores (kernel 3); batch 8 at least 4x batch 1. wavenet_vocoder's batch 8 is
teacher-forced with sampling off: its sampling (numpy's choice) draws for batch 1 only.

HiFi-GAN: V1, V2 and V3 generators (weight norm removed, inference mode) on a 10-second mel at
22,050 Hz, as multiples of real time, beside kan-bayashi's HiFiGANGenerator (parallel-wavegan,
installed for the bench only) with the same weights copied in, its largest output difference
from ours reported; one process per measurement, interleaved, median of --rounds. Targets on 2
CPU cores: at least 2x the reference on every preset, V1 at least 5x real time. Under that
table, the arithmetic: each preset's GFLOP per pass (torch's FLOP counter), ours in GFLOP/s,
every convolution of the generator timed alone on its input's shape and layout (the most a
whole pass could reach, as GFLOP/s and x real time), the fastest of them, and the GFLOP/s that
2x the reference needs.

Tacotron 2: the paper's sizes (r = 1), free-running decoder steps per second on a 40-word
sentence's length of characters, beside torchaudio.models.Tacotron2 at the same sizes.
WaveGlow, SampleRNN and the code prior have no reference on the package index (their authors'
code is in GitHub repositories), which the output says.

WaveGlow: the paper's model (12 flows,
WN 8 x 256, 87.9 M parameters; weight norm folded) inverting sigma = 0.6 noise for a 10-second
mel at 22,050 Hz (the paper: "more than 500 kHz" on a V100). SampleRNN: the paper's 3-tier model
(frames of 8 and 2 samples, dim 1024), batch 1, sample by sample (each tier steps at its own
rate). Code prior: the recipe's Transformer (12 layers, 16 heads, width 1024, 512 codes;
--prior-tokens tokens) and a small one (4 layers, 4 heads, width 128; 400 tokens, where the
cache's O(length) against O(length^2) shows on a CPU), batch 1, the same number of tokens
generated with the cache (one new token per step) and without (the whole context again per
step). The machine's load average is recorded before and
after: on a shared machine the figures are lower bounds. Writes
bench/results/generate-<device>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch.utils.flop_counter import FlopCounterMode

from wavefoundry.models.code_prior import CodePrior, CodePriorConfig
from wavefoundry.models.hifigan import PRESETS, Generator, HiFiGANConfig
from wavefoundry.models.samplernn import SampleRNN, SampleRNNConfig
from wavefoundry.models.tacotron2 import Tacotron2, Tacotron2Config
from wavefoundry.models.vqvae import VQVAEConfig
from wavefoundry.models.waveglow import WaveGlow, WaveGlowConfig
from wavefoundry.models.wavenet import WaveNet, WaveNetConfig

sys.path.insert(0, str(Path(__file__).parent))
from references import Reference, reference  # noqa: E402  (bench/references.py)

RESULTS = Path(__file__).parent / "results"
WAVENET_BATCHES = (1, 8)
NO_REFERENCE = (
    "reference: none beside it: {} is a GitHub repository, not a package on the index, and "
    "the bench downloads nothing else"
)


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def wavenet_config(kernel: int) -> WaveNetConfig:
    return WaveNetConfig(
        residual_channels=64,
        dilation_channels=64,
        skip_channels=256,
        layers=30,
        dilation_cycles=3,
        kernel_size=kernel,
        n_mels=0,
    )


def measure_wavenet(
    implementation: str, kernel: int, batch: int, steps: int, device: torch.device
) -> dict:
    """One measurement, in this process: samples per second (batch x steps / seconds) of
    `implementation`: "cached" (WaveNet.generate), "naive" (generate_naive) or "r9y9"
    (wavenet_vocoder's incremental_forward; needs it importable)."""
    config = wavenet_config(kernel)
    torch.manual_seed(0)
    started = time.perf_counter()
    with torch.inference_mode():
        if implementation == "r9y9":
            from wavenet_vocoder import WaveNet as R9y9WaveNet

            net = R9y9WaveNet(
                out_channels=config.quantization_channels,
                layers=config.layers,
                stacks=config.dilation_cycles,
                residual_channels=config.residual_channels,
                gate_channels=2 * config.dilation_channels,
                skip_out_channels=config.skip_channels,
                kernel_size=kernel,
                weight_normalization=False,
            )
            net = net.to(device).eval()
            if batch == 1:  # its own generation: softmax, then numpy draws the next sample

                def run(n):
                    return net.incremental_forward(T=n)
            else:  # teacher-forced one-hot inputs, no sampling (which handles batch 1 only)

                def run(n):
                    one_hot = torch.zeros(batch, config.quantization_channels, n, device=device)
                    one_hot[:, 128] = 1.0
                    return net.incremental_forward(test_inputs=one_hot, T=n, quantize=False)
        else:
            net = WaveNet(config).to(device).eval()
            generate = net.generate if implementation == "cached" else net.generate_naive
            first = torch.full((batch,), 128, device=device)

            def run(n):
                return generate(n, first_sample=first)

        run(4)  # warm-up: numba's compiled loop loads (or compiles) here
        first_call = time.perf_counter() - started
        seconds = timed(lambda: run(steps), device)
    return {
        "implementation": implementation,
        "kernel_size": kernel,
        "batch": batch,
        "samples_per_second": batch * steps / seconds,
        "first_call_seconds": first_call,
    }


def interleaved(
    plan: list[tuple],
    command: Callable[..., list[str]],
    references: dict[str, Reference],
    args: argparse.Namespace,
    device: torch.device,
    label: Callable[..., str],
    figure: str,
) -> dict[tuple, list[dict]]:
    """Each measurement of `plan` (tuples whose first item is the implementation) in a process
    of its own, the plan run through `args.rounds` times so that the implementations take
    turns under whatever load the machine has; `command(*key)` gives `--measure`'s arguments,
    and an implementation named in `references` runs with that reference importable. Returns
    every run's result per key; `figure` is the result's key printed as runs finish."""
    runs: dict[tuple, list[dict]] = {key: [] for key in plan}
    for round_ in range(args.rounds):
        for key in plan:
            arguments = [__file__, "--measure", *command(*key), "--device", str(device)]
            arguments += ["--threads", str(args.threads)] if args.threads else []
            reference_ = references.get(key[0])
            if reference_ is not None:
                result = reference_.run(arguments)
            else:
                result = subprocess.run(
                    [sys.executable, *arguments], capture_output=True, text=True, timeout=600
                )
            if result.returncode != 0:
                raise SystemExit(f"{label(*key)} measurement failed: {result.stderr[-2000:]}")
            r = json.loads(result.stdout.strip().splitlines()[-1])
            runs[key].append(r)
            print(
                f"round {round_ + 1}/{args.rounds}: {label(*key)}: {r[figure]:.1f} {figure}",
                flush=True,
            )
    return runs


def wavenet_speed(args: argparse.Namespace, r9y9: Reference, device: torch.device) -> list[dict]:
    """Every implementation x kernel x batch, one process each, interleaved, --rounds times;
    per kernel the medians."""
    steps = {"cached": args.cached_samples, "naive": args.naive_samples, "r9y9": args.r9y9_samples}
    plan = [
        (implementation, kernel, batch)
        for kernel in args.kernels
        for implementation in ("cached", "r9y9", "naive")
        for batch in (WAVENET_BATCHES if implementation != "naive" else (1,))
        if implementation != "r9y9" or r9y9.available
    ]

    def command(implementation, kernel, batch):
        n = str(steps[implementation] // batch)
        return ["wavenet", implementation, str(kernel), str(batch), n]

    def label(implementation, kernel, batch):
        return f"{implementation} kernel {kernel} batch {batch}"

    runner = {"r9y9": r9y9}
    runs = interleaved(plan, command, runner, args, device, label, "samples_per_second")

    def median(implementation, kernel, batch, key="samples_per_second"):
        found = runs.get((implementation, kernel, batch))
        return statistics.median(r[key] for r in found) if found else None

    rows = []
    for kernel in args.kernels:
        cached = {b: median("cached", kernel, b) for b in WAVENET_BATCHES}
        naive = median("naive", kernel, 1)
        row = {
            "kernel_size": kernel,
            "receptive_field": wavenet_config(kernel).receptive_field,
            "cached_samples_per_second": cached[1],
            "cached_batch8_samples_per_second": cached[8],
            "batch8_over_batch1": cached[8] / cached[1],
            "first_call_seconds": median("cached", kernel, 1, "first_call_seconds"),
            "naive_samples_per_second": naive,
            "speedup": cached[1] / naive,
            "reference": {"implementation": "r9y9/wavenet_vocoder", "package": r9y9.describe()},
            "runs": {f"{i} batch {b}": [r["samples_per_second"] for r in runs[i, k, b]]
                     for i, k, b in plan if k == kernel},
        }  # fmt: skip
        if r9y9.available:
            row["reference"] |= {
                "batch1_samples_per_second": median("r9y9", kernel, 1),
                "batch8_samples_per_second": median("r9y9", kernel, 8),
            }
        rows.append(row)
    return rows


def kan_bayashi_generator(preset: str) -> torch.nn.Module:
    """kan-bayashi's HiFiGANGenerator (parallel_wavegan; needs it importable) built to
    `preset`'s generator, weight norm folded."""
    from parallel_wavegan.models import HiFiGANGenerator

    s = PRESETS[preset]
    net = HiFiGANGenerator(
        channels=s.upsample_initial_channel,
        upsample_scales=s.upsample_rates,
        upsample_kernel_sizes=s.upsample_kernel_sizes,
        resblock_kernel_sizes=s.resblock_kernel_sizes,
        resblock_dilations=[list(d) for d in s.resblock_dilation_sizes],
        use_additional_convs=s.resblock == "1",
    )
    net.remove_weight_norm()
    return net


def kan_bayashi_key(name: str) -> str:
    """A key of our generator's state_dict -> kan-bayashi's (both with weight norm folded):
    conv_pre -> input_conv, ups.i -> upsamples.i.1, resblocks.n.convs1.j -> blocks.n.convs1.j.1
    (V3's convs.j -> convs1.j.1), conv_post -> output_conv.1."""
    name = name.replace("conv_pre.", "input_conv.").replace("conv_post.", "output_conv.1.")
    name = re.sub(r"^ups\.(\d+)\.", r"upsamples.\1.1.", name)
    return re.sub(
        r"^resblocks\.(\d+)\.convs([12]?)\.(\d+)\.",
        lambda m: f"blocks.{m[1]}.convs{m[2] or '1'}.{m[3]}.1.",
        name,
    )


def generator_flops(net: torch.nn.Module, mel: torch.Tensor) -> int:
    """Floating-point operations (a multiply-add counts 2) of one pass of `net` on `mel`, as
    torch.utils.flop_counter counts them: the convolutions, which are all of HiFi-GAN's
    arithmetic but for the activations and sums."""
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        net(mel)
    return counter.get_total_flops()


def convolution_times(net: torch.nn.Module, mel: torch.Tensor, device: torch.device) -> dict:
    """Each convolution of `net`, alone, on an input of the shape and memory layout it gets in
    a pass on `mel`, the best of 3 runs: the seconds of all of them together and their GFLOP/s,
    and the fastest layer's GFLOP/s. However the rest is fused or skipped, the generator cannot
    take less time than its convolutions at these speeds."""
    inputs: dict[torch.nn.Module, torch.Tensor] = {}

    def keep_shape(module: torch.nn.Module, args: tuple) -> None:
        # noise of the input's shape and strides: the convolution's speed is that of its layout
        inputs[module] = torch.empty_like(args[0]).normal_()

    hooks = [
        m.register_forward_pre_hook(keep_shape)
        for m in net.modules()
        if isinstance(m, torch.nn.Conv1d | torch.nn.ConvTranspose1d)
    ]
    with torch.inference_mode():
        net(mel)
        for hook in hooks:
            hook.remove()
        total_seconds, total_flops, fastest = 0.0, 0, (0.0, "")
        for module, x in inputs.items():
            with FlopCounterMode(display=False) as counter:
                module(x)
            flops = counter.get_total_flops()
            best = min(timed(lambda m=module, x=x: m(x), device) for _ in range(3))
            total_seconds, total_flops = total_seconds + best, total_flops + flops
            w = module.weight.shape
            layer = f"{w[0]}x{w[1]}, kernel {module.kernel_size[0]}, dilation {module.dilation[0]}"
            fastest = max(fastest, (flops / best / 1e9, layer))
    return {
        "convolutions": len(inputs),
        "convolution_seconds": total_seconds,
        "convolution_gflops_per_second": total_flops / total_seconds / 1e9,
        "fastest_layer_gflops_per_second": fastest[0],
        "fastest_layer": fastest[1],
    }


def measure_hifigan(implementation: str, preset: str, seconds: float, device: torch.device) -> dict:
    """One measurement, in this process: `implementation` "wavefoundry" (models/hifigan.py),
    "kan-bayashi" (parallel_wavegan's HiFiGANGenerator with our generator's weights copied
    in; it reports the largest difference of its output from ours) or "convolutions" (ours,
    each convolution timed alone: `convolution_times`) on a `seconds`-long mel, the best of 3
    runs after a warm-up, as multiples of real time, with the pass's GFLOP."""
    config = HiFiGANConfig(preset=preset)
    torch.manual_seed(0)
    ours = Generator(config).to(device).eval()
    ours.remove_weight_norm()
    frames = int(seconds * 22050 / config.hop_length)
    mel = torch.randn(1, config.n_mels, frames, device=device) - 5.0
    net, difference = ours, None
    audio_seconds = frames * config.hop_length / 22050
    gflop = generator_flops(ours, mel) / 1e9
    if implementation == "convolutions":
        times = convolution_times(ours, mel, device)
        return {
            "implementation": implementation,
            "preset": preset,
            "gflop": gflop,
            **times,
            # the multiple of real time the generator would reach if it were its convolutions
            "times_real_time": audio_seconds / times["convolution_seconds"],
        }
    with torch.inference_mode():
        if implementation == "kan-bayashi":
            net = kan_bayashi_generator(preset).to(device).eval()
            net.load_state_dict({kan_bayashi_key(k): v for k, v in ours.state_dict().items()})
            difference = float((net(mel) - ours(mel)).abs().max())
        net(mel[..., :32])  # warm-up
        best = min(timed(lambda: net(mel), device) for _ in range(3))
    return {
        "implementation": implementation,
        "preset": preset,
        "parameters": sum(p.numel() for p in ours.parameters()),
        "audio_seconds": audio_seconds,
        "gflop": gflop,
        "compute_seconds": best,
        "gflops_per_second": gflop / best,
        "times_real_time": audio_seconds / best,
        "max_abs_difference_from_ours": difference,
    }


def hifigan_speed(
    args: argparse.Namespace, kan_bayashi: Reference, device: torch.device
) -> list[dict]:
    """Each preset, ours and kan-bayashi's at the same weights, one process each, interleaved,
    --rounds times; per preset the medians and their ratio."""
    implementations = ["wavefoundry", "convolutions"]
    implementations += ["kan-bayashi"] if kan_bayashi.available else []
    plan = [(i, preset) for preset in PRESETS for i in implementations]

    def command(implementation, preset):
        return ["hifigan", implementation, preset, str(args.seconds)]

    def label(implementation, preset):
        return f"HiFi-GAN {preset} {implementation}"

    runner = {"kan-bayashi": kan_bayashi}
    runs = interleaved(plan, command, runner, args, device, label, "times_real_time")
    rows = []
    for preset in PRESETS:
        ours = runs["wavefoundry", preset]
        row = {
            "preset": preset,
            "parameters": ours[0]["parameters"],
            "audio_seconds": ours[0]["audio_seconds"],
            "times_real_time": statistics.median(r["times_real_time"] for r in ours),
            "runs": [r["times_real_time"] for r in ours],
            "reference": {"implementation": "kan-bayashi/ParallelWaveGAN HiFiGANGenerator",
                          "package": kan_bayashi.describe()},
        }  # fmt: skip
        row["real_time_factor"] = 1 / row["times_real_time"]
        # The arithmetic: what a pass costs, how fast ours does it, and how fast its
        # convolutions go each on its own (the ceiling on the whole pass's speed).
        convs = runs["convolutions", preset]
        row["arithmetic"] = {
            "gflop": ours[0]["gflop"],
            "gflops_per_second": statistics.median(r["gflops_per_second"] for r in ours),
            "convolutions_alone_times_real_time": statistics.median(
                r["times_real_time"] for r in convs
            ),
            "convolutions_alone_gflops_per_second": statistics.median(
                r["convolution_gflops_per_second"] for r in convs
            ),
            "fastest_layer_gflops_per_second": max(
                r["fastest_layer_gflops_per_second"] for r in convs
            ),
            "fastest_layer": max(convs, key=lambda r: r["fastest_layer_gflops_per_second"])[
                "fastest_layer"
            ],
        }
        if kan_bayashi.available:
            theirs = runs["kan-bayashi", preset]
            row["reference"] |= {
                "times_real_time": statistics.median(r["times_real_time"] for r in theirs),
                "runs": [r["times_real_time"] for r in theirs],
                "max_abs_difference": max(r["max_abs_difference_from_ours"] for r in theirs),
            }
            row["over_reference"] = row["times_real_time"] / row["reference"]["times_real_time"]
            # 2x the reference: a pass in half the reference's time, at this many GFLOP/s.
            row["arithmetic"]["twice_reference_needs_gflops_per_second"] = (
                2
                * row["reference"]["times_real_time"]
                * ours[0]["gflop"]
                / ours[0]["audio_seconds"]
            )
        rows.append(row)
    return rows


def waveglow_speed(device: torch.device, seconds: float, repeats: int) -> dict:
    config = WaveGlowConfig()
    torch.manual_seed(0)
    waveglow = WaveGlow(config).to(device).eval()
    parameters = sum(p.numel() for p in waveglow.parameters())
    waveglow.remove_weight_norm()
    frames = int(seconds * 22050 / config.hop_length)
    mel = torch.randn(1, config.n_mels, frames, device=device) - 5.0
    noise = torch.Generator(device).manual_seed(0)
    with torch.inference_mode():
        waveglow.infer(mel[..., :4], generator=noise)  # warm-up
        best = min(
            timed(lambda: waveglow.infer(mel, generator=noise), device) for _ in range(repeats)
        )
    audio_seconds = frames * config.hop_length / 22050
    return {
        "parameters": parameters,
        "sigma": config.sigma_infer,
        "audio_seconds": audio_seconds,
        "compute_seconds": best,
        "real_time_factor": best / audio_seconds,
        "samples_per_second": frames * config.hop_length / best,
    }


def samplernn_speed(device: torch.device, samples: int) -> dict:
    config = SampleRNNConfig()  # the paper's 3-tier model
    torch.manual_seed(0)
    model = SampleRNN(config).to(device).eval()
    model.generate(16)  # warm-up
    seconds = timed(lambda: model.generate(samples), device)
    return {
        "frame_sizes": list(config.frame_sizes),
        "dim": config.dim,
        "parameters": sum(p.numel() for p in model.parameters()),
        "samples": samples,
        "samples_per_second": samples / seconds,
    }


def code_prior_speed(device: torch.device, tokens: int, **sizes: int) -> dict:
    """`sizes` (n_layer, n_head, n_embd) override the recipe's."""
    config = CodePriorConfig(codec=VQVAEConfig(), **sizes)  # 512 codes
    torch.manual_seed(0)
    model = CodePrior(config).to(device).eval()
    model.generate(4)  # warm-up
    rates = {}
    for cached in (True, False):
        seconds = timed(lambda cached=cached: model.generate(tokens, use_cache=cached), device)
        rates["cached" if cached else "uncached"] = tokens / seconds
    return {
        "layers": config.n_layer,
        "width": config.n_embd,
        "transformer_parameters": sum(
            p.numel() for n, p in model.named_parameters() if not n.startswith("codec.")
        ),
        "tokens": tokens,
        "cached_tokens_per_second": rates["cached"],
        "uncached_tokens_per_second": rates["uncached"],
        "speedup": rates["cached"] / rates["uncached"],
    }


def tacotron2_speed(device: torch.device, steps: int, characters: int) -> dict:
    """Free-running decoder steps per second of the paper's Tacotron 2 (models/tacotron2.py,
    r = 1) and of torchaudio's `Tacotron2` at the same sizes, on the same `characters`-long
    input, each for exactly `steps` decoder steps (the stop token never fires: its threshold
    is out of reach), best of 2 after a warm-up, interleaved in this process."""
    import torchaudio

    torch.manual_seed(0)
    ours = Tacotron2(Tacotron2Config(max_decoder_steps=steps, gate_threshold=1.0)).to(device)
    c = ours.config
    theirs = torchaudio.models.Tacotron2(
        n_symbol=c.n_symbols,
        decoder_max_step=steps,
        decoder_early_stopping=False,
        gate_threshold=1.0,
    ).to(device)
    text = torch.randint(1, c.n_symbols, (1, characters), device=device)
    lengths = torch.tensor([characters], device=device)
    noise = torch.Generator(device).manual_seed(0)
    runs = {
        "wavefoundry": lambda: ours.infer(text, lengths, generator=noise),
        "torchaudio": lambda: theirs.infer(text, lengths),
    }
    with torch.inference_mode():
        ours.eval(), theirs.eval()
        for run in runs.values():
            run()  # warm-up
        seconds = {name: [] for name in runs}
        for _ in range(2):
            for name, run in runs.items():
                seconds[name].append(timed(run, device))
    frames_per_second = {name: steps / min(s) for name, s in seconds.items()}
    audio_per_step = c.hop_length / 22050  # one frame per decoder step (r = 1)
    return {
        "characters": characters,
        "decoder_steps": steps,
        "parameters": sum(p.numel() for p in ours.parameters()),
        "reference_parameters": sum(p.numel() for p in theirs.parameters()),
        "steps_per_second": frames_per_second["wavefoundry"],
        "reference_steps_per_second": frames_per_second["torchaudio"],
        "times_real_time": frames_per_second["wavefoundry"] * audio_per_step,
        "reference_times_real_time": frames_per_second["torchaudio"] * audio_per_step,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument(
        "--cached-samples", type=int, default=16000, help="WaveNet samples per measurement"
    )
    parser.add_argument("--naive-samples", type=int, default=6)
    parser.add_argument("--r9y9-samples", type=int, default=320)
    parser.add_argument("--kernels", type=int, nargs="+", default=[3, 2])
    parser.add_argument(
        "--rounds", type=int, default=5, help="WaveNet, HiFi-GAN: median of this many processes"
    )
    parser.add_argument(
        "--measure",
        nargs="+",
        metavar="ARG",
        help="internal: one measurement in this process, printed as JSON: wavenet "
        "IMPLEMENTATION KERNEL BATCH STEPS, or hifigan IMPLEMENTATION PRESET SECONDS",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="mel length for HiFi-GAN")
    parser.add_argument("--waveglow-seconds", type=float, default=10.0, help="mel length")
    parser.add_argument("--waveglow-repeats", type=int, default=1)
    parser.add_argument("--samplernn-samples", type=int, default=4000)
    parser.add_argument("--prior-tokens", type=int, default=256)
    parser.add_argument("--tacotron2-steps", type=int, default=400, help="decoder steps")
    sections = ("wavenet", "hifigan", "tacotron2", "waveglow", "samplernn", "code_prior")
    parser.add_argument("--only", nargs="+", choices=sections, default=list(sections))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.measure:
        section, implementation, *rest = args.measure
        if section == "wavenet":
            kernel, batch, steps = map(int, rest)
            r = measure_wavenet(implementation, kernel, batch, steps, device)
        else:
            preset, seconds = rest
            r = measure_hifigan(implementation, preset, float(seconds), device)
        print(json.dumps(r))
        return
    console = Console()
    load_before = os.getloadavg()
    results: dict = {}

    if "wavenet" in args.only:
        results["wavenet"] = wavenet_table(console, device, args)
    if "hifigan" in args.only:
        results["hifigan"] = hifigan_table(console, device, args)
    if "tacotron2" in args.only:
        r = tacotron2_speed(device, args.tacotron2_steps, characters=230)  # a 40-word sentence
        table = Table(
            title=f"Tacotron 2 (paper sizes, r = 1), {r['decoder_steps']} free-running decoder "
            f"steps on {r['characters']} characters, {device}"
        )
        for column in ("implementation", "params", "steps/s", "x real time (22,050 Hz, hop 256)"):
            table.add_column(column, justify="right")
        table.add_row(
            "wavefoundry",
            f"{r['parameters'] / 1e6:.1f} M",
            f"{r['steps_per_second']:.0f}",
            f"{r['times_real_time']:.2f}",
        )
        table.add_row(
            "torchaudio.models.Tacotron2",
            f"{r['reference_parameters'] / 1e6:.1f} M",
            f"{r['reference_steps_per_second']:.0f}",
            f"{r['reference_times_real_time']:.2f}",
        )
        console.print(table)
        results["tacotron2"] = r
    if "waveglow" in args.only:
        r = waveglow_speed(device, args.waveglow_seconds, args.waveglow_repeats)
        table = Table(
            title=f"WaveGlow, sigma 0.6, on a {args.waveglow_seconds:g}-second mel, {device}"
        )
        for column in ("params", "compute s", "RTF", "samples/s"):
            table.add_column(column, justify="right")
        table.add_row(
            f"{r['parameters'] / 1e6:.2f} M",
            f"{r['compute_seconds']:.1f}",
            f"{r['real_time_factor']:.2f}",
            f"{r['samples_per_second']:.0f}",
        )
        console.print(table)
        console.print(NO_REFERENCE.format("NVIDIA/waveglow"))
        results["waveglow"] = r
    if "samplernn" in args.only:
        r = samplernn_speed(device, args.samplernn_samples)
        table = Table(title=f"SampleRNN generation, 3 tiers (frames 8, 2), dim 1024, {device}")
        for column in ("params", "samples", "samples/s"):
            table.add_column(column, justify="right")
        table.add_row(
            f"{r['parameters'] / 1e6:.1f} M", str(r["samples"]), f"{r['samples_per_second']:.0f}"
        )
        console.print(table)
        console.print(NO_REFERENCE.format("samplernn-pytorch (deepsound-project)"))
        results["samplernn"] = r
    if "code_prior" in args.only:
        # The recipe's Transformer, and a small one over a whole context, where the cache's
        # O(length) against O(length^2) shows even on a CPU.
        rows = [
            code_prior_speed(device, args.prior_tokens),
            code_prior_speed(device, 400, n_layer=4, n_head=4, n_embd=128),
        ]
        table = Table(title=f"Code prior generation, batch 1, {device}")
        for column in ("layers / width", "params", "tokens", "cached/s", "uncached/s", "speed-up"):
            table.add_column(column, justify="right")
        for r in rows:
            table.add_row(
                f"{r['layers']} / {r['width']}",
                f"{r['transformer_parameters'] / 1e6:.1f} M",
                str(r["tokens"]),
                f"{r['cached_tokens_per_second']:.1f}",
                f"{r['uncached_tokens_per_second']:.1f}",
                f"{r['speedup']:.1f}x",
            )
        console.print(table)
        console.print(NO_REFERENCE.format("a VQ-VAE code prior (openai/jukebox)"))
        results["code_prior"] = rows
    load = {"before": load_before, "after": os.getloadavg(), "cpus": os.cpu_count()}
    console.print(
        f"load average (1 min) {load['before'][0]:.1f} before, {load['after'][0]:.1f} after, "
        f"on {load['cpus']} CPUs: other work on the machine slows these figures"
    )

    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"generate-{device.type}.json"
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    previous = json.loads(out.read_text()) if out.is_file() else {}
    record = {**previous, "device": machine, "threads": torch.get_num_threads(), **results}
    record["load_average"] = {**previous.get("load_average", {}), **dict.fromkeys(results, load)}
    out.write_text(json.dumps(record, indent=2) + "\n")
    console.print(f"written {out}")


def wavenet_table(console: Console, device: torch.device, args: argparse.Namespace) -> list:
    r9y9 = reference(["wavenet-vocoder"])
    wavenet = wavenet_speed(args, r9y9, device)
    table = Table(
        title=f"WaveNet samples/s, 30 layers / 3 cycles / 64 ch / skip 256, batch (b) 1 and 8, "
        f"median of {args.rounds} processes"
    )
    columns = ("kernel", "field", "b1", "b8", "b8/b1", "r9y9 b1", "r9y9 b8", "naive", "b1/naive")
    for column in columns:
        table.add_column(column, justify="right")
    for r in wavenet:
        ref = r["reference"]
        table.add_row(
            str(r["kernel_size"]),
            str(r["receptive_field"]),
            f"{r['cached_samples_per_second']:.0f}",
            f"{r['cached_batch8_samples_per_second']:.0f}",
            f"{r['batch8_over_batch1']:.1f}x",
            f"{ref['batch1_samples_per_second']:.0f}" if r9y9.available else "-",
            f"{ref['batch8_samples_per_second']:.0f}" if r9y9.available else "-",
            f"{r['naive_samples_per_second']:.2f}",
            f"{r['speedup']:.0f}x",
        )
    console.print(table)
    console.print(f"reference: r9y9/wavenet_vocoder from {r9y9.describe()}")
    return wavenet


def hifigan_table(console: Console, device: torch.device, args: argparse.Namespace) -> list:
    kan_bayashi = reference(["parallel-wavegan"])
    hifigan = hifigan_speed(args, kan_bayashi, device)
    table = Table(
        title=f"HiFi-GAN, x real time on a {args.seconds:g}-second mel, {device}, median of "
        f"{args.rounds} processes; kan-bayashi's at the same weights"
    )
    for column in ("preset", "params", "wavefoundry", "kan-bayashi", "ratio", "max |diff|"):
        table.add_column(column, justify="right")
    for r in hifigan:
        ref = r["reference"]
        table.add_row(
            r["preset"],
            f"{r['parameters'] / 1e6:.2f} M",
            f"{r['times_real_time']:.1f}",
            f"{ref['times_real_time']:.1f}" if kan_bayashi.available else "-",
            f"{r['over_reference']:.2f}x" if kan_bayashi.available else "-",
            f"{ref['max_abs_difference']:.1e}" if kan_bayashi.available else "-",
        )
    console.print(table)
    console.print(f"reference: kan-bayashi's HiFiGANGenerator from {kan_bayashi.describe()}")
    table = Table(
        title="The arithmetic: GFLOP/s of ours, of its convolutions each timed alone (the most a "
        "whole pass could reach), of the fastest one, and what 2x the reference needs"
    )
    columns = ("preset", "GFLOP", "ours", "convs alone", "convs alone, x rt", "fastest", "2x ref")
    for column in columns:
        table.add_column(column, justify="right")
    for r in hifigan:
        a = r["arithmetic"]
        table.add_row(
            r["preset"],
            f"{a['gflop']:.1f}",
            f"{a['gflops_per_second']:.0f}",
            f"{a['convolutions_alone_gflops_per_second']:.0f}",
            f"{a['convolutions_alone_times_real_time']:.1f}",
            f"{a['fastest_layer_gflops_per_second']:.0f}",
            f"{a['twice_reference_needs_gflops_per_second']:.0f}" if kan_bayashi.available else "-",
        )
    console.print(table)
    return hifigan


if __name__ == "__main__":
    main()
