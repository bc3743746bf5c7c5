"""Tiny trained-model folders and ONNX exports for the export/quantize/predict tests."""

from __future__ import annotations

from pathlib import Path

import torch

from fasflow.export import export_onnx
from fasflow.io import write_json
from fasflow.models import create_model, save_weights

INPUT_SIZE = 32
FACE_SIZE = 40
MARGIN = 0.2


def make_model_dir(folder: Path, arch: str = "mobilenetv2_100", seed: int = 0) -> Path:
    """results/models/{name}/ as training writes it: weights.safetensors + summary.json."""
    torch.manual_seed(seed)
    model = create_model(arch, dropout=0.2).eval()
    # Random BatchNorm statistics so the network is not near-constant and labels vary.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
        # timm zero-initialises the head: every model would output 0 and parity be trivial.
        head = model.get_classifier()
        torch.nn.init.normal_(head.weight, std=0.5)
        torch.nn.init.normal_(head.bias, std=0.5)
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(model, folder / "weights.safetensors")
    write_json(folder / "summary.json", {"name": folder.name, "arch": arch, "dropout": 0.2, "input_size": INPUT_SIZE})
    return folder


def export_tiny(model: torch.nn.Module, path: Path, opset: int = 17, fold_constants: bool = True) -> dict:
    meta = {"name": path.stem, "arch": "test", "input_size": INPUT_SIZE, "face_margin": MARGIN, "face_size": FACE_SIZE}
    return export_onnx(model, path, INPUT_SIZE, opset=opset, metadata=meta, fold_constants=fold_constants)
