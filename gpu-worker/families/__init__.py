"""Model families: what differs between SD-1.5, SDXL and FLUX when training a LoRA.

A family knows how to load the frozen parts of its pipeline (cached per worker: they are only
read), a fresh trainable denoiser (UNet or transformer, per job), how to encode images and
prompts once, the training loss of one batch, how to save the LoRA and how to render a sample.
The family is read from the base model's model_index.json (`_class_name`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from errors import InputError
from families.base import LORA_FILENAME, LORA_TARGETS, Family
from families.flux import Flux
from families.options import options_for
from families.sd import StableDiffusion, StableDiffusionXL

REGISTRY: dict[str, type[Family]] = {cls.pipeline_class: cls for cls in (StableDiffusion, StableDiffusionXL, Flux)}

__all__ = ["LORA_FILENAME", "LORA_TARGETS", "REGISTRY", "Family", "family_for"]


def family_for(path: Path, dev: torch.device, dtype: torch.dtype, params: dict | None = None) -> Family:
    """The family of the base model at `path`; `params` (a job's) are checked before anything loads."""
    index = json.loads((path / "model_index.json").read_text(encoding="utf-8"))
    cls = REGISTRY.get(index.get("_class_name"))
    if cls is None:
        raise InputError(f"baseModel: {path.name!r} is a {index.get('_class_name')}, which this worker cannot train "
                         f"(supported: {', '.join(REGISTRY)})")
    if dtype == torch.float16 and cls.fp16_refused:
        raise InputError(f"params.mixedPrecision: {cls.name} cannot train in fp16 ({cls.fp16_refused}); "
                         "use bf16 (a GPU with native bf16: Ampere or newer) or 'no' (fp32)")
    options = options_for(cls.name, params or {})
    return cls(path, dev, dtype, options)
