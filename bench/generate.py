"""Generation speed: WaveNet's cached (Fast WaveNet) vs naive generation, HiFi-GAN's
real-time factor per preset, WaveGlow's, SampleRNN's samples per second, and the code prior's
tokens per second with and without its key/value cache.

    uv run python bench/generate.py [--device cpu|cuda] [--threads N] [--only NAME ...]

WaveNet: 30 layers in 3 dilation cycles, 64 residual channels, skip 256, no conditioning,
batch 1, kernel 2 and 3; samples per second of `generate` (a queue per layer, O(layers) per
sample) and of `generate_naive` (the whole receptive field recomputed per sample). Target:
cached at least 50x faster. HiFi-GAN: V1, V2 and V3 generators (weight norm removed,
inference mode) on a 10-second mel at 22,050 Hz; speed as multiples of real time. Targets on
2 CPU cores: V1 faster than real time, V3 at least 10x. WaveGlow: the paper's model (12 flows,
WN 8 x 256, 87.9 M parameters; weight norm folded) inverting sigma = 0.6 noise for a 10-second
mel at 22,050 Hz (the paper: "more than 500 kHz" on a V100). SampleRNN: the paper's 3-tier model
(frames of 8 and 2 samples, dim 1024), batch 1, sample by sample (each tier steps at its own
rate). Code prior: the recipe's Transformer (12 layers, 16 heads, width 1024, 512 codes),
batch 1, the same number of tokens generated with the cache (one new token per step) and
without (the whole context again per step). The machine's load average is recorded before and
after: on a shared machine the figures are lower bounds. Writes
bench/results/generate-<device>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from wavefoundry.models.code_prior import CodePrior, CodePriorConfig
from wavefoundry.models.hifigan import PRESETS, Generator, HiFiGANConfig
from wavefoundry.models.samplernn import SampleRNN, SampleRNNConfig
from wavefoundry.models.vqvae import VQVAEConfig
from wavefoundry.models.waveglow import WaveGlow, WaveGlowConfig
from wavefoundry.models.wavenet import WaveNet, WaveNetConfig

RESULTS = Path(__file__).parent / "results"


def timed(fn, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def wavenet_speed(kernel: int, device: torch.device, cached: int, naive: int) -> dict:
    config = WaveNetConfig(
        residual_channels=64,
        dilation_channels=64,
        skip_channels=256,
        layers=30,
        dilation_cycles=3,
        kernel_size=kernel,
        n_mels=0,
    )
    torch.manual_seed(0)
    model = WaveNet(config).to(device).eval()
    with torch.inference_mode():
        model.generate(50, first_sample=torch.tensor([128], device=device))  # warm-up
        seconds_cached = timed(
            lambda: model.generate(cached, first_sample=torch.tensor([128], device=device)),
            device,
        )
        seconds_naive = timed(
            lambda: model.generate_naive(naive, first_sample=torch.tensor([128], device=device)),
            device,
        )
    cached_rate, naive_rate = cached / seconds_cached, naive / seconds_naive
    return {
        "kernel_size": kernel,
        "receptive_field": config.receptive_field,
        "cached_samples_per_second": cached_rate,
        "naive_samples_per_second": naive_rate,
        "speedup": cached_rate / naive_rate,
    }


def hifigan_speed(preset: str, device: torch.device, seconds: float, repeats: int) -> dict:
    config = HiFiGANConfig(preset=preset)
    torch.manual_seed(0)
    generator = Generator(config).to(device).eval()
    generator.remove_weight_norm()
    frames = int(seconds * 22050 / config.hop_length)
    mel = torch.randn(1, config.n_mels, frames, device=device) - 5.0
    with torch.inference_mode():
        generator(mel[..., :32])  # warm-up
        best = min(timed(lambda: generator(mel), device) for _ in range(repeats))
    audio_seconds = frames * config.hop_length / 22050
    return {
        "preset": preset,
        "parameters": sum(p.numel() for p in generator.parameters()),
        "audio_seconds": audio_seconds,
        "compute_seconds": best,
        "real_time_factor": best / audio_seconds,
        "times_real_time": audio_seconds / best,
    }


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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--cached-samples", type=int, default=4000)
    parser.add_argument("--naive-samples", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=10.0, help="mel length for HiFi-GAN")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--waveglow-seconds", type=float, default=10.0, help="mel length")
    parser.add_argument("--waveglow-repeats", type=int, default=1)
    parser.add_argument("--samplernn-samples", type=int, default=4000)
    parser.add_argument("--prior-tokens", type=int, default=256)
    sections = ("wavenet", "hifigan", "waveglow", "samplernn", "code_prior")
    parser.add_argument("--only", nargs="+", choices=sections, default=list(sections))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    console = Console()
    load_before = os.getloadavg()
    results: dict = {}

    if "wavenet" in args.only:
        results["wavenet"] = wavenet_table(console, device, args)
    if "hifigan" in args.only:
        results["hifigan"] = hifigan_table(console, device, args)
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
    wavenet = [wavenet_speed(k, device, args.cached_samples, args.naive_samples) for k in (2, 3)]
    table = Table(title=f"WaveNet generation, 30 layers / 3 cycles / 64 channels, {device}")
    for column in ("kernel", "receptive field", "cached samples/s", "naive samples/s", "speed-up"):
        table.add_column(column, justify="right")
    for r in wavenet:
        table.add_row(
            str(r["kernel_size"]),
            str(r["receptive_field"]),
            f"{r['cached_samples_per_second']:.0f}",
            f"{r['naive_samples_per_second']:.2f}",
            f"{r['speedup']:.0f}x",
        )
    console.print(table)
    return wavenet


def hifigan_table(console: Console, device: torch.device, args: argparse.Namespace) -> list:
    hifigan = [hifigan_speed(p, device, args.seconds, args.repeats) for p in PRESETS]
    table = Table(title=f"HiFi-GAN on a {args.seconds:g}-second mel, {device}")
    for column in ("preset", "params", "compute s", "RTF", "x real time"):
        table.add_column(column, justify="right")
    for r in hifigan:
        table.add_row(
            r["preset"],
            f"{r['parameters'] / 1e6:.2f} M",
            f"{r['compute_seconds']:.2f}",
            f"{r['real_time_factor']:.3f}",
            f"{r['times_real_time']:.1f}",
        )
    console.print(table)
    return hifigan


if __name__ == "__main__":
    main()
