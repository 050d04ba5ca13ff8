"""Generate job: images from a base model with published LoRAs applied at their weights.

Runs on the denoiser the worker keeps warm (warm.py) and the family's frozen parts (cached per
worker), through the family's own sampling path (families/base.py `sample`), so SD, SDXL and
FLUX render as their training samples do. The LoRAs are loaded as named adapters for this job
and unloaded after it, whatever its outcome; handler.py then runs warm.clean(), which checks that
no LoRA layer is left, so the next job starts from the clean base weights.

Image i of every prompt uses seed + i: same input, same worker image, same PNGs. The contact sheet
(a grid: a row per prompt, a column per seed) is drawn here with PIL, from the images already in
memory, instead of by the orchestrator, which would have to download every PNG again.
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
from pathlib import Path
from typing import Any

import torch

import models
import settings
import transfer
import warm
from errors import InputError, TransientError
from families import family_for
from progress import Progress
from stop import StopSignal

log = logging.getLogger("loraflow.generate")

SHEET_GAP = 4  # pixels between the contact sheet's cells


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def contact_sheet(images: list, columns: int):
    """A white grid of `images` (all one size), `columns` to a row."""
    from PIL import Image

    w, h = images[0].size
    rows = -(-len(images) // columns)
    sheet = Image.new("RGB", (columns * w + (columns + 1) * SHEET_GAP, rows * h + (rows + 1) * SHEET_GAP), "white")
    for k, image in enumerate(images):
        r, c = divmod(k, columns)
        sheet.paste(image, (SHEET_GAP + c * (w + SHEET_GAP), SHEET_GAP + r * (h + SHEET_GAP)))
    return sheet


def _size(job_input: dict[str, Any], fam) -> tuple[int, int]:
    multiple = fam.pixel_multiple
    width = job_input.get("width") or fam.native_resolution
    height = job_input.get("height") or fam.native_resolution
    for field, value in (("width", width), ("height", height)):
        if value % multiple:
            raise InputError(f"{field}: {value} is not a multiple of {multiple} ({fam.name} renders in steps of {multiple} pixels)")
    return width, height


def _download_loras(loras: list[dict[str, Any]], directory: Path) -> list[tuple[Path, float]]:
    """Each LoRA checked against its sha256 before it touches the model; weight-0 ones are skipped."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for i, lora in enumerate(loras):
        if lora["weight"] == 0:
            continue  # no effect by definition: the base model's output, exactly
        path = directory / f"lora-{i}.safetensors"
        transfer.download(lora["url"], path, f"loras.{i}.url download")
        digest = _sha256(path.read_bytes())
        if digest != lora["sha256"]:
            raise InputError(f"loras.{i}: the downloaded LoRA has sha256 {digest}, not {lora['sha256']}")
        out.append((path, float(lora["weight"])))
    return out


def run_generate(job_input: dict[str, Any], workdir: Path, progress: Progress, stop: StopSignal | None = None) -> dict[str, Any]:
    stop = stop or StopSignal()
    seconds: dict[str, float] = {}

    def timed(phase: str, t0: float) -> None:
        seconds[phase] = round(seconds.get(phase, 0.0) + time.perf_counter() - t0, 3)

    prompts, n, seed = job_input["prompts"], job_input["n"], job_input["seed"]
    urls = job_input["output"]["images"]
    if len(urls) != len(prompts) * n:
        raise InputError(f"output.images: {len(urls)} URLs for {len(prompts)} prompts x n {n} images")

    t0 = time.perf_counter()
    progress.phase("download")
    loras = _download_loras(job_input["loras"], workdir / "loras")
    timed("download", t0)

    t0 = time.perf_counter()
    progress.phase("load")
    dev = models.device()
    fam = family_for(models.base_model_path(job_input["baseModel"], settings.load().model_dir), dev, models.weight_dtype())
    if "negativePrompt" in job_input and not fam.negative_prompts:
        raise InputError(f"negativePrompt: {fam.name} takes no negative prompt (its guidance is distilled)")
    width, height = _size(job_input, fam)
    model, kept = warm.denoiser(fam)  # loaded once per worker, clean (warm.py)
    pipe = fam.pipeline(model)
    names = [f"lora{i}" for i in range(len(loras))]
    try:
        for (path, _), name in zip(loras, names):
            try:
                pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name=name)
            except Exception as exc:
                raise InputError(f"loras: {path.name} does not load into {job_input['baseModel']}: {exc}") from exc
        if loras:
            pipe.set_adapters(names, adapter_weights=[w for _, w in loras])
        timed("load", t0)

        t0 = time.perf_counter()
        images, rendered = [], []
        total = len(urls)
        progress.step("generating", 0, total)
        model.eval()
        with fam.onloaded():
            for p, prompt in enumerate(prompts):
                for i in range(n):
                    if stop.is_set():
                        raise TransientError(f"job stopped ({stop.reason}) after {len(images)} of {total} images")
                    image = fam.sample(model, prompt, width, height, seed + i, steps=job_input["steps"],
                                       guidance=job_input.get("guidance"), negative=job_input.get("negativePrompt"), pipe=pipe)
                    rendered.append(image)
                    images.append({"prompt": p, "seed": seed + i, "png": _png(image)})
                    progress.step("generating", len(images), total)
        timed("generating", t0)
    finally:
        if loras:  # handler.py's warm.clean() checks that nothing is left
            pipe.unload_lora_weights()

    t0 = time.perf_counter()
    progress.phase("upload")
    out = []
    for k, (image, url) in enumerate(zip(images, urls)):
        path = workdir / f"image-{k}.png"
        path.write_bytes(image["png"])
        transfer.upload(url, path, f"output.images.{k} upload")
        out.append({"prompt": image["prompt"], "seed": image["seed"], "sha256": _sha256(image["png"]), "bytes": len(image["png"])})
    sheet = _png(contact_sheet(rendered, n))
    (workdir / "sheet.png").write_bytes(sheet)
    transfer.upload(job_input["output"]["contactSheet"], workdir / "sheet.png", "output.contactSheet upload")
    timed("upload", t0)
    return {
        "images": out,
        "contactSheet": {"sha256": _sha256(sheet), "bytes": len(sheet)},
        "metrics": {"width": width, "height": height, "seconds": seconds, "device": models.device_label(), "warm": kept},
    }
