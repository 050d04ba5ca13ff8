"""Input validation and error formatting: no models needed, runs in milliseconds."""

from __future__ import annotations

import copy

import pytest

import handler
from conftest import PARAM_DEFAULTS
from contract import validate_input
from errors import InputError, OutOfMemory, error_message

SHA = "a" * 64


def train_input() -> dict:
    return {
        "task": "train",
        "baseModel": "tiny-sd",
        "triggerWord": "zxq",
        "images": [{"id": SHA, "url": f"https://bucket.s3.amazonaws.com/i/{n}.png?X-Amz-Signature=SECRETSIG", "caption": "a photo"} for n in range(5)],
        "params": {"steps": 10, "rank": 4, "learningRate": 1e-4, "batchSize": 1, "seed": 1, **PARAM_DEFAULTS},
        "output": {"loraUrl": "https://bucket.s3.amazonaws.com/out.safetensors?X-Amz-Signature=SECRETSIG"},
        "format": "diffusers",
    }


def test_valid_inputs_pass() -> None:
    validate_input(train_input())
    validate_input({"task": "caption", "triggerWord": "zxq", "images": [{"id": SHA, "url": "http://h/x"}]})


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda j: j["images"][3].update(url="not a url"), "images.3.url"),
        (lambda j: j["images"][3].update(url="ftp://host/x.png"), "images.3.url"),
        (lambda j: j["images"][1].update(id="XYZ"), "images.1.id"),
        (lambda j: j["images"][2].pop("caption"), "images.2"),
        (lambda j: j["params"].update(resolution=33), "params.resolution"),
        (lambda j: j["params"].update(steps=0), "params.steps"),
        (lambda j: j.update(triggerWord="two words"), "triggerWord"),
        (lambda j: j.update(task="paint"), "task"),
        (lambda j: j.update(extra=1), "(root)"),
    ],
)
def test_bad_input_names_the_field(mutate, field: str) -> None:
    job_input = copy.deepcopy(train_input())
    mutate(job_input)
    with pytest.raises(InputError) as info:
        validate_input(job_input)
    assert str(info.value).startswith(f"{field}: ")


def test_handler_returns_input_error_without_secrets(worker_env, progress_log) -> None:
    job_input = train_input()
    job_input["images"][3]["url"] = "https://bucket.s3.amazonaws.com/x y.png?X-Amz-Signature=SECRETSIG"
    result = handler.run_job({"id": "j1", "input": job_input})
    assert result["error"].startswith("[INPUT] images.3.url: ")
    assert "SECRETSIG" not in result["error"]
    assert not any(worker_env.iterdir()), "job temp dir must be removed"


def test_unreachable_image_is_transient(worker_env, progress_log) -> None:
    job_input = train_input()
    job_input["images"] = [{"id": SHA, "url": "http://127.0.0.1:9/x?X-Amz-Signature=SECRETSIG", "caption": "c"}]
    result = handler.run_job({"id": "j2", "input": job_input})  # port 9: connection refused
    assert result["error"].startswith("[TRANSIENT] images.0 (image ")
    assert "SECRETSIG" not in result["error"]


def test_error_messages_are_classified_and_redacted() -> None:
    import requests

    assert error_message(OutOfMemory("CUDA")).startswith("[OOM] ")
    assert error_message(RuntimeError("CUDA out of memory. Tried to allocate")).startswith("[OOM] ")
    assert error_message(requests.ConnectionError("boom")).startswith("[TRANSIENT] ")
    msg = error_message(ValueError("GET https://b.s3.amazonaws.com/k?X-Amz-Signature=SECRET failed"))
    assert msg.startswith("[INTERNAL] ValueError: ") and "SECRET" not in msg
