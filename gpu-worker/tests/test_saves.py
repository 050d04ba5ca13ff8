"""Intermediate LoRAs and multi-prompt samples: each made once, reported across segments and lost jobs."""

from __future__ import annotations

import hashlib

import pytest
from safetensors.torch import load as load_safetensors

import handler
from conftest import train_job
from test_resume import Killed, StepHook

STEPS = 6
PROMPTS = ["zxq, a red square", "a blue zxq"]


def job(store, key: str, *, resume: str | None = None, every: int = 1000, **extra) -> dict:
    spec = {
        "filesTag": key,
        "checkpoint": {"url": store.url(f"ckpt/{key}.pt"), "everySteps": every},
        "samples": {"prompts": PROMPTS, "urls": {str(s): [store.url(f"{key}/sample-{s}-{i}.png") for i in range(2)] for s in (2, 4, 6)}},
        "saves": {"urls": {str(s): store.url(f"{key}/lora-step{s}.safetensors") for s in (2, 4)}},
        **extra,
    }
    if resume:
        spec["resume"] = {"url": store.url(f"ckpt/{resume}.pt")}
    return train_job(store, job_id=f"job-{key}", out=f"{key}/lora.safetensors", extra=spec, steps=STEPS, gradientAccumulation=2)


def test_saves_and_samples_survive_a_segment_end(worker_env, store, progress_log) -> None:
    first = handler.run_job(job(store, "seg0", stopAtStep=3))
    assert "error" not in first, first
    assert [(s["step"], s["filesTag"]) for s in first["saves"]] == [(2, "seg0")]
    assert first["metrics"]["events"] == [{"step": 3, "kind": "segment-end"}]

    second = handler.run_job(job(store, "seg1", resume="seg0"))
    assert "error" not in second, second
    assert [(s["step"], s["filesTag"]) for s in second["saves"]] == [(2, "seg0"), (4, "seg1")]
    assert sorted((s["step"], s["prompt"], s["filesTag"]) for s in second["samples"]) == [
        (2, 0, "seg0"), (2, 1, "seg0"), (4, 0, "seg1"), (4, 1, "seg1"), (6, 0, "seg1"), (6, 1, "seg1")]
    assert second["metrics"]["events"] == [{"step": 3, "kind": "segment-end"}]
    assert "seg1/lora-step2.safetensors" not in store.objects  # not redone
    final = load_safetensors(store.objects["seg1/lora.safetensors"])
    for save in second["saves"]:
        data = store.objects[f"{save['filesTag']}/lora-step{save['step']}.safetensors"]
        assert hashlib.sha256(data).hexdigest() == save["sha256"] and len(data) == save["bytes"]
        weights = load_safetensors(data)
        assert weights.keys() == final.keys()
        assert any(not weights[k].equal(final[k]) for k in weights)  # an earlier state, not the final one


def test_a_lost_job_s_saves_are_reported_by_the_job_that_resumes(worker_env, store, progress_log) -> None:
    hook = StepHook()

    def kill():
        raise Killed()

    hook.at(5, kill)
    try:
        with pytest.raises(Killed):  # dies after its checkpoint at step 4 (and the save at 4)
            handler.run_job(job(store, "lost", every=2))
    finally:
        hook.clear()
    resumed = handler.run_job(job(store, "next", resume="lost"))
    assert "error" not in resumed, resumed
    assert [(s["step"], s["filesTag"]) for s in resumed["saves"]] == [(2, "lost"), (4, "lost")]
    assert resumed["metrics"]["events"] == [{"step": 4, "kind": "resumed-after-loss"}]
    assert not any(k.startswith("next/lora-step") for k in store.objects)
