"""Training throughput of every family: segments (and seconds of audio) per second.

    uv run python bench/train.py [--sizes tiny|recipe] [--device cpu|cuda] [--steps 10]

Each family takes `--steps` timed optimisation steps (after 2 warm-up steps) through the
same `Family.train_step` + `Stepper` the trainer uses, on a batch shaped like the stored
data (random speech-band audio), so data loading is not counted. `tiny` is params.yaml's
configs (what CI and `make demo` train); `recipe` is configs/*.yaml, the papers' sizes, for
a GPU. Writes bench/results/train-<sizes>-<device>.json.
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

from wavefoundry.config import load_config, model_config
from wavefoundry.data.segments import collate_segments
from wavefoundry.data.stored import DataSpec
from wavefoundry.families.registry import get_family
from wavefoundry.training.step import Stepper

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
# family -> (dataset, sample rate, recipe)
RUNS = {
    "wavenet": ("ljspeech", 22050, "ljspeech-wavenet.yaml"),
    "hifigan": ("ljspeech", 22050, "ljspeech-hifigan-v1.yaml"),
    "vqvae": ("vctk", 48000, "vctk-vqvae.yaml"),
    "wavegan": ("nsynth", 16000, "nsynth-wavegan.yaml"),
    "vocos": ("ljspeech", 22050, "ljspeech-vocos.yaml"),
}


def synthetic_batch(spec: DataSpec, batch_size: int, length: int) -> dict:
    """Items like SegmentDataset's: harmonic audio plus the dataset's conditioning columns."""
    generator = torch.Generator().manual_seed(0)
    t = torch.arange(length) / spec.sample_rate
    items = []
    for i in range(batch_size):
        f0 = 100 + 150 * torch.rand(1, generator=generator)
        audio = sum(torch.sin(2 * torch.pi * f0 * h * t) / h for h in range(1, 6)) * 0.2
        item = {"audio": audio.float(), "clip_id": f"clip{i}"}
        if spec.speakers:
            item["speaker"] = spec.speakers[i % len(spec.speakers)]
        if spec.dataset == "nsynth":
            item |= {"pitch": 48 + i, "instrument_family": i % 11, "velocity": 100}
        items.append(item)
    return collate_segments(items)


def bench_family(name: str, sizes: str, device: torch.device, steps: int, batch: int | None):
    dataset, sample_rate, recipe = RUNS[name]
    cfg = load_config(
        ROOT / "params.yaml", ROOT / "configs" / recipe if sizes == "recipe" else None
    )
    family_class = get_family(name)
    speakers = ("p225", "p226", "p227", "p228") if dataset == "vctk" else ()
    spec = DataSpec(dataset, sample_rate, speakers)
    family = family_class(model_config(cfg, name, family_class.config_class), spec)
    batch_size = batch or cfg.training.batch_size
    torch.manual_seed(0)
    nets = {k: v.to(device).train() for k, v in family.build().items()}
    stepper = Stepper(family.optimizers(nets), device, cfg.training.amp, cfg.training.grad_clip)
    prepared = family.prepare(synthetic_batch(spec, batch_size, family.segment_length), device)
    for _ in range(2):
        family.train_step(nets, prepared, stepper)
        stepper.finish()
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        family.train_step(nets, prepared, stepper)
        stepper.finish()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    parameters = sum(p.numel() for net in nets.values() for p in net.parameters())
    return {
        "family": name,
        "dataset": dataset,
        "parameters": parameters,
        "batch_size": batch_size,
        "segment_length": family.segment_length,
        "step_seconds": seconds / steps,
        "segments_per_second": steps * batch_size / seconds,
        "audio_seconds_per_second": steps
        * batch_size
        * family.segment_length
        / sample_rate
        / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", choices=["tiny", "recipe"], default="tiny")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per family")
    parser.add_argument("--batch-size", type=int, help="default: the config's training.batch_size")
    parser.add_argument("--family", action="append", choices=list(RUNS), help="default: all")
    args = parser.parse_args()

    device = torch.device(args.device)
    rows = [
        bench_family(name, args.sizes, device, args.steps, args.batch_size)
        for name in args.family or RUNS
    ]
    table = Table(title=f"training throughput, {args.sizes} configs on {device}")
    for column in ("family", "params", "batch x segment", "s/step", "segments/s", "audio s/s"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(
            r["family"],
            f"{r['parameters'] / 1e6:.2f} M",
            f"{r['batch_size']} x {r['segment_length']}",
            f"{r['step_seconds']:.3f}",
            f"{r['segments_per_second']:.1f}",
            f"{r['audio_seconds_per_second']:.1f}",
        )
    Console().print(table)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"train-{args.sizes}-{device.type}.json"
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    out.write_text(
        json.dumps(
            {"device": machine, "threads": torch.get_num_threads(), "results": rows}, indent=2
        )
        + "\n"
    )
    print(f"written {out}")


if __name__ == "__main__":
    main()
