"""Small parts of the training loop (train_lora.py): phase timing, the loss curve's downsampling,
seeding, folding the LoRA scale into the saved weights, peak memory, hashes."""

from __future__ import annotations

import hashlib
import random
import resource
import time

import numpy as np
import torch

MAX_CURVE_POINTS = 200


class PhaseTimer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def start(self, phase: str) -> None:
        self._phase, self._t0 = phase, time.perf_counter()

    def stop(self) -> float:
        elapsed = time.perf_counter() - self._t0
        self.seconds[self._phase] = round(self.seconds.get(self._phase, 0.0) + elapsed, 3)
        return elapsed


def downsample(values: list[float], limit: int = MAX_CURVE_POINTS) -> list[float]:
    """At most `limit` evenly spaced points, always keeping the first and the last."""
    if len(values) <= limit:
        return list(values)
    idx = np.linspace(0, len(values) - 1, limit).round().astype(int)
    return [values[i] for i in idx]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def fold_lora_scale(state: dict[str, torch.Tensor], rank: int, alpha: float) -> dict[str, torch.Tensor]:
    """Multiply alpha/rank into the up (B) matrices, so the saved LoRA has scale 1.0.

    Loaders that ignore or lack alpha (most assume alpha == rank) then apply it correctly.
    """
    scale = alpha / rank
    if scale == 1.0:
        return state
    return {k: v * scale if "lora_B" in k else v for k, v in state.items()}


def peak_memory_bytes(dev: torch.device) -> int:
    if dev.type == "cuda":
        return int(torch.cuda.max_memory_allocated(dev))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
