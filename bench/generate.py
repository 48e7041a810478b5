"""Generation speed: WaveNet's cached (Fast WaveNet) vs naive generation, and HiFi-GAN's
real-time factor per preset.

    uv run python bench/generate.py [--device cpu|cuda] [--threads N]

WaveNet: 30 layers in 3 dilation cycles, 64 residual channels, skip 256, no conditioning,
batch 1, kernel 2 and 3; samples per second of `generate` (a queue per layer, O(layers) per
sample) and of `generate_naive` (the whole receptive field recomputed per sample). Target:
cached at least 50x faster. HiFi-GAN: V1, V2 and V3 generators (weight norm removed,
inference mode) on a 10-second mel at 22,050 Hz; speed as multiples of real time. Targets on
2 CPU cores: V1 faster than real time, V3 at least 10x. Writes
bench/results/generate-<device>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from wavefoundry.models.hifigan import PRESETS, Generator, HiFiGANConfig
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
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    console = Console()

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

    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"generate-{device.type}.json"
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    out.write_text(
        json.dumps(
            {
                "device": machine,
                "threads": torch.get_num_threads(),
                "wavenet": wavenet,
                "hifigan": hifigan,
            },
            indent=2,
        )
        + "\n"
    )
    console.print(f"written {out}")


if __name__ == "__main__":
    main()
