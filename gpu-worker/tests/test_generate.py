"""The generate task on the tiny model: LoRAs change the images, the same input gives the same PNGs,
the base model is loaded once and stays clean (checksum as in test_warm.py) after every job."""

from __future__ import annotations

import hashlib

import pytest
import torch

import handler
import warm
from conftest import train_job
from families import family_for
from test_warm import checksum


@pytest.fixture
def loras(worker_env, store, progress_log) -> list[dict]:
    """Two tiny LoRAs, trained hard enough (few steps, a high learning rate) to show in 8-bit pixels."""
    out = []
    for k, seed in enumerate((1, 2)):
        result = handler.run_job(train_job(store, steps=3, learningRate=5e-2, seed=seed, out=f"loras/{k}.safetensors"))
        assert "error" not in result, result
        out.append({"url": store.url(f"loras/{k}.safetensors"), "sha256": result["lora"]["sha256"]})
    return out


def generate_job(store, loras: list[dict], *, out: str, job_id: str = "gen-1", **params) -> dict:
    n, prompts = params.pop("n", 2), params.pop("prompts", ["zxq, a photo", "zxq, a drawing"])
    return {
        "id": job_id,
        "input": {
            "task": "generate", "baseModel": "tiny-sd", "loras": loras, "prompts": prompts, "n": n, "seed": 5, "steps": 3,
            "output": {"images": [store.url(f"{out}/{k}.png") for k in range(len(prompts) * n)], "contactSheet": store.url(f"{out}/sheet.png")},
            **params,
        },
    }


def shas(result: dict) -> list[str]:
    assert "error" not in result, result
    return [image["sha256"] for image in result["images"]]


def test_generate_applies_loras_reproducibly_and_leaves_the_base_clean(worker_env, store, loras, model_dir, monkeypatch) -> None:
    from diffusers import UNet2DConditionModel

    warm.drop()
    pristine = checksum(family_for(model_dir / "tiny-sd", torch.device("cpu"), torch.float32).load_trainable())
    loads, real = [], UNet2DConditionModel.from_pretrained.__func__
    monkeypatch.setattr(UNet2DConditionModel, "from_pretrained", classmethod(lambda cls, *a, **k: loads.append(1) or real(cls, *a, **k)))

    base = handler.run_job(generate_job(store, [], out="base"))
    one = handler.run_job(generate_job(store, [{**loras[0], "weight": 1.0}], out="one"))
    kept = warm._held["model"]
    assert checksum(kept) == pristine and not any("lora" in n for n, _ in kept.named_parameters())
    two = handler.run_job(generate_job(store, [{**loras[0], "weight": 1.0}, {**loras[1], "weight": 0.6}], out="two"))
    again = handler.run_job(generate_job(store, [{**loras[0], "weight": 1.0}], out="again"))
    zero = handler.run_job(generate_job(store, [{**loras[0], "weight": 0}], out="zero"))

    assert len(set(shas(base))) == 4, "each prompt and seed its own image"
    assert shas(one) != shas(base) and shas(two) != shas(one), "each LoRA changes what is rendered"
    assert shas(again) == shas(one), "same input, same PNGs"
    assert shas(zero) == shas(base), "a LoRA at weight 0 is the base model"
    assert [(i["prompt"], i["seed"]) for i in one["images"]] == [(0, 5), (0, 6), (1, 5), (1, 6)]
    assert hashlib.sha256(store.objects["one/1.png"]).hexdigest() == one["images"][1]["sha256"]
    assert hashlib.sha256(store.objects["one/sheet.png"]).hexdigest() == one["contactSheet"]["sha256"]
    assert warm._held["model"] is kept and checksum(kept) == pristine, "base weights clean after every job"
    assert len(loads) == 1 and two["metrics"]["warm"], "the base model stays loaded between generate jobs"


def test_bad_generate_inputs_name_their_field(worker_env, store, loras, progress_log) -> None:
    wrong = handler.run_job(generate_job(store, [{**loras[0], "sha256": "0" * 64, "weight": 1.0}], out="bad"))
    assert wrong["error"].startswith("[INPUT] loras.0: the downloaded LoRA has sha256"), wrong
    flux = handler.run_job(generate_job(store, [], out="flux", baseModel="tiny-flux", negativePrompt="blurry"))
    assert flux["error"].startswith("[INPUT] negativePrompt:"), flux
    odd = handler.run_job(generate_job(store, [], out="odd", width=36))
    assert odd["error"].startswith("[INPUT] width:"), odd
    assert not any(k.startswith(("bad/", "flux/", "odd/")) for k in store.objects), "nothing written on failure"
    assert not any("lora" in n for n, _ in warm._held["model"].named_parameters())


@pytest.mark.parametrize("base", ["tiny-sdxl", "tiny-flux"])
def test_generate_runs_every_family_with_its_lora(worker_env, store, progress_log, base) -> None:
    warm.drop()
    trained = handler.run_job(train_job(store, base=base, steps=1, out=f"{base}.safetensors"))
    lora = {"url": store.url(f"{base}.safetensors"), "sha256": trained["lora"]["sha256"], "weight": 1.0}
    result = handler.run_job(generate_job(store, [lora], out=base, baseModel=base, n=1, prompts=["zxq"]))
    assert len(shas(result)) == 1 and result["metrics"]["warm"], "rendered on the denoiser the train job left"
    assert not any("lora" in n for n, _ in warm._held["model"].named_parameters())
