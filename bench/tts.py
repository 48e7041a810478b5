"""Text to speech on this CPU: attention-alignment steps, and /synthesize's time to first audio
and real-time factor for a 10-word and a 40-word sentence.

    uv run python bench/tts.py [--steps 400] [--check-every 100] [--requests 3]

In a scratch folder: the LJ Speech sample corpus is prepared, a tiny HiFi-GAN (the vocoder
champion) and the tiny Tacotron 2 of configs/tiny.yaml are trained (Tacotron 2 for `--steps`,
a checkpoint every `--check-every`), each checkpoint's free-running attention on the test
split's sentences scored (focus rate, monotonic, stop token fired); then both are scored,
promoted, built into the voice Bento and served by `bentoml serve`, and `--requests`
POST /synthesize requests per sentence are timed (the first audio byte, the whole WAV).
Prints the tables and writes bench/results/tts-cpu.json. Timings on a shared machine are
inflated by the other load; the script prints the load average beside them.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import pandas as pd
import requests
import soundfile as sf
from rich.console import Console
from rich.table import Table
from serve import start_bento, wavefoundry  # bench/serve.py: the CLI in a scratch folder

RESULTS = Path(__file__).parent / "results"
TEN_WORDS = "The keeper of the prison was examined by the great commission."
FORTY_WORDS = (
    "The printing press was kept in a small room under the old chapel, and the workmen who "
    "came in the morning were told to wait by the gate until the sheriff had seen their "
    "papers, which took a long time because the keeper was careful with every one of them."
)


def alignment_steps(workdir: Path) -> list[dict]:
    """Per checkpoint: the held-out sentences' mean focus rate, the share that are
    monotonic, and the share whose stop token fired."""
    from wavefoundry.evaluation.metrics import attention_focus_rate, attention_is_monotonic
    from wavefoundry.families.io import load_model

    test = pd.read_parquet(workdir / "data/processed/ljspeech/test/index.parquet")
    rows = []
    folder = workdir / "runs/ljspeech-tacotron2/checkpoints"
    for checkpoint in sorted(folder.iterdir()):
        family, net = load_model(checkpoint)
        focus, monotonic, stopped = [], [], []
        for text in test["normalized_text"]:
            out = family.text_to_mel(net, str(text))
            focus.append(attention_focus_rate(out.alignments[0]))
            monotonic.append(attention_is_monotonic(out.alignments[0]))
            stopped.append(int(out.steps[0]) < family.config.max_decoder_steps)
        step = int(checkpoint.name.removeprefix("step-"))
        rows.append(
            {
                "step": step,
                "focus": statistics.mean(focus),
                "monotonic": statistics.mean(monotonic),
                "stopped": statistics.mean(stopped),
            }
        )
    return rows


def time_request(url: str, text: str) -> tuple[float, float, float]:
    """(seconds to the first byte of audio, seconds to the whole WAV, seconds of audio)."""
    begun = time.perf_counter()
    with requests.post(url + "/synthesize", json={"text": text}, timeout=600, stream=True) as r:
        r.raise_for_status()
        chunks = r.iter_content(chunk_size=4096)
        first = next(chunks)
        first_at = time.perf_counter() - begun
        body = first + b"".join(chunks)
    total = time.perf_counter() - begun
    audio, rate = sf.read(io.BytesIO(body))
    return first_at, total, len(audio) / rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)  # the tiny recipe's
    parser.add_argument("--check-every", type=int, default=100)
    parser.add_argument("--requests", type=int, default=3)
    args = parser.parse_args()
    console = Console()
    figures: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs"}

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        os.environ["BENTOML_HOME"] = str(workdir / "bentoml")
        common = ["promotion.max_real_time_factor=100"]
        own = "training.per_family.tacotron2"  # the tiny recipe's run (cosine) at --steps
        taco = [
            *common,
            f"{own}.steps={args.steps}",
            f"{own}.checkpoint_every={args.check_every}",
            f"{own}.keep_checkpoints={args.steps // args.check_every + 1}",
            f"{own}.validate_every=100000",
        ]

        def flags(settings: list[str]) -> list[str]:
            return [part for setting in settings for part in ("--set", setting)]

        wavefoundry(workdir, "sample-data", "-d", "ljspeech")
        wavefoundry(workdir, "prepare", "-d", "ljspeech")
        for model, settings in (("hifigan", common), ("tacotron2", taco)):
            begun, cpu = time.perf_counter(), os.times()
            wavefoundry(workdir, "train", "-m", model, "-d", "ljspeech", *flags(settings))
            after = os.times()
            figures[f"{model}_train_s"] = time.perf_counter() - begun
            figures[f"{model}_train_cpu_min"] = (after.children_user - cpu.children_user) / 60
            wavefoundry(workdir, "evaluate", "-m", model, "-d", "ljspeech", *flags(settings))
        figures["alignment"] = alignment_steps(workdir)
        aligned = [
            row["step"]
            for row in figures["alignment"]
            if row["focus"] >= 0.5 and row["monotonic"] == 1.0 and row["stopped"] == 1.0
        ]
        figures["alignment_step"] = aligned[0] if aligned else None
        for name in ("wavefoundry-ljspeech-vocoder", "wavefoundry-ljspeech-tts"):
            wavefoundry(workdir, "promote", "--model-name", name, *flags(common))
        built = wavefoundry(workdir, "bento", "build", "--model-name", "wavefoundry-ljspeech-tts")
        tag = built.strip().splitlines()[-1]
        server, url = start_bento(tag, wait_seconds=300)
        try:
            time_request(url, "Warm up.")
            for label, text in (("10 words", TEN_WORDS), ("40 words", FORTY_WORDS)):
                runs = [time_request(url, text) for _ in range(args.requests)]
                first = statistics.median(r[0] for r in runs)
                total = statistics.median(r[1] for r in runs)
                seconds = statistics.median(r[2] for r in runs)
                figures[label] = {
                    "time_to_first_audio_s": first,
                    "total_s": total,
                    "audio_s": seconds,
                    "rtf": total / seconds,
                }
        finally:
            server.terminate()
            server.wait(timeout=30)
    figures["load_average"] = os.getloadavg()

    table = Table(title="alignment on the test split's sentences (tiny Tacotron 2)")
    for column in ("step", "focus", "monotonic", "stopped"):
        table.add_column(column, justify="right")
    for row in figures["alignment"]:
        table.add_row(
            str(row["step"]), *(f"{row[k]:.2f}" for k in ("focus", "monotonic", "stopped"))
        )
    console.print(table)
    console.print(
        f"aligned (focus >= 0.5, monotonic, stopped) at step {figures['alignment_step']}; "
        f"Tacotron 2 trained in {figures['tacotron2_train_cpu_min']:.1f} CPU minutes"
    )
    table = Table(title=f"POST /synthesize, median of {args.requests}")
    for column in ("sentence", "time to first audio s", "total s", "audio s", "RTF"):
        table.add_column(column, justify="right")
    for label in ("10 words", "40 words"):
        f = figures[label]
        table.add_row(
            label,
            *(f"{f[k]:.3f}" for k in ("time_to_first_audio_s", "total_s", "audio_s", "rtf")),
        )
    console.print(table)
    console.print(f"load average during the run: {figures['load_average']}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tts-cpu.json").write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
