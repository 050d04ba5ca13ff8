"""Train jobs end to end against the tiny SD model and a local presigned-URL stand-in."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

import handler
from conftest import png_bytes
from conftest import train_job as make_train_job
from contract import load_schema, schema_dir
from verify_lora import verify

STEPS = 30


def train_job(store, n_images: int = 3, **params) -> dict:
    params.setdefault("steps", STEPS)
    return make_train_job(store, n_images, **params)


def schema_errors(name: str, instance: dict) -> list[str]:
    validator = Draft202012Validator(load_schema(name, str(schema_dir())))
    return [e.message for e in validator.iter_errors(instance)]


def test_train_job_end_to_end(worker_env, store, progress_log, model_dir: Path, tmp_path: Path) -> None:
    result = handler.run_job(train_job(store))

    assert "error" not in result, result
    assert schema_errors("train-job-output", result) == []
    uploaded = store.objects["out/lora.safetensors"]
    assert result["lora"] == {"sha256": hashlib.sha256(uploaded).hexdigest(), "bytes": len(uploaded)}
    metrics = result["metrics"]
    assert metrics["steps"] == STEPS and len(metrics["lossCurve"]) == STEPS
    assert metrics["finalLoss"] == metrics["lossCurve"][-1]
    assert set(metrics["seconds"]) == {"download", "load", "caching", "training", "upload"}
    assert result["step"] == STEPS and "checkpoint" not in result and "samples" not in result
    assert metrics["device"] == "cpu" and metrics["peakMemoryBytes"] > 0
    assert not any(worker_env.iterdir()), "job temp dir must be removed"

    # The PUT carries exactly the file and nothing a SigV4 signature would have to cover.
    put_headers = next(h for method, key, h in store.requests if method == "PUT")
    assert "Content-Type" not in put_headers

    # Progress: valid payloads, every phase, training steps increasing up to the last one.
    assert all(schema_errors("gpu-progress", p) == [] for p in progress_log)
    phases = [p["phase"] for p in progress_log]
    assert [ph for i, ph in enumerate(phases) if ph not in phases[:i]] == ["download", "load", "caching", "training", "upload"]
    steps = [p["step"] for p in progress_log if p["phase"] == "training"]
    assert steps == sorted(steps) and len(set(steps)) == len(steps) and steps[-1] == STEPS
    assert all(p["totalSteps"] == STEPS for p in progress_log if p["phase"] == "training")
    last = [p for p in progress_log if p["phase"] == "training"][-1]
    assert last["itPerSec"] > 0 and last["etaSeconds"] == 0

    # The published file loads into the base pipeline and changes its output.
    lora_file = tmp_path / "lora.safetensors"
    lora_file.write_bytes(uploaded)
    report = verify(model_dir / "tiny-sd", lora_file)
    assert report["loaded"] is True and report["changed"] is True and report["maxAbsDiff"] > 0, report


def test_same_seed_twice_gives_the_same_lora(worker_env, store, progress_log) -> None:
    first = handler.run_job(train_job(store, steps=5, resolution=40, alpha=8))
    assert not any(worker_env.iterdir())
    second = handler.run_job(train_job(store, steps=5, resolution=40, alpha=8))
    assert not any(worker_env.iterdir())
    assert "error" not in first and "error" not in second, (first, second)
    assert first["lora"]["sha256"] == second["lora"]["sha256"]
    assert first["metrics"]["lossCurve"] == second["metrics"]["lossCurve"]
    third = handler.run_job(train_job(store, steps=5, resolution=40, alpha=8, seed=8))
    assert third["lora"]["sha256"] != first["lora"]["sha256"]


def test_corrupt_image_is_input_error_naming_its_id(worker_env, store, progress_log) -> None:
    job = train_job(store)
    bad = store.put_image("img/bad.png", b"\x89PNG\r\n\x1a\n this is not a png")
    job["input"]["images"][1].update(bad)
    result = handler.run_job(job)
    assert result["error"].startswith("[INPUT] images.1: image ")
    assert bad["id"] in result["error"]
    assert not any(worker_env.iterdir())


def test_missing_image_is_input_error(worker_env, store, progress_log) -> None:
    job = train_job(store)
    job["input"]["images"][2]["url"] = store.url("img/absent.png")
    result = handler.run_job(job)
    assert result["error"].startswith("[INPUT] images.2 (image ") and "HTTP 404" in result["error"]
    assert "SECRET" not in result["error"]


def test_upload_failing_with_500_is_transient(worker_env, store, progress_log) -> None:
    store.fail["out/lora.safetensors"] = 500
    result = handler.run_job(train_job(store, steps=2))
    assert result["error"].startswith("[TRANSIENT] output.loraUrl upload: HTTP 500")
    assert "SECRET" not in result["error"]
    attempts = [r for r in store.requests if r[0] == "PUT"]
    assert len(attempts) > 1, "5xx uploads are retried"
    assert not any(worker_env.iterdir())


def test_unknown_base_model_is_input_error(worker_env, store, progress_log) -> None:
    job = train_job(store, steps=2)
    job["input"]["baseModel"] = "sd-nope"
    result = handler.run_job(job)
    assert result["error"].startswith("[INPUT] baseModel: unknown model 'sd-nope'")


def test_diverging_loss_is_reported(worker_env, store, progress_log, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch.nn.functional as F

    real_mse = F.mse_loss
    monkeypatch.setattr(F, "mse_loss", lambda *a, **k: real_mse(*a, **k) * float("nan"))
    result = handler.run_job(train_job(store, steps=3))
    assert result["error"].startswith("[INPUT] params.learningRate: training diverged")


def claim_spec(store, attempts: int = 3) -> dict:
    return {"url": store.url("claims/0.json"), "readUrl": store.url("claims/0.json"),
            "attemptUrls": [store.url(f"claims/0.attempt-{k}.json") for k in range(attempts)]}


def test_claims_the_training_before_any_work(worker_env, store, progress_log) -> None:
    job = train_job(store, steps=2)
    job["input"]["claim"] = claim_spec(store)
    assert "error" not in handler.run_job(job)
    assert json.loads(store.objects["claims/0.json"]) == {"jobId": "train-1"}
    assert json.loads(store.objects["claims/0.attempt-0.json"]) == {"jobId": "train-1", "attempt": 0}
    claim_put = next(r for r in store.requests if r[1] == "claims/0.json")
    assert claim_put[2].get("If-None-Match") == "*"


def test_a_second_job_for_a_claimed_training_stops_before_any_work(worker_env, store, progress_log) -> None:
    store.objects["claims/0.json"] = json.dumps({"jobId": "first-job"}).encode()
    job = train_job(store, steps=2)
    job["input"]["claim"] = claim_spec(store)
    result = handler.run_job(job)
    assert result["error"].startswith("[CLAIMED] claim: this work was already claimed")
    assert "SECRET" not in result["error"]
    assert not [r for r in store.requests if r[1].startswith("img/")], "no image was downloaded"
    assert "out/lora.safetensors" not in store.objects
    assert json.loads(store.objects["claims/0.json"]) == {"jobId": "first-job"}


def test_a_job_the_service_retried_meets_its_own_claim_and_continues(worker_env, store, progress_log) -> None:
    # The first start claimed and took attempt 0, then its worker died (or the PUT's answer was lost).
    store.objects["claims/0.json"] = json.dumps({"jobId": "train-1"}).encode()
    store.objects["claims/0.attempt-0.json"] = json.dumps({"jobId": "train-1", "attempt": 0}).encode()
    job = train_job(store, steps=2)
    job["input"]["claim"] = claim_spec(store)
    result = handler.run_job(job)
    assert "error" not in result, result
    assert "lora" in result
    assert json.loads(store.objects["claims/0.attempt-1.json"]) == {"jobId": "train-1", "attempt": 1}


def test_a_job_started_more_often_than_its_attempt_markers_allow_stops(worker_env, store, progress_log) -> None:
    store.objects["claims/0.json"] = json.dumps({"jobId": "train-1"}).encode()
    for k in range(2):
        store.objects[f"claims/0.attempt-{k}.json"] = b"{}"
    job = train_job(store, steps=2)
    job["input"]["claim"] = claim_spec(store, attempts=2)
    result = handler.run_job(job)
    assert result["error"].startswith("[CRASHED] claim: this job was started 2 times already")
    assert not [r for r in store.requests if r[1].startswith("img/")], "no image was downloaded"


def test_a_conditional_write_conflict_is_retried(worker_env, store, progress_log) -> None:
    store.fail_once["claims/0.json"] = 409  # AWS: ConditionalRequestConflict between two writers
    job = train_job(store, steps=2)
    job["input"]["claim"] = claim_spec(store)
    assert "error" not in handler.run_job(job)
    assert len([r for r in store.requests if r[0] == "PUT" and r[1] == "claims/0.json"]) == 2


def test_stores_its_output_next_to_the_lora_before_returning_it(worker_env, store, progress_log) -> None:
    job = train_job(store, steps=2)
    job["input"]["result"] = {"url": store.url("out/result.json")}
    result = handler.run_job(job)
    assert json.loads(store.objects["out/result.json"]) == result
