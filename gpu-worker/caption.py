"""Caption job: presigned GET the images, caption them, put the trigger word first.

The job may name any captioner installed in the worker's model directory and, for one that does
conditional captioning (BLIP), a prompt it continues ("a photo of").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

import models
import settings
import transfer
from images import open_rgb
from errors import InputError
from progress import Progress
from trigger import inject_trigger

BATCH_SIZE = 8
MAX_NEW_TOKENS = 40


def run_caption(job_input: dict[str, Any], workdir: Path, progress: Progress) -> dict[str, Any]:
    images = job_input["images"]
    progress.phase("download")
    paths = transfer.download_images(images, workdir / "images")

    progress.phase("load")
    config = settings.load()
    name = job_input.get("captioner") or config.captioner
    if "captioner" in job_input and not (config.model_dir / name).is_dir():
        installed = sorted(p.name for p in config.model_dir.glob("*") if p.is_dir() and not (p / "model_index.json").is_file())
        raise InputError(f"captioner: {name!r} is not installed on this worker (it has: {', '.join(installed) or 'none'})")
    processor, model = models.captioner(name, str(config.model_dir))
    prompt = job_input.get("prompt")
    if prompt and not accepts_prompt(model):
        raise InputError(f"prompt: captioner {name!r} takes no prompt")

    captions: list[dict[str, str]] = []
    total = len(images)
    progress.step("captioning", 0, total)
    for start in range(0, total, BATCH_SIZE):
        batch = range(start, min(start + BATCH_SIZE, total))
        pixels = [open_rgb(paths[i], images[i]["id"], f"images.{i}") for i in batch]
        text = {"text": [prompt] * len(pixels)} if prompt else {}
        inputs = processor(images=pixels, return_tensors="pt", **text).to(model.device, model.dtype)
        with torch.inference_mode():
            tokens = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS)
        texts = processor.batch_decode(tokens, skip_special_tokens=True)
        for i, text in zip(batch, texts):
            captions.append({"id": images[i]["id"], "caption": inject_trigger(job_input["triggerWord"], text)})
        progress.step("captioning", batch.stop, total)
    return {"captioner": name, "captions": captions}


# Model types whose generate() continues a text prompt given with the image.
PROMPTED_CAPTIONERS = ("blip", "blip-2", "git")


def accepts_prompt(model: Any) -> bool:
    return getattr(model.config, "model_type", "") in PROMPTED_CAPTIONERS
