"""The training loop: one function a reader can follow top to bottom.

train_model() fits one network (teacher or student) on the train split, validates every
epoch, keeps the best weights by validation F1 (ties: lower validation loss), stops early,
and after every epoch atomically writes a resume checkpoint so a killed job continues
from its last finished epoch. The test split is never an argument here.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from . import io
from .data import FaceDataset, build_loader, eval_transform, train_transform
from .losses import class_weights, distillation_loss
from .metrics import DECISION_THRESHOLD, confusion_counts, rates_from_counts
from .models import count_parameters, create_model, frozen, resolve_device, save_weights
from .runlog import current_log_file, get_logger
from .seeding import seed_everything

HISTORY_COLUMNS = [
    "epoch", "train_loss", "val_loss", "val_f1", "val_apcer", "val_bpcer", "val_acer",
    "lr", "seconds", "images_per_s",
]


@dataclass
class TrainConfig:
    """Everything that defines one training run (written into summary.json).

    Built by `train_config` from the workflow's settings; there are no defaults here: they live
    in the config schema, the one source of truth.
    """

    name: str
    arch: str
    optimizer: str
    lr: float
    weight_decay: float
    dropout: float
    patience: int
    distill: bool
    alpha: float | None  # distillation weight (None without distillation)
    temperature: float | None
    input_size: int
    crop_scale: tuple[float, float]
    batch_size: int
    max_epochs: int
    warmup_epochs: int
    grad_clip_norm: float | None  # largest global gradient norm of a step (None: no clipping)
    num_workers: int
    device: str
    seed: int
    class_weighted: bool
    pretrained: str | None  # ImageNet weights file, or None to train from scratch


# Keys of a hyperparameter section (config `teacher` or a scenario) that a run takes.
HYPERPARAMETERS = ("optimizer", "lr", "weight_decay", "dropout", "patience")
DISTILL_HYPERPARAMETERS = ("alpha", "temperature")
# Keys of config `train` shared by every run.
TRAIN_SETTINGS = (
    "input_size", "batch_size", "max_epochs", "warmup_epochs", "grad_clip_norm", "num_workers", "device", "seed", "class_weighted",
)


def train_config(
    name: str,
    arch: str,
    train: Mapping,
    hyperparameters: Mapping,
    pretrained: str | None = None,
    overrides: Mapping | None = None,
    seed: int | None = None,
) -> TrainConfig:
    """The TrainConfig of one run.

    `train` is config["train"]; `hyperparameters` the run's section (a scenario, or the teacher's
    with distill false); `overrides` tuned values that replace it; `seed` another training seed.
    """
    hyper = {**hyperparameters, **(overrides or {})}
    distill = bool(hyper["distill"])
    return TrainConfig(
        name=name,
        arch=arch,
        **{k: hyper[k] for k in HYPERPARAMETERS},
        distill=distill,
        **{k: (hyper[k] if distill else None) for k in DISTILL_HYPERPARAMETERS},
        **{k: train[k] for k in TRAIN_SETTINGS if k != "seed"},
        crop_scale=(float(train["crop_scale"][0]), float(train["crop_scale"][1])),
        seed=int(train["seed"] if seed is None else seed),
        pretrained=None if pretrained is None else str(pretrained),
    )


def lr_factor(step: int, steps_per_epoch: int, max_epochs: int, warmup_epochs: int) -> float:
    """Learning-rate multiplier at optimizer step `step`: cosine annealing by epoch (the paper's,
    from 1 at epoch 1 towards 0), times a linear warm-up over the first `warmup_epochs` epochs' steps.

    From scratch, a few thousand images and a large learning rate, the first steps' updates
    otherwise knock the batch-norm statistics about and cost an epoch or two (the demo).
    """
    epoch = step // steps_per_epoch
    factor = 0.5 * (1.0 + math.cos(math.pi * epoch / max_epochs))
    warmup_steps = warmup_epochs * steps_per_epoch
    if step < warmup_steps:
        factor *= (step + 1) / warmup_steps
    return factor


class EarlyStopping:
    """Best-by-validation-F1 bookkeeping; ties go to the lower validation loss."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best_f1 = -math.inf
        self.best_loss = math.inf
        self.best_epoch = 0
        self.bad_epochs = 0

    def update(self, epoch: int, f1: float, loss: float) -> bool:
        """Record one epoch; True if it is the new best."""
        better = f1 > self.best_f1 or (f1 == self.best_f1 and loss < self.best_loss)
        if better:
            self.best_f1, self.best_loss, self.best_epoch, self.bad_epochs = f1, loss, epoch, 0
        else:
            self.bad_epochs += 1
        return better

    @property
    def should_stop(self) -> bool:
        return self.bad_epochs >= self.patience

    def state_dict(self) -> dict:
        return dict(vars(self))

    def load_state_dict(self, state: dict) -> None:
        vars(self).update(state)


def binary_rates(labels: np.ndarray, preds: np.ndarray) -> dict[str, float]:
    """F1 and APCER/BPCER/ACER of fixed decisions, spoof positive (used for model selection).

    The rates are fasflow.metrics'; a rate without samples (NaN there) counts as 0 here so
    that model selection can always compare epochs.
    """
    rates = rates_from_counts(**confusion_counts(labels, preds))
    return {k: 0.0 if math.isnan(rates[k]) else rates[k] for k in ("f1", "apcer", "bpcer", "acer")}


def build_optimizer(name: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, momentum=0.9, nesterov=True)
    raise ValueError(f"unknown optimizer {name!r} (adamw, adam, sgd)")


def train_model(
    cfg: TrainConfig,
    train_faces: np.ndarray,
    train_labels: np.ndarray,
    val_faces: np.ndarray,
    val_labels: np.ndarray,
    outputs: Mapping[str, str | Path] | None,
    teacher: torch.nn.Module | None = None,
    on_epoch: Callable[[int, dict], None] | None = None,
    checkpoint: bool = True,
) -> dict:
    """Train, select and (if `outputs`) write the model's files.

    `outputs` maps the roles of `fasflow.models.MODEL_FILES` (weights, history, summary) to paths;
    None (Optuna trials) writes nothing. With `checkpoint`, resume state lives in a `resume/`
    folder beside the weights until the model is final.
    `on_epoch(epoch, row)` is called after each validation (Optuna reports and prunes there).
    Returns the summary dict.
    """
    log = get_logger()
    device = resolve_device(cfg.device)
    cuda = device.type == "cuda"
    seed_everything(cfg.seed)
    # channels_last on every device: besides CUDA's tensor cores, oneDNN's NHWC kernels cut a CPU
    # training step by about 40% (MobileNetV2 and EfficientNet-B0, 48 and 224 px, 1-2 threads).
    model = create_model(cfg.arch, cfg.dropout, cfg.pretrained).to(device, memory_format=torch.channels_last)
    if cfg.distill and teacher is None:
        raise ValueError(f"{cfg.name}: distillation needs a teacher")
    if teacher is not None:
        teacher = frozen(teacher.to(device, memory_format=torch.channels_last))
    weight = class_weights(train_labels).to(device) if cfg.class_weighted else None
    optimizer = build_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.weight_decay)
    steps_per_epoch = max(1, len(train_labels) // cfg.batch_size)  # the loader drops a last partial batch
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, steps_per_epoch, cfg.max_epochs, cfg.warmup_epochs)
    )
    stopper = EarlyStopping(cfg.patience)
    history: list[dict] = []
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    # bf16 autocast on GPUs that support it; CPU stays fp32 (bit-reproducible).
    amp_dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=cuda and amp_dtype == torch.float16)

    train_set = FaceDataset(train_faces, train_labels, train_transform(cfg.input_size, cfg.crop_scale))
    val_set = FaceDataset(val_faces, val_labels, eval_transform(cfg.input_size))
    val_loader = build_loader(val_set, cfg.batch_size, shuffle=False, num_workers=cfg.num_workers, pin_memory=cuda)

    resume_dir = Path(outputs["weights"]).parent / "resume" if (outputs and checkpoint) else None
    start_epoch = 1
    if resume_dir and (resume_dir / "state.json").is_file():
        start_epoch, history = load_checkpoint(resume_dir, model, optimizer, scheduler, stopper, best_state)
        # The job's log was started afresh: carry the interrupted run's lines over, then continue.
        previous_log = resume_dir / "log.txt"
        if previous_log.is_file():
            log.info("log of the interrupted run:\n%s", previous_log.read_text().rstrip())
        log.info("%s: resuming after epoch %d (best so far: epoch %d, val F1 %.4f)", cfg.name, start_epoch - 1, stopper.best_epoch, stopper.best_f1)

    epoch_times: list[float] = [row["seconds"] for row in history]
    for epoch in range(start_epoch, cfg.max_epochs + 1):
        if stopper.should_stop:
            break
        # Everything random in an epoch derives from (seed, epoch): a resumed run replays it exactly.
        epoch_seed = cfg.seed * 100_003 + epoch
        seed_everything(epoch_seed)
        train_loader = build_loader(
            train_set, cfg.batch_size, shuffle=True, num_workers=cfg.num_workers, seed=epoch_seed, pin_memory=cuda, drop_last=len(train_set) > cfg.batch_size
        )
        started = time.perf_counter()
        model.train()
        total_loss, seen = 0.0, 0
        for images, targets in train_loader:
            images = images.to(device, non_blocking=True)
            targets = targets.to(device, non_blocking=True)
            images = images.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=cuda):
                logits = model(images)
                if cfg.distill:
                    with torch.no_grad():
                        teacher_logits = teacher(images)
                    loss = distillation_loss(logits.float(), teacher_logits.float(), targets, weight, cfg.alpha, cfg.temperature)
                else:
                    loss = F.cross_entropy(logits.float(), targets, weight=weight)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip_norm is not None:
                scaler.unscale_(optimizer)  # clip the true gradients, not the fp16 loss-scaled ones
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip_norm)
            scaler.step(optimizer)
            scaler.update()
            lr = optimizer.param_groups[0]["lr"]  # the rate of the epoch's last step, for the history
            scheduler.step()
            total_loss += loss.item() * len(targets)
            seen += len(targets)
        train_seconds = time.perf_counter() - started

        val_loss, val_scores = evaluate(model, val_loader, device, weight, amp_dtype)
        rates = binary_rates(val_labels, val_scores >= DECISION_THRESHOLD)
        seconds = time.perf_counter() - started
        row = {
            "epoch": epoch, "train_loss": total_loss / max(seen, 1), "val_loss": val_loss,
            "val_f1": rates["f1"], "val_apcer": rates["apcer"], "val_bpcer": rates["bpcer"], "val_acer": rates["acer"],
            "lr": lr, "seconds": seconds, "images_per_s": seen / train_seconds if train_seconds > 0 else 0.0,
        }
        history.append(row)
        if stopper.update(epoch, rates["f1"], val_loss):
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        epoch_times.append(seconds)
        remaining = cfg.max_epochs - epoch
        log.info(
            "%s epoch %d/%d  loss %.4f  val loss %.4f  val F1 %.4f  val ACER %.4f  %.0f img/s  ETA %s%s",
            cfg.name, epoch, cfg.max_epochs, row["train_loss"], val_loss, rates["f1"], rates["acer"],
            row["images_per_s"], _eta(np.mean(epoch_times) * remaining), "  *" if stopper.best_epoch == epoch else "",
        )
        if resume_dir:
            save_checkpoint(resume_dir, epoch, model, optimizer, scheduler, stopper, best_state, history)
            _keep_log(resume_dir / "log.txt")
        if on_epoch is not None:
            on_epoch(epoch, row)

    model.load_state_dict(best_state)
    best = next(r for r in history if r["epoch"] == stopper.best_epoch)
    summary = {
        "name": cfg.name,
        "arch": cfg.arch,
        "dropout": cfg.dropout,
        "input_size": cfg.input_size,
        "parameters": count_parameters(model),
        "hyperparameters": _hyperparameters(cfg),
        "config": asdict(cfg),
        "seed": cfg.seed,
        "best_epoch": stopper.best_epoch,
        "epochs_run": len(history),
        "stopped_early": stopper.should_stop,
        "val_metrics": {k.removeprefix("val_"): best[k] for k in ("val_f1", "val_apcer", "val_bpcer", "val_acer", "val_loss")},
        "train_images": int(len(train_labels)),
        "val_images": int(len(val_labels)),
        "device": str(device),
        "amp": str(amp_dtype).removeprefix("torch.") if cuda else "off",
    }
    if outputs:
        write_outputs(outputs, model, history, summary)
        if resume_dir and resume_dir.exists():
            shutil.rmtree(resume_dir)  # the model is final: resume state is no longer needed
    summary["model"] = model
    summary["history"] = history
    return summary


@torch.no_grad()
def evaluate(model, loader, device, weight, amp_dtype) -> tuple[float, np.ndarray]:
    """Mean weighted CE and P(spoof) for every sample of `loader`."""
    model.eval()
    total, count, scores = 0.0, 0, []
    for images, targets in loader:
        images, targets = images.to(device), targets.to(device)
        images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=device.type == "cuda"):
            logits = model(images).float()
        total += F.cross_entropy(logits, targets, weight=weight, reduction="sum").item()
        count += len(targets)
        # float64: a float32 softmax rounds P(spoof) to exactly 1 beyond a logit margin of ~17 (ties).
        scores.append(torch.softmax(logits.double(), dim=1)[:, 1].cpu().numpy())
    return total / max(count, 1), np.concatenate(scores) if scores else np.zeros(0)


def write_outputs(outputs: Mapping[str, str | Path], model, history: list[dict], summary: dict) -> None:
    """weights (safetensors), history (CSV) and summary (JSON with provenance), each atomically."""
    from .provenance import provenance

    save_weights(model, outputs["weights"])
    with io.atomic_path(outputs["history"]) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=HISTORY_COLUMNS)
            writer.writeheader()
            writer.writerows(history)
    io.write_json(outputs["summary"], {**summary, "provenance": provenance()})


def _keep_log(copy: Path) -> None:
    """Copy the job's log so far next to the resume state (a resumed job starts a new log)."""
    source = current_log_file()
    if source is not None and source.is_file():
        io.write_text(copy, source.read_text())


def save_checkpoint(resume_dir: Path, epoch, model, optimizer, scheduler, stopper, best_state, history) -> None:
    """Model, best weights, optimizer tensors (safetensors) + the rest (JSON); renamed into place."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"best.{k}": v.detach().cpu().contiguous() for k, v in best_state.items()})
    optim_state = optimizer.state_dict()
    scalars: dict = {}
    for pid, state in optim_state["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{key}"] = value
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {
        "epoch": epoch,
        "optimizer_param_groups": optim_state["param_groups"],
        "optimizer_scalars": scalars,
        "scheduler": scheduler.state_dict(),
        "early_stopping": stopper.state_dict(),
        "history": history,
    }
    resume_dir.mkdir(parents=True, exist_ok=True)
    # Tensors first, then the JSON that points at them: state.json only exists for a complete pair.
    with io.atomic_path(resume_dir / f"state-{epoch}.safetensors") as tmp:
        save_file(tensors, str(tmp))
    meta["tensors"] = f"state-{epoch}.safetensors"
    io.write_json(resume_dir / "state.json", meta)
    for old in resume_dir.glob("state-*.safetensors"):
        if old.name != meta["tensors"]:
            old.unlink()


def load_checkpoint(resume_dir: Path, model, optimizer, scheduler, stopper, best_state) -> tuple[int, list[dict]]:
    meta = json.loads((resume_dir / "state.json").read_text())
    tensors = load_file(str(resume_dir / meta["tensors"]))
    model.load_state_dict({k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")})
    for k, v in tensors.items():
        if k.startswith("best."):
            best_state[k.removeprefix("best.")] = v
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, pid, key = k.split(".", 2)
            state.setdefault(int(pid), {})[key] = v
    for k, v in meta["optimizer_scalars"].items():
        pid, key = k.split(".", 1)
        state.setdefault(int(pid), {})[key] = v
    optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer_param_groups"]})
    scheduler.load_state_dict(meta["scheduler"])
    stopper.load_state_dict(meta["early_stopping"])
    torch.set_rng_state(tensors["rng.torch"])
    return meta["epoch"] + 1, meta["history"]


def _hyperparameters(cfg: TrainConfig) -> dict:
    hyper = {k: getattr(cfg, k) for k in ("optimizer", "lr", "weight_decay", "dropout", "patience", "batch_size", "max_epochs", "input_size")}
    hyper["distill"] = cfg.distill
    if cfg.distill:
        hyper.update(alpha=cfg.alpha, temperature=cfg.temperature)
    return hyper


def _eta(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
