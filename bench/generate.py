"""Generation speed: WaveNet's cached (Fast WaveNet) vs naive generation, HiFi-GAN's
real-time factor per preset, and WaveGlow's.

    uv run python bench/generate.py [--device cpu|cuda] [--threads N]

WaveNet: 30 layers in 3 dilation cycles, 64 residual channels, skip 256, no conditioning,
batch 1, kernel 2 and 3; samples per second of `generate` (a queue per layer, O(layers) per
sample) and of `generate_naive` (the whole receptive field recomputed per sample). Target:
cached at least 50x faster. HiFi-GAN: V1, V2 and V3 generators (weight norm removed,
inference mode) on a 10-second mel at 22,050 Hz; speed as multiples of real time. Targets on
2 CPU cores: V1 faster than real time, V3 at least 10x. WaveGlow: the paper's model (12 flows,
WN 8 x 256, 87.9 M parameters; weight norm folded) inverting sigma = 0.6 noise for a 10-second
mel at 22,050 Hz (the paper: "more than 500 kHz" on a V100). The load average is printed and
stored beside the timings: on a shared machine they are slower than the hardware. Writes
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

from wavefoundry.models.hifigan import PRESETS, Generator, HiFiGANConfig
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
    parser.add_argument("--only", choices=("wavenet", "hifigan", "waveglow"), help="one model")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    console = Console()

    results: dict[str, object] = {}
    if args.only in (None, "wavenet"):
        results["wavenet"] = wavenet = [
            wavenet_speed(k, device, args.cached_samples, args.naive_samples) for k in (2, 3)
        ]
        table = Table(title=f"WaveNet generation, 30 layers / 3 cycles / 64 channels, {device}")
        for column in ("kernel", "receptive field", "cached samples/s", "naive samples/s", "x"):
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

    if args.only in (None, "hifigan"):
        results["hifigan"] = hifigan = [
            hifigan_speed(p, device, args.seconds, args.repeats) for p in PRESETS
        ]
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

    if args.only in (None, "waveglow"):
        results["waveglow"] = r = waveglow_speed(
            device, args.waveglow_seconds, args.waveglow_repeats
        )
        table = Table(
            title=f"WaveGlow (sigma {r['sigma']}) on a {args.waveglow_seconds:g}-second mel, {device}"
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

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    console.print(
        f"load average {load:.1f} on {os.cpu_count()} cores: timings are inflated by other work"
        if load is not None and load > 0.5 * (os.cpu_count() or 1)
        else f"load average {load}"
    )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"generate-{device.type}.json"
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    # --only refreshes one model's entry and keeps the others'.
    record = json.loads(out.read_text()) if args.only and out.is_file() else {}
    record.update({"device": machine, "threads": torch.get_num_threads()})
    for name, entry in results.items():
        record[name] = entry
        record.setdefault("load_average", {})[name] = load
    out.write_text(json.dumps(record, indent=2) + "\n")
    console.print(f"written {out}")


if __name__ == "__main__":
    main()
