"""Class-weighted cross-entropy and the distillation loss of the paper."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def class_weights(labels: np.ndarray, num_classes: int = 2) -> torch.Tensor:
    """Inverse-frequency weights n / (C * n_c), from the train split's class counts."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(np.float64)
    if (counts == 0).any():
        raise ValueError(f"every class needs at least one training image, counts {counts.tolist()}")
    return torch.tensor(counts.sum() / (num_classes * counts), dtype=torch.float32)


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    targets: torch.Tensor,
    weight: torch.Tensor | None,
    alpha: float,
    temperature: float,
) -> torch.Tensor:
    """L = (1 - alpha) * CE_weighted + alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)).

    The KL term is averaged over the batch (`batchmean`), the T^2 factor keeps its gradient
    scale independent of T (Hinton et al.).
    """
    ce = F.cross_entropy(student_logits, targets, weight=weight)
    kd = F.kl_div(
        F.log_softmax(student_logits / temperature, dim=1),
        F.log_softmax(teacher_logits / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    )
    return (1.0 - alpha) * ce + alpha * temperature**2 * kd
