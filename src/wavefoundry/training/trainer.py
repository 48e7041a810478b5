"""The one training loop. A family (family.py) says what a step is; this file says how steps
are run: devices, DDP, AMP, clipping, LR schedules, weight EMA, validation, checkpoints,
exact resume, SIGTERM, and MLflow.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import shutil
import signal
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from wavefoundry import tracking
from wavefoundry.config import DATASETS, Config, TrainingConfig, model_config
from wavefoundry.data.segments import (
    SegmentDataset,
    UtteranceDataset,
    collate_segments,
    collate_utterances,
)
from wavefoundry.data.stored import split_dir, stored_dataset
from wavefoundry.errors import (
    INTERRUPTED_EXIT_CODE,
    PREEMPTED_EXIT_CODE,
    Preempted,
    UserError,
)
from wavefoundry.evaluation.voice import Voice, voice_for
from wavefoundry.families import io as model_io
from wavefoundry.families.base import Family, unwrap
from wavefoundry.families.registry import get_family
from wavefoundry.progress import progress_bar
from wavefoundry.tracking import Tracker, flatten
from wavefoundry.training import checkpoint
from wavefoundry.training.data import ResumableSampler, loader
from wavefoundry.training.step import Stepper, choose_device


@dataclass
class TrainResult:
    run_dir: Path
    model_dir: Path
    steps: int
    metrics: dict[str, float]  # the last logged training metrics
    validation: dict[str, float]
    run_id: str | None
    model_uri: str | None
    seconds: float

    def as_record(self) -> dict[str, Any]:
        """What `train --out` writes and a pipeline task reads back (JSON)."""
        return {
            "run_id": self.run_id,
            "model_uri": self.model_uri,
            "model_dir": str(self.model_dir.resolve()),
            "steps": self.steps,
            "seconds": round(self.seconds, 3),
            "metrics": {**self.metrics, **self.validation},
        }


@dataclass
class Distributed:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> Distributed:
        """torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; a plain process is rank 0 of 1."""
        env = os.environ
        return cls(
            int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env.get("WORLD_SIZE", 1))
        )


def resolve_family(cfg: Config, model: str, dataset: str) -> tuple[type[Family], Any]:
    """The family class and its validated config; one clear error for a bad name or pairing."""
    family_class = get_family(model)
    if dataset not in DATASETS:
        raise UserError(f"unknown dataset '{dataset}': choose from {', '.join(DATASETS)}")
    if dataset not in family_class.datasets:
        raise UserError(
            f"{model} does not train on {dataset} (it trains on: {', '.join(family_class.datasets)})"
        )
    return family_class, model_config(cfg, model, family_class.config_class)


def lr_lambda(training: TrainingConfig) -> Callable[[int], float]:
    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / training.warmup_steps) if training.warmup_steps else 1.0
        if training.lr_schedule == "exponential":
            return warm * training.lr_decay**step
        if training.lr_schedule == "cosine":
            progress = min(1.0, step / max(1, training.steps))
            floor = training.min_lr_ratio
            return warm * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))
        return warm

    return factor


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except OSError:
        return ""
    return out.stdout.strip()


@contextmanager
def signals_request_stop() -> Iterator[dict[str, str]]:
    """While inside, SIGTERM or a first SIGINT (Ctrl-C) sets flag["stop"] to the signal's
    name instead of ending the process, so training saves a checkpoint at the end of the step
    and stops; a second Ctrl-C stops at once (KeyboardInterrupt)."""
    flag = {"stop": ""}

    def handler(signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and flag["stop"]:
            raise KeyboardInterrupt
        flag["stop"] = signal.Signals(signum).name

    try:
        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    except ValueError:  # not the main thread: leave signals alone
        yield flag
        return
    try:
        yield flag
    finally:
        for sig, handler_before in previous.items():
            signal.signal(sig, handler_before)


class Trainer:
    def __init__(self, cfg: Config, model: str, dataset: str):
        self.cfg, self.training = cfg, cfg.training.for_family(model)
        family_class, model_cfg = resolve_family(cfg, model, dataset)
        self.data_spec, self.data_version = stored_dataset(cfg, dataset)
        self.family: Family = family_class(model_cfg, self.data_spec)
        self.family.resolve(cfg.tracking)
        self.run_dir = cfg.paths.run(dataset, model)
        self.dist = Distributed.from_environment()
        self.device = self._device()
        self.train_set, self.valid_set = self._datasets(cfg, dataset)
        # At least one full batch per rank per epoch, however few clips there are.
        self.train_set.items = max(
            len(self.train_set.index), self.training.batch_size * self.dist.world_size
        )
        self.collate = collate_utterances if self.family.utterances else collate_segments
        self.voice: Voice | None = None  # what voices an acoustic model's validation audio

    def _datasets(self, cfg: Config, dataset: str) -> tuple[SegmentDataset, SegmentDataset]:
        """Random segments (or whole clips, for a family that reads `utterances`) of the train
        split; the valid split's from their starts, fixed."""
        train, valid = split_dir(cfg, dataset, "train"), split_dir(cfg, dataset, "valid")
        seg, seed = self.family.segment_length, self.training.seed
        if self.family.utterances:
            return UtteranceDataset(train, seg), UtteranceDataset(valid, seg)
        random_offset = self.family.random_offset
        return (
            SegmentDataset(train, seg, seed=seed, items=None, random_offset=random_offset),
            SegmentDataset(valid, seg, seed=seed + 1, random_offset=random_offset),
        )

    def _device(self) -> torch.device:
        if choose_device(self.training.device, "training.device").type == "cpu":
            return torch.device("cpu")
        torch.cuda.set_device(self.dist.local_rank)
        return torch.device("cuda", self.dist.local_rank)

    # --- the run ---------------------------------------------------------------------------

    def train(
        self,
        resume: bool = False,
        on_step: Callable[[int, dict[str, float]], None] | None = None,
        on_start: Callable[[dict[str, nn.Module]], Any] | None = None,
    ) -> TrainResult:
        """Run to `training.steps`. `on_start(nets)` sees the networks before the first step,
        `on_step(step, losses)` each step's loss terms; afterwards `self.nets` holds the
        (unwrapped) networks as they ended."""
        started = time.perf_counter()
        if self.dist.world_size > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        state = self._fresh_state()
        latest = checkpoint.checkpoints(self.run_dir / "checkpoints")
        if resume and latest:
            state.restore(latest[-1], self.family.name, self.device)
            self._check_resume(state, latest[-1])
        elif latest and self.dist.main:
            for old in latest:  # a fresh run replaces old checkpoints rather than mixing with them
                shutil.rmtree(old)
        if on_start:
            on_start(state.nets)
        self.nets = state.nets
        nets = self._parallel(state.nets)
        tracker = self._tracker(state.run_id) if self.dist.main else None
        state.run_id = tracker.run_id if tracker else None
        training, status = self.training, "FAILED"
        metrics: dict[str, float] = {}
        validation: dict[str, float] = {}
        last_log = (time.perf_counter(), state.stepper.step)
        try:
            with (
                signals_request_stop() as stop,
                progress_bar(
                    f"training {self.family.name} on {self.data_spec.dataset}", training.steps
                ) as advance,
            ):
                advance(state.stepper.step)
                for raw in self._batches(state):
                    losses = self._step(state, nets, raw)
                    step = state.stepper.step
                    advance(1)
                    if on_step:
                        on_step(step, losses)
                    last = step == training.steps
                    if step % training.log_every == 0 or last:
                        metrics = self._step_metrics(state, losses, last_log)
                        last_log = (time.perf_counter(), step)
                        if tracker:
                            tracker.log_metrics(metrics, step)
                    if step % training.validate_every == 0 or last:
                        validation = self._validate(nets, state.ema, tracker, step)
                    if step % training.checkpoint_every == 0 or last or stop["stop"]:
                        saved = self._checkpoint(state)
                    if stop["stop"]:
                        status = "KILLED"
                        interrupted = stop["stop"] == "SIGINT"
                        raise Preempted(
                            f"stopped by {'Ctrl-C (SIGINT)' if interrupted else 'SIGTERM'} at "
                            f"step {step}; checkpoint {saved}; run again with --resume to "
                            "continue",
                            INTERRUPTED_EXIT_CODE if interrupted else PREEMPTED_EXIT_CODE,
                        )
            model_dir = self.run_dir / "model"
            model_uri = self._export(state, model_dir, tracker)
            status = "FINISHED"
        finally:
            if tracker:
                tracker.end(status)
            if self.dist.world_size > 1 and dist.is_initialized():
                dist.destroy_process_group()
        seconds = time.perf_counter() - started
        return TrainResult(
            self.run_dir, model_dir, state.stepper.step, metrics, validation, state.run_id,
            model_uri, seconds,
        )  # fmt: skip

    def _check_resume(self, state: TrainingState, folder: Path) -> None:
        """Raises UserError when resuming from `folder` has nothing to train: its step is past
        `training.steps`, or is that step and its MLflow run finished (a resume then logged one
        more model into a finished run, perhaps a champion's). At that step with the run not
        finished (stopped while exporting), the resume exports the model."""
        step, steps = state.stepper.step, self.training.steps
        again = f"give --steps above {step} to train on from it, or leave out --resume"
        if step > steps:
            raise UserError(f"{folder} is at step {step}, past training.steps {steps}: {again}")
        if step == steps and state.run_id:
            import mlflow

            tracking.connect(self.cfg.tracking)
            if mlflow.get_run(state.run_id).info.status == "FINISHED":
                raise UserError(
                    f"MLflow run {state.run_id} finished at step {step} already ({folder}): "
                    + again
                )

    def _fresh_state(self) -> TrainingState:
        torch.manual_seed(self.training.seed)
        nets = {name: net.to(self.device) for name, net in self.family.build().items()}
        optimizers = self.family.optimizers(nets)
        schedulers = {
            name: torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(self.training))
            for name, opt in optimizers.items()
        }
        inference = self.family.inference_net
        ema = (
            {inference: copy.deepcopy(nets[inference]).requires_grad_(False)}
            if self.training.ema_decay
            else {}
        )
        stepper = Stepper(optimizers, self.device, self.training.amp, self.training.grad_clip)
        return TrainingState(nets, ema, optimizers, schedulers, stepper)

    def _parallel(self, nets: dict[str, nn.Module]) -> dict[str, nn.Module]:
        if self.dist.world_size == 1:
            return nets
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return {
            name: nn.parallel.DistributedDataParallel(net, device_ids=device_ids)
            for name, net in nets.items()
        }

    def _batches(self, state: TrainingState) -> Iterator[dict[str, Any]]:
        """Raw batches until `training.steps`, epoch after epoch, from the state's position."""
        lengths = None
        if isinstance(self.train_set, UtteranceDataset):  # bucketed by length
            clips = len(self.train_set.lengths)
            lengths = self.train_set.lengths[np.arange(len(self.train_set)) % clips]
        sampler = ResumableSampler(
            len(self.train_set),
            self.training.seed,
            self.dist.rank,
            self.dist.world_size,
            lengths,
            self.training.batch_size,
        )
        per_epoch = len(sampler) // self.training.batch_size
        while state.stepper.step < self.training.steps:
            if state.position >= per_epoch:
                state.epoch, state.position = state.epoch + 1, 0
            self.train_set.set_epoch(state.epoch)
            sampler.set_position(state.epoch, state.position * self.training.batch_size)
            batches = loader(
                self.train_set,
                self.training.batch_size,
                sampler,
                self.training.num_workers,
                self.training.seed + state.epoch,
                self.collate,
            )
            for raw in batches:
                yield raw
                if state.stepper.step >= self.training.steps:
                    return

    def _step(
        self, state: TrainingState, nets: dict[str, nn.Module], raw: dict[str, Any]
    ) -> dict[str, float]:
        for net in nets.values():
            net.train()
        batch = self.family.prepare(raw, self.device)
        losses = self.family.train_step(nets, batch, state.stepper)
        state.stepper.finish()
        for scheduler in state.schedulers.values():
            scheduler.step()
        self._update_ema(state.ema, nets)
        state.position += 1
        return losses

    def _step_metrics(
        self, state: TrainingState, losses: dict[str, float], last_log: tuple[float, int]
    ) -> dict[str, float]:
        elapsed = max(time.perf_counter() - last_log[0], 1e-9)
        segments = (state.stepper.step - last_log[1]) * self.training.batch_size
        return {
            **losses,
            **{f"grad_norm/{k}": v for k, v in state.stepper.grad_norms.items()},
            **{f"lr/{k}": s.get_last_lr()[0] for k, s in state.schedulers.items()},
            "samples_per_second": segments * self.dist.world_size / elapsed,
        }

    def _export(self, state: TrainingState, model_dir: Path, tracker: Tracker | None) -> str | None:
        """Write the inference network (its EMA when kept) to `model_dir`; log it to MLflow."""
        if not self.dist.main:
            return None
        inference = self.family.inference_net
        net = state.ema.get(inference, state.nets[inference])
        description = model_io.describe(self.family, self.data_version, state.stepper.step)
        model_io.export_model(model_dir, description, model_io.flat_state({inference: net}))
        return tracker.log_model(model_dir, self.family.name) if tracker else None

    # --- pieces ------------------------------------------------------------------------------

    def _tracker(self, run_id: str | None) -> Tracker:
        import mlflow.data

        family, data = self.family, self.data_spec
        tracker = Tracker(self.cfg.tracking, f"{data.dataset}-{family.name}", run_id=run_id)
        params = {
            "model": family.name,
            "dataset": data.dataset,
            "data_version": self.data_version,
            **flatten(self.training.model_dump(mode="json"), "training"),
            **flatten(dataclasses.asdict(family.config), f"models.{family.name}"),
        }
        with warnings.catch_warnings():
            # MLflow's notes on how it reads a local path and on integer columns: not for users.
            warnings.simplefilter("ignore", UserWarning)
            dataset = mlflow.data.from_pandas(
                self.train_set.index.drop(columns=["offset", "length"]),
                source=str(self.cfg.paths.processed(data.dataset).resolve()),
                name=data.dataset,
                digest=self.data_version[:36] or None,
            )
        tags = {
            tracking.TAG_FAMILY: family.name,
            tracking.TAG_DATASET: data.dataset,
            tracking.TAG_DATA_VERSION: self.data_version,
            tracking.TAG_GIT_COMMIT: git_commit(),
            **family.upstream(),
        }
        tracker.log_start(params, tags, dataset)
        return tracker

    def _update_ema(self, ema: dict[str, nn.Module], nets: dict[str, nn.Module]) -> None:
        decay = self.training.ema_decay
        for name, average in ema.items():
            with torch.no_grad():
                for mean, current in zip(
                    average.state_dict().values(),
                    unwrap(nets[name]).state_dict().values(),
                    strict=True,
                ):
                    if mean.dtype.is_floating_point:
                        mean.lerp_(current, 1 - decay)
                    else:
                        mean.copy_(current)

    def _validate(
        self,
        nets: dict[str, nn.Module],
        ema: dict[str, nn.Module],
        tracker: Tracker | None,
        step: int,
    ) -> dict[str, float]:
        """Mean validation losses over fixed valid-split batches, plus audio for the run.
        Rank 0 only; its randomness is forked so training's RNG stream is untouched."""
        if not self.dist.main:
            return {}
        plain = {name: unwrap(net) for name, net in nets.items()}
        plain.update(ema)
        for net in plain.values():
            net.eval()
        totals: dict[str, float] = {}
        batches = loader(
            self.valid_set, self.training.batch_size, None, 0, self.training.seed, self.collate
        )
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(self.training.seed)
            count = 0
            first = None
            for raw in batches:
                batch = self.family.prepare(raw, self.device)
                first = first or batch
                for key, value in self.family.evaluate(plain, batch).items():
                    totals[key] = totals.get(key, 0.0) + value
                count += 1
                if count >= self.training.validation_batches:
                    break
            means = {f"valid/{k}": v / count for k, v in totals.items()}
            if tracker and first is not None:
                tracker.log_metrics(means, step)
                if self.family.task == "acoustic":  # voiced as it would be served
                    voice = self._voice(tracker)
                    reference, generated = self.family.sample(plain, first, voice.vocode)
                else:
                    reference, generated = self.family.sample(plain, first)
                tracker.log_audio(step, self.data_spec.sample_rate, reference, generated)
                tracker.log_figures(step, self.family.figures(plain, first))
        return means

    def _voice(self, tracker: Tracker) -> Voice:
        """The vocoder champion of the dataset as it is now (Griffin-Lim when there is none),
        loaded again only when the champion changed; the run's `validation_vocoder` tag
        names it."""
        import mlflow

        client = mlflow.MlflowClient(self.cfg.tracking.uri)
        voice = voice_for(self.cfg, client, self.family, self.device, self.voice)
        if voice is not self.voice:
            tracker.set_tag(tracking.TAG_VALIDATION_VOCODER, voice.label)
            self.voice = voice
        return voice

    def _checkpoint(self, state: TrainingState) -> Path | None:
        """Rank 0 writes the state; every rank waits for it."""
        path = None
        if self.dist.main:
            description = model_io.describe(self.family, self.data_version, state.stepper.step)
            description["mlflow_run_id"] = state.run_id
            tensors, trainer_state = state.to_checkpoint(self.device)
            path = checkpoint.save_checkpoint(
                self.run_dir / "checkpoints",
                description,
                tensors,
                trainer_state,
                self.training.keep_checkpoints,
            )
        if self.dist.world_size > 1:
            dist.barrier()
        return path


@dataclass
class TrainingState:
    """Everything a checkpoint holds: the networks (unwrapped), their EMA, optimizers,
    schedulers, the stepper (step, grad scaler) and the data position."""

    nets: dict[str, nn.Module]
    ema: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, Any]
    stepper: Stepper
    epoch: int = 0
    position: int = 0  # batches of this epoch already taken
    run_id: str | None = None

    def to_checkpoint(self, device: torch.device) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {
            **model_io.flat_state(self.nets),
            **model_io.flat_state(self.ema, prefix="ema."),
        }
        trainer_state = {
            "step": self.stepper.step,
            "epoch": self.epoch,
            "position": self.position,
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "schedulers": {name: s.state_dict() for name, s in self.schedulers.items()},
            "scaler": self.stepper.scaler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            },
        }
        return tensors, trainer_state

    def restore(self, path: Path, family: str, device: torch.device) -> None:
        description, tensors, state = checkpoint.read_checkpoint(path, family)
        model_io.load_flat_state(self.nets, tensors)
        model_io.load_flat_state(self.ema, tensors, prefix="ema.")
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
            self.schedulers[name].load_state_dict(state["schedulers"][name])
        self.stepper.scaler.load_state_dict(state["scaler"])
        self.stepper.step = int(state["step"])
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        torch.set_rng_state(state["rng"]["torch"])
        if device.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"], device)
        self.run_id = description.get("mlflow_run_id")


def train(
    cfg: Config,
    model: str,
    dataset: str,
    resume: bool = False,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train `model` on the stored `dataset` for `training.steps` steps; see Trainer."""
    return Trainer(cfg, model, dataset).train(resume=resume, on_step=on_step)
