"""One training run: set-up, resume, the epoch loop, checkpoints, logs and non-finite recovery.

The run folder (naming, creation, config.json, atomic writes) is run_folder's job."""

from __future__ import annotations

import dataclasses
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from timm.data import Mixup
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.scheduler import create_scheduler_v2
from timm.utils import ModelEmaV3, dispatch_clip_grad

from . import checkpoint as ckpt
from .config import ConfigError, TrainConfig, resolve
from .data import build_loaders
from .distributed import DistInfo, all_ranks_agree, all_reduce_sum, barrier, broadcast_text
from .engine import as_float, autocast, distill_loss, evaluate, grads_finite, progress, to_device
from .modelling import create_model, create_optimizer, model_data_config
from .nonfinite import Action, NonFiniteGuard, NonFiniteLossError
from .plots import plot_curves
from .run_folder import (
    LAST,
    PRE_DISTILL,
    OutputError,
    atomic_copy,
    best_name,
    choose_run_dir,
    prepare_run_dir,
    remove_if_empty,
    write_config,
)
from .runlog import CURVES, RunLog
from .weights import checkpoint_weights, load_weights


def seed_everything(seed: int) -> None:
    seed = seed % (2**32)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """Every epoch on every rank draws from its own stream, a function of (seed, epoch, rank) only:
    a resumed run replays an epoch exactly, whatever happened before the kill."""
    return (seed * 1_000_003 + (epoch + 1) * 10_007 + rank * 101) % (2**32)


def set_determinism(deterministic: bool, device: torch.device) -> None:
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True


class Trainer:
    def __init__(self, config: TrainConfig, info: DistInfo, run_dir: Path, resume_from: Path | None):
        self.config = config
        self.info = info
        self.run_dir = run_dir
        self.resume_from = resume_from
        r = dataclasses.replace(resolve(config, info.world_size), output=str(run_dir))
        self.resolved = r
        self.amp = r.amp
        set_determinism(r.deterministic, info.device)
        seed_everything(r.seed)

        # data first: it tells the class count, and a data error must stop us before any work
        self.data_config = self._data_config()
        self.loaders = build_loaders(r, self.data_config, info)
        self.num_classes = r.num_classes or self.loaders.num_classes
        self.resolved = r = dataclasses.replace(r, num_classes=self.num_classes)
        seed_everything(r.seed)  # model init does not depend on how much RNG the data set-up used
        self.model = create_model(r, self.num_classes, local_weights_flag="--initial-checkpoint")
        if r.initial_checkpoint and resume_from is None:
            self._load_initial_weights(Path(r.initial_checkpoint))
        self.model.to(info.device)
        if r.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if r.sync_bn and info.enabled:
            if info.device.type != "cuda":
                raise ConfigError("--sync-bn: SyncBatchNorm runs on GPUs only; drop --sync-bn for CPU runs")
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.ema = ModelEmaV3(self.model, decay=r.model_ema_decay) if r.model_ema else None
        self.optimizer = create_optimizer(self.model, r)
        self.steps_per_epoch = len(self.loaders.train)
        if r.max_steps_per_epoch:
            self.steps_per_epoch = min(self.steps_per_epoch, r.max_steps_per_epoch)
        self.scheduler, self.total_epochs = create_scheduler_v2(
            self.optimizer,
            sched=r.sched,
            num_epochs=r.epochs,
            cooldown_epochs=r.cooldown_epochs,
            min_lr=r.min_lr,
            warmup_lr=r.warmup_lr,
            warmup_epochs=r.warmup_epochs,
            step_on_epochs=not r.sched_on_updates,
            updates_per_epoch=self.steps_per_epoch,
        )
        self.scaler = self._make_scaler()
        self.mixup = self._make_mixup()
        self.criterion = self._make_criterion()
        self.train_model: torch.nn.Module = self.model
        if info.enabled:
            device_ids = [info.device.index] if info.device.type == "cuda" else None
            self.train_model = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)
        self.guard = NonFiniteGuard(patience=r.nonfinite_patience, max_restores=r.nonfinite_max_restores)
        self.start_epoch = 0
        self.global_step = 0
        self.best: list[dict[str, Any]] = []
        self.log = RunLog(run_dir, tensorboard=r.tensorboard) if info.is_main else None

    # ------------------------------------------------------------------------------ set-up pieces

    def _load_initial_weights(self, path: Path) -> None:
        """--initial-checkpoint: the model weights of a file (no optimiser state, epoch or EMA; the EMA
        starts from these weights), every one required except a classifier for another class count."""
        state = ckpt.read_checkpoint_file(path, "--initial-checkpoint")
        weights = checkpoint_weights(state, path, "--initial-checkpoint")
        notes = load_weights(
            self.model,
            weights,
            str(path),
            "--initial-checkpoint",
            strict=self.resolved.initial_checkpoint_strict,
            new_classifier_ok=True,
        )
        if self.info.is_main:
            for note in [f"starting from the weights in {path}", *notes]:
                print(note)

    def _data_config(self) -> dict[str, Any]:
        """Mean/std/interpolation/crop of the model's pretrained_cfg, overridable by the config."""
        return model_data_config(self.resolved)

    def _make_scaler(self) -> torch.amp.GradScaler:
        return torch.amp.GradScaler(self.info.device.type, enabled=self.amp == "float16")

    def _make_mixup(self) -> Mixup | None:
        r = self.resolved
        if not r.aug or (r.mixup <= 0 and r.cutmix <= 0) or r.mixup_prob <= 0:
            return None
        if r.batch_size % 2:
            raise ConfigError(f"--batch-size: Mixup/CutMix needs an even batch per process, got {r.batch_size}")
        return Mixup(
            mixup_alpha=r.mixup,
            cutmix_alpha=r.cutmix,
            prob=r.mixup_prob,
            switch_prob=r.mixup_switch_prob,
            mode=r.mixup_mode,
            label_smoothing=r.smoothing,
            num_classes=self.num_classes,
        )

    def _make_criterion(self) -> torch.nn.Module:
        if self.mixup is not None:
            return SoftTargetCrossEntropy()  # Mixup folds label smoothing into its soft targets
        if self.resolved.smoothing > 0:
            return LabelSmoothingCrossEntropy(smoothing=self.resolved.smoothing)
        return torch.nn.CrossEntropyLoss()

    # ------------------------------------------------------------------------------ checkpoints

    def state(self, epochs_done: int) -> dict[str, Any]:
        return {
            "format": "a2mamba-train/1",
            "arch": self.resolved.model,
            "num_classes": self.num_classes,
            "class_names": list(self.loaders.class_names),
            "epoch": epochs_done,
            "step": self.global_step,
            "model": self.model.state_dict(),
            "model_ema": self.ema.module.state_dict() if self.ema is not None else None,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "amp": self.amp,
            "best": list(self.best),
            "nonfinite": self.guard.state_dict(),
            "rng": ckpt.rng_states(),
            "config": dataclasses.asdict(self.config),
            "data_config": self.data_config,
        }

    def load_state(self, state: dict[str, Any], restore_rng: bool = True) -> None:
        self.model.load_state_dict(state["model"])
        if self.ema is not None:
            if state.get("model_ema") is None:
                raise ConfigError("--resume: the checkpoint has no EMA weights but this run uses --model-ema")
            self.ema.module.load_state_dict(state["model_ema"])
        self.amp = state.get("amp", self.amp)
        self.scaler = self._make_scaler()
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        # The schedule is not restored: it is a function of the epoch (and step) and of this run's
        # settings, so a resumed run with a larger --epochs follows the longer schedule.
        self.best = list(state.get("best", []))
        self.guard.load_state_dict(state.get("nonfinite", {}))
        self.global_step = state["step"]
        if restore_rng:
            ckpt.restore_rng_states(state["rng"])

    def resume(self) -> None:
        if self.resume_from is None:
            return
        state = ckpt.read_training_checkpoint(self.resume_from, "--resume")
        if state.get("arch") not in (None, self.resolved.model):
            raise ConfigError(
                f"--resume: {self.resume_from} was trained as {state.get('arch')!r}, not {self.resolved.model!r}"
            )
        self.load_state(state)
        self.start_epoch = state["epoch"]
        if self.info.is_main:
            print(
                f"resumed from {self.resume_from} at epoch {self.start_epoch} of {self.total_epochs} "
                f"(step {self.global_step})"
            )
            if self.start_epoch >= self.total_epochs:
                print(
                    f"nothing to train: the run has done {self.start_epoch} epochs; to train longer pass a larger "
                    "--epochs (the schedule is recomputed for it)"
                )

    def save_epoch(self, epoch: int, top1: float) -> None:
        """last.pth every epoch (atomically); a copy for each of the best ``keep_best`` by top-1."""
        if not self.info.is_main:
            return
        keep = self.resolved.keep_best
        number = epoch + 1  # epochs are counted from 1 in files and logs
        ranked = sorted(
            self.best + [{"epoch": number, "top1": top1, "file": best_name(number, top1)}],
            key=lambda e: (-e["top1"], e["epoch"]),
        )
        kept, evicted = ranked[:keep], ranked[keep:]
        self.best = kept
        ckpt.save(self.run_dir / LAST, self.state(epoch + 1))
        if any(e["epoch"] == number for e in kept):
            atomic_copy(self.run_dir / LAST, self.run_dir / best_name(number, top1))
        for entry in evicted:
            (self.run_dir / entry["file"]).unlink(missing_ok=True)

    # ------------------------------------------------------------------------------ non-finite losses

    def handle_nonfinite(self, epoch: int, step: int, loss_value: float) -> None:
        can_restore = (self.run_dir / LAST).is_file()
        can_restore = all_ranks_agree(can_restore, self.info)
        action = self.guard.observe(False, amp_enabled=self.amp != "off", can_restore=can_restore)
        self.event("nonfinite_loss", epoch=epoch, step=step, loss=str(loss_value), amp=self.amp, action=action.value)
        if action is Action.DISABLE_AMP:
            self.say(
                f"loss non-finite {self.guard.patience} steps in a row under {self.amp} autocast: "
                f"continuing in float32 (AMP off)"
            )
            self.amp = "off"
            self.scaler = self._make_scaler()
        elif action is Action.RESTORE:
            path = self.run_dir / LAST
            self.say(
                f"loss non-finite {self.guard.patience} steps in a row in float32: restoring the last good "
                f"checkpoint {path} (restore {self.guard.restores} of {self.guard.max_restores})"
            )
            barrier(self.info)
            state = ckpt.load(path)
            step_now, guard_state = self.global_step, self.guard.state_dict()
            self.load_state(state, restore_rng=False)
            self.global_step = step_now  # the schedule keeps its place; the weights go back
            self.guard.load_state_dict(guard_state)
            self.amp = "off"
            self.scaler = self._make_scaler()
        elif action is Action.GIVE_UP:
            raise NonFiniteLossError(
                f"the loss stayed non-finite in float32 after {self.guard.restores} restore(s) of the last good "
                f"checkpoint (epoch {epoch}, step {step}); lower --lr or check the data. The run folder "
                f"{self.run_dir} holds the last good checkpoint; continue with --resume auto"
            )

    def say(self, text: str) -> None:
        if self.info.is_main:
            from tqdm.auto import tqdm

            tqdm.write(text)

    def event(self, name: str, **values: Any) -> None:
        if self.log is not None:
            self.log.record("event", event=name, **values)

    # ------------------------------------------------------------------------------ the loops

    def train_epoch(self, epoch: int) -> dict[str, float]:
        r, info = self.resolved, self.info
        self.train_model.train()
        distilling = self.ema is not None and r.distill_weight > 0 and epoch >= r.distill_start_epoch
        loss_sum = 0.0
        finite_steps = 0
        started = time.perf_counter()
        bar = progress(
            range(self.steps_per_epoch),
            info.is_main and r.progress,
            leave=False,
            unit="step",
            desc=f"epoch {epoch + 1}/{self.total_epochs}",
        )
        batches = iter(self.loaders.train)
        for step in bar:
            images, targets = next(batches)
            images = to_device(images, info.device, r.channels_last)
            targets = targets.to(info.device, non_blocking=True)
            if self.mixup is not None:
                images, targets = self.mixup(images, targets)
            if r.sched_on_updates:
                self.scheduler.step_update(self.global_step)
            with autocast(info.device, self.amp):
                output = self.train_model(images)
                loss = self.criterion(output, targets)
                if distilling:
                    with torch.no_grad():
                        teacher = self.ema.module(images)
                    loss = loss + r.distill_weight * distill_loss(output, teacher)
            finite = all_ranks_agree(bool(torch.isfinite(loss.detach())), info)
            if finite:
                self.scaler.scale(loss).backward()
                if r.clip_grad:
                    self.scaler.unscale_(self.optimizer)
                    dispatch_clip_grad(self.model.parameters(), r.clip_grad, mode=r.clip_mode)
                # with loss scaling the scaler skips overflowing updates itself; in float32 we check
                if not self.scaler.is_enabled():
                    finite = all_ranks_agree(grads_finite(self.model.parameters()), info)
            elif info.enabled:
                (loss * 0.0).backward()  # keeps DDP's gradient reducer in step with the other ranks
            if not finite:
                self.optimizer.zero_grad(set_to_none=True)
                self.handle_nonfinite(epoch, step, as_float(loss))
                continue
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            self.guard.observe(True, amp_enabled=self.amp != "off", can_restore=False)
            self.global_step += 1
            if self.ema is not None:
                self.ema.update(self.model, step=self.global_step)
            loss_sum += as_float(loss)
            finite_steps += 1
            images_done = (step + 1) * r.global_batch_size
            bar.set_postfix(
                loss=f"{loss_sum / finite_steps:.4f}",
                lr=f"{self.optimizer.param_groups[0]['lr']:.2e}",
                img_s=f"{images_done / (time.perf_counter() - started):.0f}",
                refresh=False,
            )
        bar.close()
        elapsed = time.perf_counter() - started
        loss_sum, finite_steps = all_reduce_sum([loss_sum, finite_steps], info)
        return {
            "train_loss": loss_sum / finite_steps if finite_steps else float("nan"),
            "lr": self.optimizer.param_groups[0]["lr"],
            "epoch_seconds": elapsed,
            "images_per_second": self.steps_per_epoch * r.global_batch_size / elapsed,
            "skipped_steps": self.steps_per_epoch - int(finite_steps / info.world_size),
        }

    def fit(self) -> dict[str, Any]:
        r, info = self.resolved, self.info
        self.resume()
        if self.log is not None:
            write_config(self.run_dir, r)
            self.log.record(
                "start",
                start_epoch=self.start_epoch,
                world_size=info.world_size,
                resumed_from=str(self.resume_from) if self.resume_from else None,
            )
            print(f"run folder: {self.run_dir}")
            print(
                f"model {r.model} ({sum(p.numel() for p in self.model.parameters()):,} parameters), "
                f"{self.loaders.train_size:,} training / {self.loaders.eval_size:,} evaluation images, "
                f"{self.num_classes} classes, {info.world_size} process(es) x batch {r.batch_size}, "
                f"lr {r.lr:.3g}, device {info.device}, AMP {self.amp}"
            )
        result: dict[str, Any] = {}
        epochs = progress(
            range(self.start_epoch, self.total_epochs),
            info.is_main and r.progress,
            initial=self.start_epoch,
            total=self.total_epochs,
            desc="epochs",
            unit="epoch",
        )
        for epoch in epochs:
            seed_everything(epoch_seed(r.seed, epoch, info.rank))
            self.loaders.train_sampler.set_epoch(epoch)
            self.scheduler.step(epoch)
            self.snapshot_before_distillation(epoch)
            train_stats = self.train_epoch(epoch)
            eval_stats = evaluate(
                self.model,
                self.loaders.eval,
                info,
                amp=self.amp,
                show_progress=r.progress,
                channels_last=r.channels_last,
            )
            row = {
                "epoch": epoch + 1,
                **train_stats,
                "eval_loss": eval_stats["loss"],
                "top1": eval_stats["top1"],
                "top5": eval_stats["top5"],
                "step": self.global_step,
            }
            if self.ema is not None:
                ema_stats = evaluate(
                    self.ema.module,
                    self.loaders.eval,
                    info,
                    amp=self.amp,
                    show_progress=r.progress,
                    desc="eval EMA",
                    channels_last=r.channels_last,
                )
                row.update(ema_top1=ema_stats["top1"], ema_top5=ema_stats["top5"], ema_eval_loss=ema_stats["loss"])
            self.save_epoch(epoch, eval_stats["top1"])
            if self.log is not None:
                self.log.record("epoch", **row)
                plot_curves(self.log.epochs(), self.run_dir / CURVES, title=f"{r.model} - {self.run_dir.name}")
            epochs.set_postfix(
                loss=f"{row['train_loss']:.4f}",
                top1=f"{row['top1']:.2f}",
                lr=f"{row['lr']:.2e}",
                img_s=f"{row['images_per_second']:.0f}",
            )
            self.say(
                f"epoch {epoch + 1}/{self.total_epochs}: train loss {row['train_loss']:.4f}, "
                f"eval loss {row['eval_loss']:.4f}, top-1 {row['top1']:.2f}%, top-5 {row['top5']:.2f}%, "
                f"lr {row['lr']:.2e}, {row['images_per_second']:.0f} img/s"
            )
            result = row
            barrier(info)
        epochs.close()
        if self.log is not None and result:
            best = self.best[0] if self.best else None
            self.log.record(
                "final",
                top1=result["top1"],
                top5=result["top5"],
                eval_loss=result["eval_loss"],
                best_top1=best["top1"] if best else None,
                best_epoch=best["epoch"] if best else None,
            )
            self.log.close()
        return result

    def snapshot_before_distillation(self, epoch: int) -> None:
        r = self.resolved
        if (
            self.info.is_main
            and self.ema is not None
            and r.distill_weight > 0
            and epoch == r.distill_start_epoch
            and epoch > 0
            and (self.run_dir / LAST).is_file()
        ):
            atomic_copy(self.run_dir / LAST, self.run_dir / PRE_DISTILL)


def run_training(config: TrainConfig, info: DistInfo) -> dict[str, Any]:
    """Pick the run folder (rank 0 decides, everybody follows), then train."""
    error = None
    run_dir_text = None
    resume_text = None
    created: list[Path] = []
    if info.is_main:
        try:
            if config.initial_checkpoint and config.pretrained:
                raise ConfigError("--initial-checkpoint: choose it or --pretrained, not both")
            if config.initial_checkpoint and not Path(config.initial_checkpoint).is_file() and not config.resume:
                raise ConfigError(f"--initial-checkpoint: no file {config.initial_checkpoint}")
            run_dir, resume_from = choose_run_dir(config)
            created = prepare_run_dir(run_dir, resuming=config.resume is not None)
            run_dir_text, resume_text = str(run_dir), str(resume_from) if resume_from else None
        except ConfigError as err:
            error = str(err)
    error = broadcast_text(error, info)
    if error:
        raise OutputError(error) if "--output" in error else ConfigError(error)
    run_dir = Path(broadcast_text(run_dir_text, info))
    resume_text = broadcast_text(resume_text, info)
    try:
        trainer = Trainer(config, info, run_dir, Path(resume_text) if resume_text else None)
        return trainer.fit()
    except BaseException:
        if info.is_main:
            remove_if_empty(created)  # a launch that failed before writing anything leaves no trace
        raise


__all__ = ["Trainer", "run_training"]
