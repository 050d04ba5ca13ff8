"""Caption job: presigned GET the images, caption them, put the trigger word first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

import models
import settings
import transfer
from images import open_rgb
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
    name = config.captioner
    processor, model = models.captioner(name, str(config.model_dir))

    captions: list[dict[str, str]] = []
    total = len(images)
    progress.step("captioning", 0, total)
    for start in range(0, total, BATCH_SIZE):
        batch = range(start, min(start + BATCH_SIZE, total))
        pixels = [open_rgb(paths[i], images[i]["id"], f"images.{i}") for i in batch]
        inputs = processor(images=pixels, return_tensors="pt").to(model.device, model.dtype)
        with torch.inference_mode():
            tokens = model.generate(**inputs, max_new_tokens=MAX_NEW_TOKENS)
        texts = processor.batch_decode(tokens, skip_special_tokens=True)
        for i, text in zip(batch, texts):
            captions.append({"id": images[i]["id"], "caption": inject_trigger(job_input["triggerWord"], text)})
        progress.step("captioning", batch.stop, total)
    return {"captioner": name, "captions": captions}
