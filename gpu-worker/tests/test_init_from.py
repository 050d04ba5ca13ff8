"""initFrom: a training started from a published LoRA's weights, or continued from a finished one's final checkpoint."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

import handler
from conftest import train_job

PARAMS = dict(steps=6, rank=4, seed=5)


def run(store, key: str, *, final: bool = False, init: tuple[str, str] | None = None, **params) -> dict:
    extra: dict = {}
    if final:
        extra["checkpoint"] = {"url": store.url(f"ckpt/{key}.pt"), "everySteps": 1000, "finalUrl": store.url(f"final/{key}.pt")}
    if init:
        extra["initFrom"] = {"url": store.url(init[1]), "kind": init[0]}
    result = handler.run_job(train_job(store, job_id=f"job-{key}", out=f"out/{key}.safetensors", extra=extra, **{**PARAMS, **params}))
    return result


def weights(store, key: str) -> dict[str, torch.Tensor]:
    return load_safetensors(store.objects[f"out/{key}.safetensors"])


def test_a_continued_training_ends_where_an_uninterrupted_one_does_and_pays_only_for_the_added_steps(worker_env, store, progress_log):
    straight = run(store, "straight", steps=9)
    parent = run(store, "parent", final=True)
    assert parent["finalCheckpoint"]["step"] == 6
    child = run(store, "child", init=("checkpoint", "final/parent.pt"), steps=9)
    assert "error" not in child, child
    assert child["metrics"]["steps"] == 3  # steps 7..9 only
    assert len(child["metrics"]["lossCurve"]) == 9  # the parent's history carried on
    a, b = weights(store, "straight"), weights(store, "child")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    assert straight["metrics"]["finalLoss"] == pytest.approx(child["metrics"]["finalLoss"], rel=1e-5)


def test_a_continued_training_must_be_the_same_training_made_longer(worker_env, store, progress_log):
    run(store, "parent", final=True)
    other_lr = run(store, "child", init=("checkpoint", "final/parent.pt"), steps=9, learningRate=5e-4)
    assert other_lr["error"].startswith("[INPUT] initFrom: the checkpoint belongs to a different training (learningRate")
    shorter = run(store, "child2", init=("checkpoint", "final/parent.pt"), steps=6)
    assert shorter["error"] == "[INPUT] params.steps: 6 is not past the continued training's step 6"


def test_a_training_from_a_published_lora_starts_with_its_weights(worker_env, store, progress_log):
    # alpha != rank: the published file has alpha/rank folded into lora_B, which loading must undo
    # (the child's own scale is folded in again when it is saved).
    assert "error" not in run(store, "parent", alpha=8)
    child = run(store, "child", init=("lora", "out/parent.safetensors"), steps=1, learningRate=1e-12, alpha=8)
    assert "error" not in child, child
    parent_w, child_w = weights(store, "parent"), weights(store, "child")
    assert parent_w.keys() == child_w.keys()
    for k in parent_w:
        torch.testing.assert_close(parent_w[k], child_w[k], rtol=1e-4, atol=1e-6)


def test_a_published_lora_of_another_rank_or_layout_is_refused(worker_env, store, progress_log):
    run(store, "parent")
    assert "another rank" in run(store, "child", init=("lora", "out/parent.safetensors"), rank=2)["error"]
    kohya = {f"lora_unet_{k.replace('.', '_')}": v for k, v in weights(store, "parent").items()}
    store.objects["out/kohya.safetensors"] = save_safetensors(kohya)
    assert run(store, "child", init=("lora", "out/kohya.safetensors"))["error"].startswith("[INPUT] initFrom: the LoRA is in kohya layout")
