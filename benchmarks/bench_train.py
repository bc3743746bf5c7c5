"""Training-loop efficiency at the demo size: the real loop (DataLoader, augmentation, validation
bookkeeping) against raw forward+backward+step on pre-made tensors, measured in one run; and the
memory layout the loop trains in (channels_last) against the default (contiguous NCHW).

Targets: loop throughput / raw channels_last throughput >= 0.85 (issue 3);
raw channels_last / raw contiguous >= 1.2 on CPU (why fasflow.train uses channels_last everywhere).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import yaml  # noqa: E402

from fasflow.config import validate_config  # noqa: E402
from fasflow.models import create_model  # noqa: E402
from fasflow.train import train_config, train_model  # noqa: E402

SIZE, FACE, BATCH, N = 48, 56, 32, 640


def raw_throughput(memory_format: torch.memory_format, size: int = SIZE, batch: int = BATCH, steps: int = 20) -> float:
    """images/s of forward + backward + AdamW step on pre-made tensors (no data pipeline)."""
    torch.manual_seed(0)
    model = create_model("mobilenetv2_100", dropout=0.2).to(memory_format=memory_format)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, y = torch.randn(batch, 3, size, size).contiguous(memory_format=memory_format), torch.randint(0, 2, (batch,))
    model.train()
    for step in range(steps + 2):
        if step == 2:
            start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return batch * steps / (time.perf_counter() - start)


def loop_throughput(workers: int) -> float:
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, size=(N, FACE, FACE, 3), dtype=np.uint8)
    labels = (np.arange(N) % 3 != 0).astype(np.int64)
    # The paper's S0 settings from config.yaml (schema defaults filled in), at the demo's size.
    config = validate_config(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()), ROOT / "workflow" / "schemas" / "config.schema.yaml")
    train = {**config["train"], "input_size": SIZE, "batch_size": BATCH, "max_epochs": 2, "num_workers": workers, "device": "cpu", "seed": 0}
    cfg = train_config("bench", "mobilenetv2_100", train, config["scenarios"]["S0"])
    summary = train_model(cfg, faces, labels, faces[:64], labels[:64], outputs=None)
    # images/s of the second epoch's training phase (the first pays start-up costs)
    return summary["history"][-1]["images_per_s"]


if __name__ == "__main__":
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
    head = f"{SIZE} px, batch {BATCH}, {torch.get_num_threads()} thread(s)"
    nchw = raw_throughput(torch.contiguous_format)
    raw = raw_throughput(torch.channels_last)
    print(f"{head}: raw fwd+bwd+step contiguous {nchw:.0f} img/s, channels_last {raw:.0f} img/s, "
          f"ratio {raw / nchw:.2f} (target >= 1.2)")
    for workers in (0, 1):
        loop = loop_throughput(workers)
        print(f"{head}: training loop ({workers} loader workers) {loop:.0f} img/s, "
              f"ratio to raw channels_last {loop / raw:.2f} (target >= 0.85)")
