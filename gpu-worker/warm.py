"""The denoiser a warm worker keeps between train and generate jobs.

Loading the UNet / transformer is the largest fixed cost of a job (FLUX: 24 GB from disk into the
GPU), paid again by every segment and retrain. The worker keeps the last one it loaded, clean: a
job trains a LoRA on top of it (the base weights are frozen, never written), or a generate job
loads published LoRAs into it as adapters (generate.py), and after every job, whatever its
outcome, `clean()` removes the adapters, checkpointing and training mode. If removing
fails, the model is dropped and the next job loads a fresh one. One denoiser at a time: two FLUX
transformers would not fit beside each other.
"""

from __future__ import annotations

import logging
from typing import Any

import settings

log = logging.getLogger("loraflow.warm")

_held: dict[str, Any] = {}  # {"key": (path, device, dtype), "model": module}


def denoiser(fam, quantized: str | None = None) -> tuple[Any, bool]:
    """-> (the clean denoiser of `fam`'s base model, quantized as asked (quantize.py), whether it was
    already loaded)."""
    key = (str(fam.path), str(fam.device), str(fam.dtype), quantized)
    if _held.get("key") == key:
        return _held["model"], True
    drop()
    model = fam.load_trainable()
    if quantized:
        from quantize import quantize

        model = quantize(model, quantized)
    _held.update(key=key, model=model)
    return model, False


def clean() -> None:
    """Back to the base weights alone (called after every job); dropped when the worker keeps none."""
    model = _held.get("model")
    if model is None:
        return
    if not settings.load().keep_denoiser:
        drop()
        return
    try:
        if getattr(model, "peft_config", None):
            model.unload_lora()
        if model.is_gradient_checkpointing:
            model.disable_gradient_checkpointing()
        model.requires_grad_(False).eval()
        if any("lora_" in name for name, _ in model.named_parameters()):
            raise RuntimeError("LoRA parameters left after unloading")
    except Exception as exc:  # a denoiser in an unknown state never trains again
        log.warning("dropping the kept denoiser: %s", exc)
        drop()


def drop() -> None:
    _held.clear()
