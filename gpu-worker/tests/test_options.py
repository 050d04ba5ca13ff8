"""Per-family training options: each one changes the training, options a family lacks are refused,
FLUX trains at guidance 1.0, and captions longer than the text encoder's window are reported."""

from __future__ import annotations

import pytest
import torch

import handler
from conftest import train_job


def lora_sha(store, base: str, key: str, **params) -> str:
    result = handler.run_job(train_job(store, base=base, steps=3, out=f"out/{key}.safetensors", **params))
    assert "error" not in result, result
    return result["lora"]["sha256"]


@pytest.mark.parametrize(("base", "variants"), [
    ("tiny-sd", [dict(snrGamma=5.0), dict(noiseOffset=0.1), dict(captionDropout=0.5), dict(flipHorizontal=True)]),
    ("tiny-flux", [dict(timestepSampling="uniform"), dict(timestepSampling="shift"), dict(flipHorizontal=True)]),
])
def test_each_option_changes_the_training(base, variants, worker_env, store, progress_log) -> None:
    plain = lora_sha(store, base, "plain")
    assert lora_sha(store, base, "again") == plain
    for i, params in enumerate(variants):
        assert lora_sha(store, base, f"v{i}", **params) != plain, params


@pytest.mark.parametrize(("base", "params", "message"), [
    ("tiny-flux", dict(snrGamma=5.0), "[INPUT] params.snrGamma: only for SD and SDXL"),
    ("tiny-flux", dict(noiseOffset=0.1), "[INPUT] params.noiseOffset: only for SD and SDXL"),
    ("tiny-sdxl", dict(timestepSampling="shift"), "[INPUT] params.timestepSampling: sdxl trains with uniform"),
])
def test_options_a_family_lacks_are_refused(base, params, message, worker_env, store, progress_log) -> None:
    result = handler.run_job(train_job(store, base=base, steps=2, **params))
    assert result["error"].startswith(message), result


def test_flux_trains_at_guidance_one(worker_env, store, progress_log, monkeypatch) -> None:
    from diffusers import FluxTransformer2DModel

    seen, real = [], FluxTransformer2DModel.forward

    def forward(self, *args, guidance=None, **kwargs):
        seen.append(guidance)
        return real(self, *args, guidance=guidance, **kwargs)

    monkeypatch.setattr(FluxTransformer2DModel, "forward", forward)
    monkeypatch.setattr(FluxTransformer2DModel, "config", property(
        lambda self: type(self.__dict__["_internal_dict"])({**self.__dict__["_internal_dict"], "guidance_embeds": True})))
    handler.run_job(train_job(store, base="tiny-flux", steps=1))  # tiny-flux has no guidance embedder: may fail after
    assert seen and all(g is not None and torch.all(g == 1.0) for g in seen), seen


def test_captions_longer_than_the_window_are_reported(worker_env, store, progress_log) -> None:
    job = train_job(store, steps=1)
    job["input"]["images"][1]["caption"] = "a very long caption " * 40
    result = handler.run_job(job)
    assert "error" not in result, result
    assert result["metrics"]["truncatedCaptions"] == [job["input"]["images"][1]["id"]]
    short = handler.run_job(train_job(store, steps=1))
    assert "truncatedCaptions" not in short["metrics"]


@pytest.mark.parametrize(("family", "params", "resolution", "on"), [
    ("flux", {}, 1024, True), ("sdxl", {}, 1024, True), ("sdxl", {}, 768, False), ("sd", {}, 1024, False),
    ("flux", {"gradientCheckpointing": False}, 1024, False), ("sd", {"gradientCheckpointing": True}, 512, True),
])
def test_gradient_checkpointing_defaults_on_for_sdxl_and_flux_at_1024(family, params, resolution, on) -> None:
    from families.options import gradient_checkpointing

    assert gradient_checkpointing(family, params, resolution) is on
