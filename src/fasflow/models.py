"""Model factory: timm architectures with a 2-class head and local pretrained weights."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from safetensors.torch import load_file, save_file

from .errors import ConfigError

NUM_CLASSES = 2


def pretrained_path(pretrained_dir: str | Path, arch: str) -> Path:
    """Where the ImageNet weights of `arch` are expected (fetched by the fetch_pretrained rule)."""
    return Path(pretrained_dir) / f"{arch}.safetensors"


def create_model(
    arch: str,
    dropout: float = 0.2,
    pretrained: bool = False,
    pretrained_dir: str | Path = "resources/pretrained",
    num_classes: int = NUM_CLASSES,
) -> torch.nn.Module:
    """Build `arch` with `num_classes` outputs and `dropout` before the classifier.

    With `pretrained`, the backbone starts from the ImageNet weights stored locally in
    `pretrained_dir/<arch>.safetensors` (the classifier head is re-initialised).
    Nothing is downloaded here: compute nodes are often offline.
    """
    try:
        model = timm.create_model(arch, pretrained=False, num_classes=num_classes, drop_rate=dropout)
    except RuntimeError as exc:  # timm raises RuntimeError for unknown names
        raise ConfigError(f"unknown timm architecture {arch!r} (models.*.arch): {exc}") from exc
    # A zero head starts training at chance-level loss (ln 2) instead of the large random
    # logits a fresh 1280-wide linear layer gives on un-normalised features.
    head = model.get_classifier()
    if isinstance(head, torch.nn.Linear):
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
    if pretrained:
        load_pretrained_backbone(model, pretrained_path(pretrained_dir, arch), arch)
    return model


def load_pretrained_backbone(model: torch.nn.Module, path: Path, arch: str) -> None:
    if not path.is_file():
        raise ConfigError(
            f"pretrained weights for {arch!r} not found at {path}. Run "
            f"`snakemake fetch_pretrained` on a machine with internet access, or place an "
            f"ImageNet state dict saved with safetensors there; set models.pretrained: false "
            f"to train from scratch."
        )
    state = load_file(str(path))
    own = model.state_dict()
    classifier = model.default_cfg.get("classifier", "classifier")
    # The ImageNet head (1000 classes) does not fit a 2-class model: keep ours.
    usable = {k: v for k, v in state.items() if not k.startswith(classifier + ".")}
    mismatched = [k for k, v in usable.items() if k in own and own[k].shape != v.shape]
    if mismatched:
        raise ConfigError(f"{path}: tensors do not match {arch!r}: {mismatched[:5]}")
    missing, unexpected = model.load_state_dict(usable, strict=False)
    missing = [k for k in missing if not k.startswith(classifier + ".")]
    if missing or unexpected:
        raise ConfigError(
            f"{path}: not a state dict of {arch!r} (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )


def fetch_pretrained(arch: str, out: str | Path) -> None:
    """Download ImageNet weights through timm's hub machinery and store them as safetensors."""
    from .io import atomic_path

    try:
        model = timm.create_model(arch, pretrained=True)
    except Exception as exc:  # network errors come in many types (urllib, requests, hub)
        raise ConfigError(
            f"could not download ImageNet weights of {arch!r} ({type(exc).__name__}: {exc}). "
            f"Without internet access, place a safetensors state dict at {out} yourself."
        ) from exc
    with atomic_path(out) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save_weights(model: torch.nn.Module, path: str | Path) -> None:
    from .io import atomic_path

    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp))


def load_weights(model: torch.nn.Module, path: str | Path) -> torch.nn.Module:
    model.load_state_dict(load_file(str(path)))
    return model
