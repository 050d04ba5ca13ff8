"""The per-job cache of VAE latent posteriors and text conditioning: every image and caption is
encoded once, then each step only runs the denoiser.

With flips on, the mirrored image is encoded too (latents of a flipped image are not the flipped
latents); with caption dropout on, the empty caption is encoded once and swapped in per sample.

Images whose encodings came from the S3 cache (encoding_cache.py) are not encoded again; when every
image's did, the text encoders and the VAE are never loaded.

Memory: images are decoded one chunk at a time (a 5,000-image dataset never sits decoded in RAM at
once), and the cache lives in CPU memory (pinned on CUDA, so batches copy over asynchronously):
the GPU holds only the batch being trained.
"""

from __future__ import annotations

import numpy as np
import torch

from buckets import fit
from encoding_cache import Entry

ENCODE_BATCH = 8


def _pixel_tensor(img) -> torch.Tensor:
    """PIL RGB -> (3,H,W) in [-1, 1], the VAE's input range."""
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)


class Cache:
    """Per-image latent posteriors and conditioning (images grouped by size)."""

    def __init__(self, fam, load_image, sizes: list[tuple[int, int]], prompts: list[str], *,
                 flip: bool = False, caption_dropout: bool = False, cached: dict[int, Entry] | None = None) -> None:
        """`load_image(i)` decodes image i (called once per image not in `cached`, a chunk at a time)."""
        n = len(sizes)
        cached = cached or {}
        self.sizes = sizes
        self.device = fam.device
        pin = fam.device.type == "cuda"

        def keep(t: torch.Tensor) -> torch.Tensor:
            t = t.detach().to("cpu")
            return t.pin_memory() if pin else t

        self.mean: list[list[torch.Tensor]] = [[] for _ in range(n)]  # [plain, mirrored]
        self.std: list[list[torch.Tensor]] = [[] for _ in range(n)]
        self.cond: list[dict[str, torch.Tensor]] = [None] * n  # type: ignore[list-item]
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, size in enumerate(sizes):
            if i in cached:
                entry = cached[i]
                self.mean[i], self.std[i] = [keep(t) for t in entry.mean], [keep(t) for t in entry.std]
                self.cond[i] = {k: keep(v) for k, v in entry.cond.items()}
            else:
                by_size.setdefault(size, []).append(i)
        self.encoded = sorted(i for members in by_size.values() for i in members)
        with torch.no_grad():  # not inference_mode: these tensors feed autograd-recorded ops later
            self.empty = None
            if caption_dropout:
                stored = next((e.empty for e in cached.values() if e.empty), None)
                self.empty = {k: keep(v) for k, v in (stored or fam.encode_text([""])[0]).items()}
            for size in sorted(by_size):
                members = by_size[size]
                for start in range(0, len(members), ENCODE_BATCH):
                    chunk = members[start : start + ENCODE_BATCH]
                    fitted = [fit(load_image(i), size) for i in chunk]
                    pixels = torch.stack([_pixel_tensor(img) for img, _ in fitted])
                    geometry = [g for _, g in fitted]
                    del fitted  # only this chunk's pixels stay alive
                    mean, std, cond = fam.encode(pixels, [prompts[i] for i in chunk], geometry)
                    for j, i in enumerate(chunk):
                        self.mean[i].append(keep(mean[j]))
                        self.std[i].append(keep(std[j]))
                        self.cond[i] = {k: keep(v) for k, v in cond[j].items()}
                    if flip:
                        mean, std = fam.vae_posterior(torch.flip(pixels, dims=[-1]))
                        for j, i in enumerate(chunk):
                            self.mean[i].append(keep(mean[j]))
                            self.std[i].append(keep(std[j]))

    def entry(self, i: int, truncated: bool) -> Entry:
        """Image i's encodings, as the S3 cache stores them."""
        return Entry(size=self.sizes[i], mean=self.mean[i], std=self.std[i], cond=self.cond[i], empty=self.empty, truncated=truncated)

    def batch(self, idx: list[int], mirrored: list[bool] | None = None, dropped: list[bool] | None = None):
        mirrored = mirrored or [False] * len(idx)
        dropped = dropped or [False] * len(idx)
        conds = [{**self.cond[i], **self.empty} if drop else self.cond[i] for i, drop in zip(idx, dropped)]

        def on_device(parts: list[torch.Tensor]) -> torch.Tensor:
            return torch.stack(parts).to(self.device, non_blocking=True)

        cond = {k: on_device([c[k] for c in conds]) for k in conds[0]}
        mean = on_device([self.mean[i][int(m)] for i, m in zip(idx, mirrored)])
        std = on_device([self.std[i][int(m)] for i, m in zip(idx, mirrored)])
        return mean, std, cond
