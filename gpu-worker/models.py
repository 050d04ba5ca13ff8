"""Model lookup, devices and dtypes, the captioner cache.

Models live in settings.model_dir/<name> (baked into the image at build time). Frozen
parts (tokenizers, text encoders, VAE, captioner) load once per name on first use and stay
in memory across jobs: they are never modified (see families/). The UNet / transformer is kept
by warm.py, which removes each job's LoRA layers after the job, so no job can leak into the next.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from errors import InputError, JobError

def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_label() -> str:
    dev = device()
    return f"cuda:{torch.cuda.get_device_name(dev)}" if dev.type == "cuda" else "cpu"


# The oldest NVIDIA driver that runs the CUDA of the pinned torch wheel (Dockerfile.gpu's base image):
# CUDA 13.x needs a 580-series driver. The RunPod endpoint's CUDA filter must allow only hosts with it.
MIN_DRIVER_FOR_CUDA = {"13": "580", "12": "525"}


def check_cuda(required: bool) -> None:
    """In the GPU image, no CUDA is a broken worker (driver too old for the image's CUDA, or no GPU
    passed in): stop before the claim and any work instead of training on the CPU, billed as a GPU."""
    if not required or torch.cuda.is_available():
        return
    built = torch.version.cuda or "none"
    driver = MIN_DRIVER_FOR_CUDA.get(built.split(".")[0], "?")
    raise JobError(
        f"no usable CUDA device: torch {torch.__version__} is built for CUDA {built}, which needs an NVIDIA "
        f"driver >= {driver}; this host's driver is older or no GPU is visible. Restrict the endpoint's "
        f"allowed CUDA versions to {built} or newer"
    )


def native_bf16() -> bool:
    # Plain is_bf16_supported() also says True where bf16 is only emulated (pre-Ampere): slower than fp16.
    return torch.cuda.is_bf16_supported(including_emulation=False)


def weight_dtype() -> torch.dtype:
    """Frozen weights in bf16 (fp16 on GPUs without native bf16) on CUDA; float32 on CPU, where half is slow."""
    if device().type != "cuda":
        return torch.float32
    return torch.bfloat16 if native_bf16() else torch.float16


def training_dtype(mixed_precision: str) -> torch.dtype:
    """Dtype of the frozen weights and autocast; the LoRA weights themselves always stay fp32.

    auto: bf16 on a GPU that supports it, else fp16 (with a grad scaler); fp32 on CPU.
    """
    if mixed_precision == "auto":
        return weight_dtype()
    return {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[mixed_precision]


def base_model_path(name: str, directory: Path) -> Path:
    path = directory / name
    if not (path / "model_index.json").is_file():
        available = sorted(p.name for p in directory.glob("*") if (p / "model_index.json").is_file())
        raise InputError(f"baseModel: unknown model {name!r} (this worker has: {', '.join(available) or 'none'})")
    return path


@lru_cache(maxsize=1)
def captioner(name: str, directory: str) -> tuple[Any, Any]:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = Path(directory) / name
    if not path.is_dir():
        raise JobError(f"captioner {name!r} is not installed in the worker's model directory")
    if not (path / "model.safetensors").is_file() and not (path / "model.safetensors.index.json").is_file():
        # Pickled weights (pytorch_model.bin) can run code when loaded: never a fallback.
        raise JobError(f"captioner {name!r} has no model.safetensors in the worker's model directory (pickled weights are not loaded)")
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=weight_dtype(), use_safetensors=True).to(device()).eval()
    return processor, model
