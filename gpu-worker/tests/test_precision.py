"""The GPU a job is billed for: no silent CPU fallback, no emulated bf16, no FLUX in fp16, and samples
decoded outside fp16/bf16 autocast."""

from __future__ import annotations

import json

import pytest
import torch

import handler
import models
from conftest import train_job


def test_the_image_refuses_to_work_without_cuda(worker_env, store, progress_log, monkeypatch) -> None:
    monkeypatch.setenv("LORAFLOW_REQUIRE_CUDA", "1")
    job = train_job(store, steps=2)
    job["input"]["claim"] = {"url": store.url("claims/0.json"), "readUrl": store.url("claims/0.json"),
                             "attemptUrls": [store.url("claims/0.attempt-0.json")]}
    result = handler.run_job(job)
    assert result["error"].startswith("[INTERNAL] no usable CUDA device: torch "), result
    assert "driver >= " in result["error"] and "allowed CUDA versions" in result["error"]
    assert not store.requests, "no claim, no download: another worker can take the job"


def test_auto_precision_never_picks_emulated_bf16(monkeypatch) -> None:
    # A pre-Ampere GPU: bf16 only through emulation.
    monkeypatch.setattr(models, "device", lambda: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    assert models.training_dtype("auto") == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert models.training_dtype("auto") == torch.bfloat16


def test_flux_in_fp16_is_refused_with_a_reason(worker_env, store, progress_log) -> None:
    result = handler.run_job(train_job(store, base="tiny-flux", steps=2, mixedPrecision="fp16"))
    assert result["error"].startswith("[INPUT] params.mixedPrecision: flux cannot train in fp16 (its activations overflow")
    assert "use bf16" in result["error"]


def test_samples_are_decoded_outside_autocast(worker_env, store, progress_log, monkeypatch) -> None:
    from diffusers import AutoencoderKL, UNet2DConditionModel

    seen: dict[str, list[bool]] = {"decode": [], "unet": []}
    real_decode, real_forward = AutoencoderKL.decode, UNet2DConditionModel.forward

    def decode(self, *args, **kwargs):
        seen["decode"].append(torch.is_autocast_enabled("cpu"))
        return real_decode(self, *args, **kwargs)

    def forward(self, *args, **kwargs):
        if not torch.is_grad_enabled():  # sampling, not training
            seen["unet"].append(torch.is_autocast_enabled("cpu"))
        return real_forward(self, *args, **kwargs)

    monkeypatch.setattr(AutoencoderKL, "decode", decode)
    monkeypatch.setattr(UNet2DConditionModel, "forward", forward)
    job = train_job(store, base="tiny-sdxl", steps=1, mixedPrecision="bf16",
                    extra={"samples": {"prompts": ["zxq"], "urls": {"1": [store.url("s/1.png")]}}})
    result = handler.run_job(job)
    assert "error" not in result, result
    assert seen["unet"] and all(seen["unet"]), "the denoiser runs under the training's autocast"
    assert seen["decode"] == [False], "the VAE decodes outside autocast"
    assert store.objects["s/1.png"].startswith(b"\x89PNG")
