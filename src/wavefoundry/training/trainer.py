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

import torch
import torch.distributed as dist
from torch import nn

from wavefoundry.config import DATASETS, Config, TrainingConfig, model_config
from wavefoundry.data.segments import SegmentDataset
from wavefoundry.errors import UserError
from wavefoundry.models.registry import get_family
from wavefoundry.progress import progress_bar
from wavefoundry.training import checkpoint
from wavefoundry.training.data import ResumableSampler, loader, split_dir, stored_dataset
from wavefoundry.training.family import Family, unwrap
from wavefoundry.training.step import Stepper
from wavefoundry.training.tracking import Tracker, flatten

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM, what schedulers expect from a preempted task


class Preempted(Exception):
    """SIGTERM arrived; a checkpoint was saved. Carries the message for the user."""


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
def sigterm_requests_stop() -> Iterator[dict[str, bool]]:
    """While inside, SIGTERM sets flag["stop"] instead of killing the process."""
    flag = {"stop": False}

    def handler(signum: int, frame: Any) -> None:
        flag["stop"] = True

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)


class Trainer:
    def __init__(self, cfg: Config, model: str, dataset: str):
        self.cfg, self.training = cfg, cfg.training
        family_class, model_cfg = resolve_family(cfg, model, dataset)
        self.data_spec, self.data_version = stored_dataset(cfg, dataset)
        self.family: Family = family_class(model_cfg, self.data_spec)
        self.run_dir = cfg.paths.run(dataset, model)
        self.dist = Distributed.from_environment()
        self.device = self._device()
        seg = self.family.segment_length
        self.train_set = SegmentDataset(
            split_dir(cfg, dataset, "train"),
            seg,
            seed=self.training.seed,
            items=None,
            random_offset=self.family.random_offset,
        )
        # At least one full batch per rank per epoch, however few clips there are.
        self.train_set.items = max(
            len(self.train_set.index), self.training.batch_size * self.dist.world_size
        )
        self.valid_set = SegmentDataset(
            split_dir(cfg, dataset, "valid"),
            seg,
            seed=self.training.seed + 1,
            random_offset=self.family.random_offset,
        )

    def _device(self) -> torch.device:
        wanted = self.training.device
        if wanted == "cuda" and not torch.cuda.is_available():
            raise UserError("training.device is cuda but no CUDA device is visible")
        if wanted == "cpu" or not torch.cuda.is_available():
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
        torch.manual_seed(self.training.seed)
        nets = {name: net.to(self.device) for name, net in self.family.build().items()}
        optimizers = self.family.optimizers(nets)
        schedulers = {
            name: torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(self.training))
            for name, opt in optimizers.items()
        }
        stepper = Stepper(optimizers, self.device, self.training.amp, self.training.grad_clip)
        inference = self.family.inference_net
        ema = (
            {inference: copy.deepcopy(nets[inference]).requires_grad_(False)}
            if self.training.ema_decay
            else {}
        )
        sampler = ResumableSampler(
            len(self.train_set), self.training.seed, self.dist.rank, self.dist.world_size
        )
        batches_per_epoch = len(sampler) // self.training.batch_size
        run_id = None
        checkpoints_dir = self.run_dir / "checkpoints"
        latest = checkpoint.checkpoints(checkpoints_dir)
        if resume and latest:
            description, tensors, state = checkpoint.read_checkpoint(latest[-1], self.family.name)
            checkpoint.load_flat_state(nets, tensors)
            checkpoint.load_flat_state(ema, tensors, prefix="ema.")
            for name, opt in optimizers.items():
                opt.load_state_dict(state["optimizers"][name])
                schedulers[name].load_state_dict(state["schedulers"][name])
            stepper.scaler.load_state_dict(state["scaler"])
            stepper.step = int(state["step"])
            epoch, position = int(state["epoch"]), int(state["position"])
            torch.set_rng_state(state["rng"]["torch"])
            if self.device.type == "cuda" and state["rng"].get("cuda") is not None:
                torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
            run_id = description.get("mlflow_run_id")
        else:
            if checkpoints_dir.exists() and self.dist.main:
                for old in checkpoint.checkpoints(checkpoints_dir):
                    # A fresh run replaces the old one's checkpoints rather than mixing with them.
                    shutil.rmtree(old)
            epoch, position = 0, 0
        if on_start:
            on_start(nets)
        self.nets = nets
        if self.dist.world_size > 1:
            nets = {
                name: nn.parallel.DistributedDataParallel(
                    net, device_ids=[self.device.index] if self.device.type == "cuda" else None
                )
                for name, net in nets.items()
            }

        tracker = self._tracker(run_id) if self.dist.main else None
        run_id = tracker.run_id if tracker else None
        metrics: dict[str, float] = {}
        validation: dict[str, float] = {}
        status = "FAILED"
        last_log = (time.perf_counter(), stepper.step)
        try:
            with (
                sigterm_requests_stop() as stop,
                progress_bar(
                    f"training {self.family.name} on {self.data_spec.dataset}", self.training.steps
                ) as advance,
            ):
                advance(stepper.step)
                while stepper.step < self.training.steps:
                    if position >= batches_per_epoch:
                        epoch, position = epoch + 1, 0
                    self.train_set.set_epoch(epoch)
                    sampler.set_position(epoch, position * self.training.batch_size)
                    batches = loader(
                        self.train_set,
                        self.training.batch_size,
                        sampler,
                        self.training.num_workers,
                        self.training.seed + epoch,
                    )
                    for raw in batches:
                        for net in nets.values():
                            net.train()
                        batch = self.family.prepare(raw, self.device)
                        losses = self.family.train_step(nets, batch, stepper)
                        stepper.finish()
                        for scheduler in schedulers.values():
                            scheduler.step()
                        self._update_ema(ema, nets)
                        position += 1
                        step = stepper.step
                        advance(1)
                        if on_step:
                            on_step(step, losses)
                        if step % self.training.log_every == 0 or step == self.training.steps:
                            now = time.perf_counter()
                            rate = (step - last_log[1]) * self.training.batch_size
                            rate *= self.dist.world_size / max(now - last_log[0], 1e-9)
                            last_log = (now, step)
                            metrics = {
                                **losses,
                                **{f"grad_norm/{k}": v for k, v in stepper.grad_norms.items()},
                                **{f"lr/{k}": s.get_last_lr()[0] for k, s in schedulers.items()},
                                "samples_per_second": rate,
                            }
                            if tracker:
                                tracker.log_metrics(metrics, step)
                        if step % self.training.validate_every == 0 or step == self.training.steps:
                            validation = self._validate(nets, ema, tracker, step)
                        if (
                            step % self.training.checkpoint_every == 0
                            or step == self.training.steps
                            or stop["stop"]
                        ):
                            saved = self._checkpoint(
                                nets, ema, optimizers, schedulers, stepper, epoch, position, run_id
                            )
                        if stop["stop"]:
                            status = "KILLED"
                            raise Preempted(
                                f"stopped by SIGTERM at step {step}; checkpoint {saved}; "
                                "run again with --resume to continue"
                            )
                        if step >= self.training.steps or position >= batches_per_epoch:
                            break
            model_dir = self.run_dir / "model"
            model_uri = None
            if self.dist.main:
                export = {inference: (ema or {inference: unwrap(nets[inference])})[inference]}
                description = checkpoint.describe(self.family, self.data_version, stepper.step)
                checkpoint.export_model(model_dir, description, checkpoint.flat_state(export))
                if tracker:
                    model_uri = tracker.log_model(model_dir, self.family.name)
            status = "FINISHED"
        finally:
            if tracker:
                tracker.end(status)
            if self.dist.world_size > 1 and dist.is_initialized():
                dist.destroy_process_group()
        return TrainResult(
            self.run_dir,
            model_dir,
            stepper.step,
            metrics,
            validation,
            run_id,
            model_uri,
            time.perf_counter() - started,
        )

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
            "family": family.name,
            "dataset": data.dataset,
            "data_version": self.data_version,
            "git_commit": git_commit(),
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
        batches = loader(self.valid_set, self.training.batch_size, None, 0, self.training.seed)
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
                reference, generated = self.family.sample(plain, first)
                tracker.log_audio(step, self.data_spec.sample_rate, reference, generated)
        return means

    def _checkpoint(
        self,
        nets: dict[str, nn.Module],
        ema: dict[str, nn.Module],
        optimizers: dict[str, torch.optim.Optimizer],
        schedulers: dict[str, Any],
        stepper: Stepper,
        epoch: int,
        position: int,
        run_id: str | None,
    ) -> Path | None:
        if not self.dist.main:
            if self.dist.world_size > 1:
                dist.barrier()
            return None
        plain = {name: unwrap(net) for name, net in nets.items()}
        tensors = {**checkpoint.flat_state(plain), **checkpoint.flat_state(ema, prefix="ema.")}
        state = {
            "step": stepper.step,
            "epoch": epoch,
            "position": position,
            "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
            "schedulers": {name: s.state_dict() for name, s in schedulers.items()},
            "scaler": stepper.scaler.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state(self.device)
                if self.device.type == "cuda"
                else None,
            },
        }
        description = checkpoint.describe(self.family, self.data_version, stepper.step)
        description["mlflow_run_id"] = run_id
        path = checkpoint.save_checkpoint(
            self.run_dir / "checkpoints",
            description,
            tensors,
            state,
            self.training.keep_checkpoints,
        )
        if self.dist.world_size > 1:
            dist.barrier()
        return path


def train(
    cfg: Config,
    model: str,
    dataset: str,
    resume: bool = False,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train `model` on the stored `dataset` for `training.steps` steps; see Trainer."""
    return Trainer(cfg, model, dataset).train(resume=resume, on_step=on_step)
