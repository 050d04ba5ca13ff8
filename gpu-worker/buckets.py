"""Image sizes for training: one square size, or aspect-ratio buckets; and the batch order.

Buckets follow kohya's sd-scripts: sides are multiples of a step (1/16 of the resolution,
at least the model's pixel multiple), each bucket has about resolution² pixels, and every
image goes to the bucket whose aspect ratio is closest to its own. A batch only ever holds
images of one bucket.

The batch order is a pure function of (seed, batch number), so a resumed training draws
exactly the batches an uninterrupted one would have.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import torch
from PIL import Image

MAX_ASPECT = 4.0


def bucket_sizes(resolution: int, multiple: int) -> list[tuple[int, int]]:
    """(width, height) pairs with width*height <= resolution², sides multiples of the step."""
    step = max(multiple, (resolution // 16) // multiple * multiple)
    area = resolution * resolution
    sizes = set()
    w = step
    while w <= resolution * 2:
        h = (area // w) // step * step
        if h >= step and max(w / h, h / w) <= MAX_ASPECT:
            sizes.add((w, h))
            sizes.add((h, w))
        w += step
    sizes.add((resolution, resolution))
    return sorted(sizes)


def nearest_bucket(width: int, height: int, sizes: list[tuple[int, int]]) -> tuple[int, int]:
    ratio = math.log(width / height)
    return min(sizes, key=lambda s: (abs(math.log(s[0] / s[1]) - ratio), -s[0] * s[1]))


def fit(img: Image.Image, size: tuple[int, int]) -> tuple[Image.Image, dict[str, Any]]:
    """Resize to cover `size` (width, height), center-crop; plus SDXL's size/crop conditioning."""
    w, h = size
    scale = max(w / img.width, h / img.height)
    rw, rh = max(w, round(img.width * scale)), max(h, round(img.height * scale))
    left, top = (rw - w) // 2, (rh - h) // 2
    out = img.resize((rw, rh), Image.Resampling.BICUBIC).crop((left, top, left + w, top + h))
    geometry = {"original_size": (img.height, img.width), "crop_top_left": (top, left), "target_size": (h, w)}
    return out, geometry


class BatchPlan:
    """Shuffled epochs of same-size batches (the last batch of a bucket may be smaller)."""

    def __init__(self, sizes: list[tuple[int, int]], batch_size: int, seed: int) -> None:
        groups: dict[tuple[int, int], list[int]] = {}
        for i, size in enumerate(sizes):
            groups.setdefault(size, []).append(i)
        self.groups = [groups[k] for k in sorted(groups)]
        self.batch_size, self.seed = batch_size, seed
        self.per_epoch = sum(math.ceil(len(g) / batch_size) for g in self.groups)
        self._epoch = lru_cache(maxsize=2)(self._make_epoch)

    def _make_epoch(self, epoch: int) -> list[list[int]]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        batches = []
        for group in self.groups:
            order = [group[i] for i in torch.randperm(len(group), generator=gen).tolist()]
            batches += [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]

    def batch(self, number: int) -> list[int]:
        """Image indices of the `number`-th batch of the training (0-based)."""
        return self._epoch(number // self.per_epoch)[number % self.per_epoch]
