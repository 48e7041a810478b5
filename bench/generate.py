"""Generation speed: WaveNet's cached (Fast WaveNet) vs naive generation, HiFi-GAN's
real-time factor per preset, WaveGlow's, SampleRNN's samples per second, and the code prior's
tokens per second with and without its key/value cache.

    uv run python bench/generate.py [--device cpu|cuda] [--threads N] [--only NAME ...]

WaveNet: 30 layers in 3 dilation cycles, 64 residual channels, skip 256, no conditioning,
kernel 3 and 2; samples per second of `generate` (Fast WaveNet, compiled on a CPU) at batch 1
and 8, beside r9y9's wavenet_vocoder (`incremental_forward`, the same net configuration, weight
norm off; installed for the bench only by bench/references.py) and `generate_naive` (the whole
receptive field recomputed per sample). One process per measurement, the implementations
interleaved, median of --rounds. Targets: cached at least 50x naive; at least 5,000 samples/s
at batch 1 on 2 cores (kernel 3); batch 8 at least 4x batch 1. wavenet_vocoder's batch 8 is
teacher-forced with sampling off: its sampling (numpy's choice) draws for batch 1 only. HiFi-GAN: V1, V2 and V3 generators (weight norm removed,
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
import statistics
import subprocess
import sys
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

sys.path.insert(0, str(Path(__file__).parent))
from references import Reference, reference  # noqa: E402  (bench/references.py)

RESULTS = Path(__file__).parent / "results"
WAVENET_BATCHES = (1, 8)


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
    runs: dict[tuple, list[dict]] = {key: [] for key in plan}
    for round_ in range(args.rounds):
        for implementation, kernel, batch in plan:
            command = [__file__, "--measure", implementation, str(kernel), str(batch)]
            command += [str(steps[implementation] // batch)]
            command += ["--threads", str(args.threads)] if args.threads else []
            command += ["--device", str(device)]
            if implementation == "r9y9":
                result = r9y9.run(command)
            else:
                result = subprocess.run(
                    [sys.executable, *command], capture_output=True, text=True, timeout=600
                )
            if result.returncode != 0:
                raise SystemExit(f"{implementation} measurement failed: {result.stderr[-2000:]}")
            r = json.loads(result.stdout.strip().splitlines()[-1])
            runs[implementation, kernel, batch].append(r)
            print(
                f"round {round_ + 1}/{args.rounds}: {implementation} kernel {kernel} batch "
                f"{batch}: {r['samples_per_second']:.1f} samples/s",
                flush=True,
            )

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
    parser.add_argument(
        "--cached-samples", type=int, default=16000, help="WaveNet samples per measurement"
    )
    parser.add_argument("--naive-samples", type=int, default=6)
    parser.add_argument("--r9y9-samples", type=int, default=320)
    parser.add_argument("--kernels", type=int, nargs="+", default=[3, 2])
    parser.add_argument("--rounds", type=int, default=5, help="WaveNet: median of this many")
    parser.add_argument(
        "--measure",
        nargs=4,
        metavar=("IMPLEMENTATION", "KERNEL", "BATCH", "STEPS"),
        help="internal: one WaveNet measurement in this process, printed as JSON",
    )
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
    if args.measure:
        implementation, kernel, batch, steps = args.measure
        r = measure_wavenet(implementation, int(kernel), int(batch), int(steps), device)
        print(json.dumps(r))
        return
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
