"""The memory plan: images decoded a chunk at a time, the cache in CPU memory, and during training
no text encoder or VAE on the training device. The first part runs everywhere; where the training
device is a GPU (it is the CPU on the CPU runner, so there is nothing to tell apart) the second runs too."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

import cache
import handler
import images
import train_lora
from conftest import train_job


@pytest.mark.parametrize("base", ["tiny-sdxl", "tiny-flux"])
def test_at_most_one_chunk_of_decoded_images_is_alive(base, worker_env, store, progress_log, monkeypatch) -> None:
    monkeypatch.setattr(cache, "ENCODE_BATCH", 2)
    alive: list[weakref.ref] = []
    peak = {"n": 0}
    real_open = images.open_rgb

    def tracked_open(*args, **kwargs):
        img = real_open(*args, **kwargs)
        alive.append(weakref.ref(img))
        gc.collect()
        peak["n"] = max(peak["n"], sum(r() is not None for r in alive))
        return img

    monkeypatch.setattr(train_lora, "open_rgb", tracked_open)
    result = handler.run_job(train_job(store, n_images=5, base=base, steps=1, aspectBuckets=True))
    assert "error" not in result, result
    assert len(alive) >= 10, "every image is decoded once to check it, once to encode it"
    assert 1 <= peak["n"] <= 2, f"{peak['n']} decoded images alive at once (chunks of 2)"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the training device is the CPU: nothing to tell apart")
@pytest.mark.parametrize("base", ["tiny-sdxl", "tiny-flux"])
def test_during_training_only_the_denoiser_is_on_the_gpu(base, worker_env, store, progress_log, monkeypatch) -> None:
    from cache import Cache
    from families.base import Family

    seen = {}
    real_loss, real_batch = Family.loss, Cache.batch

    def batch(self, *args, **kwargs):
        seen["cache_devices"] = {t.device.type for row in self.mean for t in row}
        seen["pinned"] = all(t.is_pinned() for row in self.mean for t in row)
        return real_batch(self, *args, **kwargs)

    def loss(self, *args, **kwargs):
        seen.setdefault("frozen", {p.device.type for m in self.frozen_modules() for p in m.parameters()})
        return real_loss(self, *args, **kwargs)

    monkeypatch.setattr(Cache, "batch", batch)
    monkeypatch.setattr(Family, "loss", loss)
    result = handler.run_job(train_job(store, base=base, steps=1))
    assert "error" not in result, result
    assert seen["frozen"] == {"cpu"} and seen["cache_devices"] == {"cpu"} and seen["pinned"], seen
