"""A warm worker keeps the base denoiser between jobs and gives it back clean: same base weights
(checksum), no LoRA layers, no checkpointing, and the next job trains exactly as on a fresh worker."""

from __future__ import annotations

import hashlib

import torch

import handler
import warm
from conftest import train_job
from families import family_for


def checksum(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def test_the_kept_denoiser_is_clean_after_every_job(worker_env, store, progress_log, model_dir, monkeypatch) -> None:
    from diffusers import UNet2DConditionModel

    warm.drop()
    loads, real = [], UNet2DConditionModel.from_pretrained.__func__
    monkeypatch.setattr(UNet2DConditionModel, "from_pretrained",
                        classmethod(lambda cls, *a, **k: loads.append(1) or real(cls, *a, **k)))
    pristine = checksum(family_for(model_dir / "tiny-sd", torch.device("cpu"), torch.float32).load_trainable())
    loads.clear()

    first = handler.run_job(train_job(store, steps=3, gradientCheckpointing=True, out="out/a.safetensors"))
    kept = warm._held["model"]
    assert checksum(kept) == pristine
    assert not any("lora" in n for n, _ in kept.named_parameters()) and not kept.is_gradient_checkpointing

    # a job that fails mid-training (its loss diverges at step 1) leaves it clean too
    import torch.nn.functional as F

    with monkeypatch.context() as m:
        real_mse = F.mse_loss
        m.setattr(F, "mse_loss", lambda *a, **k: real_mse(*a, **k) * float("nan"))
        failed = handler.run_job(train_job(store, steps=3, out="out/nan.safetensors"))
    assert failed["error"].startswith("[INPUT] params.learningRate: training diverged"), failed
    assert checksum(kept) == pristine
    second = handler.run_job(train_job(store, steps=3, gradientCheckpointing=True, out="out/b.safetensors"))
    assert "error" not in first and "error" not in second, (first, second)
    assert second["lora"]["sha256"] == first["lora"]["sha256"], "the warm model trains as a fresh one"
    assert warm._held["model"] is kept and checksum(kept) == pristine
    assert len(loads) == 1, "loaded once, kept for the next job"


def test_a_job_on_another_base_model_replaces_the_kept_one(worker_env, store, progress_log) -> None:
    warm.drop()
    assert "error" not in handler.run_job(train_job(store, steps=1))
    sd = warm._held["model"]
    assert "error" not in handler.run_job(train_job(store, base="tiny-flux", steps=1))
    assert warm._held["model"] is not sd and type(warm._held["model"]).__name__ == "FluxTransformer2DModel"
