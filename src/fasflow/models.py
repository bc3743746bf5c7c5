"""Model factory: timm architectures with a 2-class head, local pretrained weights, trained-model files.

A trained model is three files (MODEL_FILES), written by training and read back by
prediction, export and latency through one loader, `load_trained(weights, summary)`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from . import MODEL_FILES  # noqa: F401  (the files of a trained model; re-exported for callers)
from .errors import ConfigError, DataError

NUM_CLASSES = 2
# What summary.json must hold to rebuild the network.
SUMMARY_KEYS = ("arch", "dropout", "input_size")


def create_model(
    arch: str,
    dropout: float,
    pretrained: str | Path | None = None,
    num_classes: int = NUM_CLASSES,
) -> torch.nn.Module:
    """Build `arch` with `num_classes` outputs and `dropout` before the classifier.

    `pretrained` names a local safetensors file of ImageNet weights for the backbone (the
    classifier head is re-initialised); None trains from scratch. Nothing is downloaded here:
    compute nodes are often offline.
    """
    import timm

    try:
        model = timm.create_model(arch, pretrained=False, num_classes=num_classes, drop_rate=dropout)
    except RuntimeError as exc:  # timm raises RuntimeError for unknown names
        raise ConfigError(f"unknown timm architecture {arch!r}: {exc}") from exc
    # A zero head starts training at chance-level loss (ln 2) instead of the large random
    # logits a fresh 1280-wide linear layer gives on un-normalised features.
    head = model.get_classifier()
    if isinstance(head, torch.nn.Linear):
        torch.nn.init.zeros_(head.weight)
        torch.nn.init.zeros_(head.bias)
    if pretrained is not None:
        load_pretrained_backbone(model, Path(pretrained), arch)
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
    classifier = model.default_cfg.get("classifier", "classifier")  # timm's own metadata, not config
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
    import timm

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


def load_trained(weights: str | Path, summary: str | Path) -> tuple[torch.nn.Module, dict]:
    """Rebuild a trained model from its weights and summary.json, in eval mode.

    The one loader of trained models (prediction, export, latency, the frozen teacher).
    Errors name the file that is missing or does not fit.
    """
    weights, summary = Path(weights), Path(summary)
    for path in (summary, weights):
        if not path.is_file():
            raise DataError(f"{path}: not found (train the model first)")
    try:
        info = json.loads(summary.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{summary}: not a readable JSON file ({exc})") from exc
    missing = [k for k in SUMMARY_KEYS if k not in info]
    if missing:
        raise DataError(f"{summary}: missing key(s) {missing}")
    model = create_model(info["arch"], dropout=float(info["dropout"]))
    try:
        model.load_state_dict(load_file(str(weights)))
    except (OSError, RuntimeError) as exc:  # unreadable file, or shapes/keys of another network
        raise DataError(f"{weights}: does not hold {info['arch']!r} weights ({exc})") from exc
    return model.eval(), info


def frozen(model: torch.nn.Module) -> torch.nn.Module:
    """The model in eval mode with gradients off (the distillation teacher)."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def resolve_device(device: str) -> torch.device:
    """'auto' -> CUDA when visible, else CPU; 'cuda' without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but no CUDA device is visible")
    return torch.device(device)
