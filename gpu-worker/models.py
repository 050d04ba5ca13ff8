"""Model lookup and the per-process model cache.

Models live in LORAFLOW_MODEL_DIR/<name> (baked into the image at build time). Frozen
parts (tokenizer, text encoder, VAE, captioner) load once per name on first use and stay
in memory across jobs: they are never modified. The UNet is NOT cached: training adds
LoRA layers to it, so every train job loads a pristine one (see train_lora.py) and no
job can leak into the next.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from errors import InputError, JobError

DEFAULT_MODEL_DIR = "/models"
DEFAULT_CAPTIONER = "tiny-captioner"


def model_dir() -> Path:
    return Path(os.environ.get("LORAFLOW_MODEL_DIR", DEFAULT_MODEL_DIR))


def captioner_name() -> str:
    return os.environ.get("LORAFLOW_CAPTIONER", DEFAULT_CAPTIONER)


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_label() -> str:
    dev = device()
    return f"cuda:{torch.cuda.get_device_name(dev)}" if dev.type == "cuda" else "cpu"


def weight_dtype() -> torch.dtype:
    """Frozen weights in bf16 (fp16 on older GPUs) on CUDA; float32 on CPU, where half is slow."""
    if device().type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def base_model_path(name: str, directory: Path) -> Path:
    path = directory / name
    if not (path / "model_index.json").is_file():
        available = sorted(p.name for p in directory.glob("*") if (p / "model_index.json").is_file())
        raise InputError(f"baseModel: unknown model {name!r} (this worker has: {', '.join(available) or 'none'})")
    return path


@dataclass(frozen=True)
class FrozenSD:
    """The parts of a Stable Diffusion pipeline that LoRA training only reads."""

    path: Path
    tokenizer: Any
    text_encoder: Any
    vae: Any
    noise_scheduler: Any
    native_resolution: int


@lru_cache(maxsize=2)
def frozen_sd(name: str, directory: str) -> FrozenSD:
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import AutoTokenizer, CLIPTextModel

    path = base_model_path(name, Path(directory))
    dev, dtype = device(), weight_dtype()
    tokenizer = AutoTokenizer.from_pretrained(path, subfolder="tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(path, subfolder="text_encoder", dtype=dtype).to(dev)
    vae = AutoencoderKL.from_pretrained(path, subfolder="vae", torch_dtype=dtype).to(dev)
    for module in (text_encoder, vae):
        module.requires_grad_(False).eval()
    # Training always uses DDPM noise, whatever sampler the pipeline ships with (as diffusers' examples do).
    noise_scheduler = DDPMScheduler.from_pretrained(path, subfolder="scheduler")
    unet_config = UNet2DConditionModel.load_config(path, subfolder="unet")
    vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)
    return FrozenSD(path, tokenizer, text_encoder, vae, noise_scheduler, unet_config["sample_size"] * vae_scale)


@lru_cache(maxsize=1)
def captioner(name: str, directory: str) -> tuple[Any, Any]:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = Path(directory) / name
    if not path.is_dir():
        raise JobError(f"captioner {name!r} is not installed in the worker's model directory")
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=weight_dtype()).to(device()).eval()
    return processor, model
