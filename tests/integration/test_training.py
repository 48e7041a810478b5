"""The one trainer, end to end on the stored sample corpora with params.yaml's tiny configs:
each family learns, resume is exact, SIGTERM leaves a checkpoint, DDP keeps replicas equal,
bad input is one clear line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from servers import kill_after_checkpoint

from wavefoundry.config import load_config
from wavefoundry.errors import INTERRUPTED_EXIT_CODE, PREEMPTED_EXIT_CODE
from wavefoundry.families.io import load_model
from wavefoundry.training import checkpoint
from wavefoundry.training.trainer import train

REPO = Path(__file__).resolve().parents[2]
PARAMS = REPO / "params.yaml"

pytestmark = pytest.mark.slow


def config(data: Path, tmp: Path, *overrides: str):
    return load_config(
        PARAMS,
        overrides=[
            f"paths.data={data}",
            f"paths.runs={tmp / 'runs'}",
            f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}",
            f"tracking.artifact_location={tmp / 'mlartifacts'}",
            "training.per_family=null",  # every family as long as training.steps says
            *overrides,
        ],
    )


def cli(tmp: Path, data: Path, *args: str, **popen) -> subprocess.Popen:
    command = [sys.executable, "-m", "wavefoundry.cli", *args, "--params", str(PARAMS)]
    command += ["--set", f"paths.data={data}", "--set", f"paths.runs={tmp / 'runs'}"]
    command += ["--set", f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}"]
    command += ["--set", f"tracking.artifact_location={tmp / 'mlartifacts'}"]
    command += ["--set", "training.per_family=null"]
    return subprocess.Popen(
        command, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen
    )


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


@pytest.mark.parametrize(
    ("model", "dataset"),
    [
        ("wavenet", "ljspeech"),
        ("hifigan", "ljspeech"),
        ("vqvae", "vctk"),
        ("wavegan", "nsynth"),
        ("samplernn", "nsynth"),
        ("tacotron2", "vctk"),
        ("waveglow", "ljspeech"),
        ("vae", "vctk"),
        ("vocos", "ljspeech"),
    ],
)
def test_each_family_trains_on_its_sample_corpus_and_its_loss_falls(
    stored_samples: Path, tmp_path: Path, model: str, dataset: str
) -> None:
    # A 40-step voice seldom stops: its validation sentences would run to the 300-step limit
    # (14 s of frames each), which this test of the loss does not look at.
    shorter = ["models.tacotron2.max_decoder_steps=40"] if model == "tacotron2" else []
    cfg = config(stored_samples, tmp_path, *shorter)
    history: list[dict[str, float]] = []
    result = train(cfg, model, dataset, on_step=lambda step, losses: history.append(losses))
    assert result.steps == cfg.training.steps == len(history)
    losses = [h["loss"] for h in history]
    window = max(3, len(losses) // 5)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert mean(losses[-window:]) < mean(losses[:window]), losses
    assert (result.model_dir / "model.safetensors").is_file()
    if model == "vqvae":
        # The acceptance point for VQ-VAE: codebook in use, reconstructions better than at first.
        assert history[-1]["codebook_usage"] > 0.5, history[-1]
        assert history[-1]["snr_db"] > history[0]["snr_db"], (history[0], history[-1])
    if model == "vae":
        # The acceptance point for the VAE: reconstructions better than at first, while the
        # KL weight warms up from 0.
        snr = [h["snr_db"] for h in history]
        assert mean(snr[-window:]) > mean(snr[:window]) + 1.0, snr
        assert history[0]["beta"] == 0.0 < history[-1]["beta"]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path / "model.safetensors")


@pytest.mark.parametrize(
    ("model", "dataset"),
    [
        ("wavegan", "nsynth"),
        ("vqvae", "vctk"),
        ("samplernn", "vctk"),
        ("tacotron2", "ljspeech"),
        ("waveglow", "ljspeech"),
        ("vae", "vctk"),
        ("vocos", "ljspeech"),
    ],
)
def test_resume_after_a_kill_gives_bitwise_identical_weights(
    stored_samples: Path, tmp_path: Path, model: str, dataset: str
) -> None:
    # Two steps each side of the kill: the optimizer's moments, the RNG and the sampler's place
    # are all carried across it (Tacotron 2 on LJ Speech costs seconds a step on 2 cores).
    steps, half = 4, 2
    common = (
        f"training.steps={steps}",
        f"training.checkpoint_every={half}",
        "training.keep_checkpoints=10",
        "training.validate_every=1000",
    )
    straight = train(config(stored_samples, tmp_path / "straight", *common), model, dataset)

    interrupted = tmp_path / "interrupted"
    interrupted.mkdir()
    sets = [arg for item in common for arg in ("--set", item)]
    process = cli(interrupted, stored_samples, "train", "-m", model, "-d", dataset, *sets)
    checkpoints = interrupted / "runs" / f"{dataset}-{model}" / "checkpoints"
    kill_after_checkpoint(process, checkpoints, half)

    resumed = train(config(stored_samples, interrupted, *common), model, dataset, resume=True)
    assert resumed.steps == steps
    final = f"step-{steps:08d}"
    a = _weights(straight.run_dir / "checkpoints" / final)
    b = _weights(resumed.run_dir / "checkpoints" / final)
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"
    # And training did something: the weights moved from the half-way point.
    half_way = _weights(checkpoints / f"step-{half:08d}")
    assert any(not torch.equal(half_way[k], b[k]) for k in b)


# Ctrl-C once ended training with no checkpoint of the steps since the last one.
@pytest.mark.parametrize(
    ("sent", "exit_code", "said"),
    [
        (signal.SIGTERM, PREEMPTED_EXIT_CODE, "SIGTERM"),
        (signal.SIGINT, INTERRUPTED_EXIT_CODE, "Ctrl-C (SIGINT)"),
    ],
)
def test_sigterm_or_ctrl_c_mid_run_saves_a_loadable_checkpoint_and_exits_cleanly(
    stored_samples: Path, tmp_path: Path, sent: signal.Signals, exit_code: int, said: str
) -> None:
    process = cli(
        tmp_path,
        stored_samples,
        "train",
        "-m",
        "hifigan",
        "-d",
        "ljspeech",
        "--steps",
        "100000",
        "--set",
        "training.checkpoint_every=2",
        "--set",
        "training.validate_every=100000",
    )
    checkpoints = tmp_path / "runs" / "ljspeech-hifigan" / "checkpoints"
    deadline = time.monotonic() + 240
    while not checkpoint.checkpoints(checkpoints):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(sent)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == exit_code, stderr
    assert "Traceback" not in stderr
    assert f"stopped by {said} at step" in stderr and "--resume" in stderr
    # Output that is no terminal gets progress lines in place of the bar.
    assert "step 1/100000" in stderr
    latest = checkpoint.checkpoints(checkpoints)[-1]
    step = int(stderr.split(f"stopped by {said} at step ")[1].split(";")[0])
    assert latest.name == f"step-{step:08d}"
    description, tensors, state = checkpoint.read_checkpoint(latest, "hifigan")
    assert description["step"] == state["step"] == step
    family, generator = load_model(latest)
    mel = torch.zeros(1, family.config.n_mels, 4)
    assert generator(mel).shape[-1] == 4 * family.config.hop_length


@pytest.mark.parametrize("model", ["vqvae", "hifigan"])
def test_ddp_two_cpu_processes_end_with_identical_weights(
    stored_samples: Path, tmp_path: Path, model: str
) -> None:
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WAVEFOUNDRY_TEST_OUT": str(tmp_path)}
    dataset = "vctk" if model == "vqvae" else "ljspeech"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(_free_port()),
        str(worker),
        str(PARAMS),
        str(stored_samples),
        model,
        dataset,
    ]
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rank0, rank1 = (load_file(tmp_path / f"rank{r}.safetensors") for r in (0, 1))
    initial = load_file(tmp_path / "initial.safetensors")
    assert rank0.keys() == rank1.keys()
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    assert any(not torch.equal(rank0[k], initial[k]) for k in rank0), "no step was taken"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_weight_ema_is_what_gets_exported(stored_samples: Path, tmp_path: Path) -> None:
    cfg = config(stored_samples, tmp_path, "training.steps=3", "training.ema_decay=0.5")
    result = train(cfg, "wavegan", "nsynth")
    final = _weights(result.run_dir / "checkpoints" / "step-00000003")
    exported = _weights(result.model_dir)
    assert exported.keys() == {k.removeprefix("ema.") for k in final if k.startswith("ema.")}
    assert all(torch.equal(exported[k], final[f"ema.{k}"]) for k in exported)
    assert any(not torch.equal(exported[k], final[k]) for k in exported), "EMA equals raw weights"
