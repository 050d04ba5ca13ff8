"""Caption jobs against the tiny BLIP captioner."""

from __future__ import annotations

from jsonschema import Draft202012Validator

import handler
from conftest import png_bytes
from contract import load_schema, schema_dir
from trigger import ensure_trigger, inject_trigger


def test_caption_job_injects_trigger_word(worker_env, store, progress_log) -> None:
    images = [store.put_image(f"img/{i}.png", png_bytes(i)) for i in range(3)]
    result = handler.run_job({"id": "cap-1", "input": {"task": "caption", "triggerWord": "zxq", "images": images}})

    assert "error" not in result, result
    validator = Draft202012Validator(load_schema("caption-job-output", str(schema_dir())))
    assert list(validator.iter_errors(result)) == []
    assert result["captioner"] == "tiny-captioner"
    assert [c["id"] for c in result["captions"]] == [img["id"] for img in images]
    for entry in result["captions"]:
        assert entry["caption"].startswith("zxq, ") and entry["caption"].count("zxq") == 1
    assert {p["phase"] for p in progress_log} >= {"download", "load", "captioning"}
    assert not any(worker_env.iterdir())


def test_corrupt_image_in_caption_job_names_its_id(worker_env, store, progress_log) -> None:
    good = store.put_image("img/0.png", png_bytes(0))
    bad = store.put_image("img/bad.jpg", b"\xff\xd8\xff garbage")
    result = handler.run_job({"id": "cap-2", "input": {"task": "caption", "triggerWord": "zxq", "images": [good, bad]}})
    assert result["error"].startswith("[INPUT] images.1: image " + bad["id"])


def test_trigger_word_placement() -> None:
    assert inject_trigger("zxq", "a man in a hat") == "zxq, a man in a hat"
    assert inject_trigger("zxq", "a ZXQ man, zxq in a hat") == "zxq, a man, in a hat"
    assert inject_trigger("zxq", "") == "zxq"
    assert ensure_trigger("zxq", "photo of zxq smiling") == "photo of zxq smiling"
    assert ensure_trigger("zxq", "photo of zxq2") == "zxq, photo of zxq2"


def test_caption_job_names_its_captioner_and_prompt(worker_env, store, progress_log) -> None:
    images = [store.put_image(f"img/{i}.png", png_bytes(i)) for i in range(2)]
    job = {"task": "caption", "triggerWord": "zxq", "images": images, "captioner": "tiny-captioner"}
    plain = handler.run_job({"id": "cap-3", "input": job})
    prompted = handler.run_job({"id": "cap-4", "input": {**job, "prompt": "a photo of"}})
    assert "error" not in prompted, prompted
    # The captioner continues the prompt (conditional captioning) rather than starting afresh.
    assert all(c["caption"].startswith("zxq, a photo of ") for c in prompted["captions"])
    assert not any(c["caption"].startswith("zxq, a photo of ") for c in plain["captions"])
    missing = handler.run_job({"id": "cap-5", "input": {**job, "captioner": "no-such-captioner"}})
    assert missing["error"] == "[INPUT] captioner: 'no-such-captioner' is not installed on this worker (it has: tiny-captioner)"
