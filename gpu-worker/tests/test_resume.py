"""Segments, checkpoints and resume: a training cut anywhere ends with the same weights."""

from __future__ import annotations

import asyncio
import io
import os
import signal

import pytest
import torch
from safetensors.torch import load as load_safetensors

import handler
from conftest import train_job

STEPS = 10
# Exercise every state a resume must carry: lr schedule with warmup, accumulation, batches
# that span epochs (3 images, batch 2), the noise generator.
PARAMS = dict(steps=STEPS, lrScheduler="cosine", warmupSteps=3, gradientAccumulation=2, seed=11)


def job(store, key: str, *, resume: str | None = None, every: int | None = None, **extra) -> dict:
    spec = dict(extra)
    if every or "stopAtStep" in extra or "stopAfterSeconds" in extra:
        spec["checkpoint"] = {"url": store.url(f"ckpt/{key}.pt"), "everySteps": every or 1000}
    if resume:
        spec["resume"] = {"url": store.url(f"ckpt/{resume}.pt")}
    return train_job(store, job_id=f"job-{key}", out=f"out/{key}.safetensors", extra=spec, **PARAMS)


def weights(store, key: str) -> dict[str, torch.Tensor]:
    return load_safetensors(store.objects[f"out/{key}.safetensors"])


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def ckpt_step(store, key: str) -> int:
    return torch.load(io.BytesIO(store.objects[f"ckpt/{key}.pt"]), weights_only=True)["step"]


@pytest.fixture
def reference(worker_env, store, progress_log):
    result = handler.run_job(job(store, "full"))
    assert "error" not in result, result
    return result, weights(store, "full")


class Killed(BaseException):
    """Stands in for the process dying (no except clause of the worker catches it)."""


class StepHook:
    """hook.at(n, action): run `action` inside the training loop at step n; hook.clear() stops it."""

    def __init__(self) -> None:
        from families import sd as family_sd

        self.cls, self.real = family_sd.StableDiffusion, family_sd.StableDiffusion.loss

    def at(self, n: int, action) -> None:
        calls, real = {"n": 0}, self.real

        def loss(fam, *args):
            calls["n"] += 1
            if calls["n"] == 2 * (n - 1) + 1:  # each step computes the loss twice (accumulation 2)
                action()
            return real(fam, *args)

        self.cls.loss = loss

    def clear(self) -> None:
        self.cls.loss = self.real


@pytest.fixture
def hook():
    h = StepHook()
    yield h
    h.clear()


def test_segments_end_with_the_same_weights(reference, store, worker_env) -> None:
    full, full_weights = reference
    first = handler.run_job(job(store, "seg1", stopAtStep=4))
    assert "error" not in first, first
    assert first["step"] == 4 and "lora" not in first and "out/seg1.safetensors" not in store.objects
    assert first["checkpoint"]["step"] == 4 and ckpt_step(store, "seg1") == 4
    assert first["metrics"]["steps"] == 4

    second = handler.run_job(job(store, "seg2", resume="seg1"))
    assert "error" not in second, second
    assert second["step"] == STEPS and second["metrics"]["steps"] == STEPS - 4  # from step 4, not from 0
    assert_same_weights(weights(store, "seg2"), full_weights)
    # the loss curve covers the whole training, across segments
    assert second["metrics"]["lossCurve"] == pytest.approx(full["metrics"]["lossCurve"], rel=1e-5)
    assert not any(worker_env.iterdir())


def test_killed_job_resumes_from_its_last_periodic_checkpoint(reference, store, hook) -> None:
    _, full_weights = reference

    def kill():
        raise Killed()

    hook.at(5, kill)
    with pytest.raises(Killed):
        handler.run_job(job(store, "killed", every=2))
    assert ckpt_step(store, "killed") == 4  # the periodic one before the kill
    hook.clear()

    resumed = handler.run_job(job(store, "after-kill", resume="killed"))
    assert "error" not in resumed, resumed
    assert resumed["metrics"]["steps"] == STEPS - 4
    assert_same_weights(weights(store, "after-kill"), full_weights)


def test_a_job_the_service_retried_resumes_from_its_own_checkpoint(reference, store, hook) -> None:
    _, full_weights = reference
    spec = job(store, "retried", every=2, resume=None)
    spec["input"]["checkpoint"]["readUrl"] = spec["input"]["checkpoint"]["url"]

    def kill():
        raise Killed()

    hook.at(5, kill)
    with pytest.raises(Killed):  # its worker dies after the checkpoint at step 4
        handler.run_job(spec)
    hook.clear()
    again = handler.run_job(spec)  # the same job input, started again by the service
    assert "error" not in again, again
    assert again["metrics"]["steps"] == STEPS - 4
    assert_same_weights(weights(store, "retried"), full_weights)


def test_sigterm_checkpoints_and_ends_the_segment(reference, store, hook, worker_env) -> None:
    _, full_weights = reference
    hook.at(5, lambda: os.kill(os.getpid(), signal.SIGTERM))
    previous = signal.getsignal(signal.SIGTERM)
    result = asyncio.run(handler.handler(job(store, "term", every=3)))
    assert signal.getsignal(signal.SIGTERM) is previous, "the job's SIGTERM hook is removed afterwards"
    assert "error" not in result, result
    assert "lora" not in result and 5 <= result["step"] < STEPS
    assert result["checkpoint"]["step"] == result["step"] == ckpt_step(store, "term")
    assert not any(worker_env.iterdir())
    hook.clear()

    resumed = handler.run_job(job(store, "after-term", resume="term"))
    assert "error" not in resumed, resumed
    assert_same_weights(weights(store, "after-term"), full_weights)


def test_cancel_uploads_a_checkpoint_before_letting_go(worker_env, store, progress_log, hook) -> None:
    started = asyncio.Event()

    async def main():
        loop = asyncio.get_running_loop()
        hook.at(3, lambda: loop.call_soon_threadsafe(started.set))
        task = asyncio.create_task(handler.handler(job(store, "cancel", every=100)))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert 3 <= ckpt_step(store, "cancel") < STEPS
    assert "out/cancel.safetensors" not in store.objects
    assert not any(worker_env.iterdir())


def test_the_segment_clock_starts_at_the_first_step_not_at_setup(worker_env, store, progress_log, monkeypatch) -> None:
    import time

    import transfer

    real = transfer.download_images

    def slow_download(*args, **kwargs):  # a big dataset: setup longer than the whole segment
        time.sleep(2.0)
        return real(*args, **kwargs)

    monkeypatch.setattr(transfer, "download_images", slow_download)
    result = handler.run_job(job(store, "slow-setup", stopAfterSeconds=1.0))
    assert "error" not in result, result
    assert result["step"] > 1, "a segment whose setup took longer than it trained more than one step"


def test_stop_after_seconds_ends_a_segment_after_at_least_one_step(worker_env, store, progress_log) -> None:
    result = handler.run_job(job(store, "timed", stopAfterSeconds=0.001))
    assert "error" not in result, result
    assert result["step"] == 1 and result["checkpoint"]["step"] == 1 and "lora" not in result
    again = handler.run_job(job(store, "timed2", resume="timed", stopAfterSeconds=0.001))
    assert again["step"] == 2 and again["metrics"]["steps"] == 1 and len(again["metrics"]["lossCurve"]) == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda j, s: j["input"].pop("checkpoint"), "[INPUT] checkpoint: required when stopAtStep"),
        (lambda j, s: j["input"]["checkpoint"].update(url=s.url("ckpt/seg1.pt")),
         "[INPUT] checkpoint.url: must not overwrite the checkpoint this job resumes from"),
        (lambda j, s: j["input"].update(samples={"prompts": ["zxq"], "urls": {"11": [s.url("s/11.png")]}}),
         "[INPUT] samples.urls.11: step 11 is after params.steps"),
        (lambda j, s: j["input"].update(samples={"prompts": ["zxq", "zxq red"], "urls": {"4": [s.url("s/4.png")]}}),
         "[INPUT] samples.urls.4: 1 URLs for 2 prompts"),
        (lambda j, s: j["input"].update(saves={"urls": {"11": s.url("s/11.safetensors")}}),
         "[INPUT] saves.urls.11: step 11 is after params.steps"),
        (lambda j, s: j["input"]["params"].update(rank=8),
         "[INPUT] resume: the checkpoint belongs to a different training (alpha: 4 != 8, rank: 4 != 8)"),
        (lambda j, s: j["input"]["images"].pop(), "[INPUT] resume: the checkpoint belongs to a different training (images"),
    ],
)
def test_bad_resume_and_segment_inputs(worker_env, store, progress_log, change, message) -> None:
    first = handler.run_job(job(store, "seg1", stopAtStep=2))
    assert "error" not in first, first
    bad = job(store, "next", resume="seg1", stopAtStep=6)
    change(bad, store)
    result = handler.run_job(bad)
    assert result.get("error", "").startswith(message), result


def test_garbage_checkpoint_is_input_error(worker_env, store, progress_log) -> None:
    store.objects["ckpt/junk.pt"] = b"not a checkpoint"
    result = handler.run_job(job(store, "x", resume="junk"))
    assert result["error"].startswith("[INPUT] resume: not a loraflow checkpoint")
