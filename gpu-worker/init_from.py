"""initFrom: the weights a training starts from when it has no checkpoint of its own yet.

A published LoRA (`kind: lora`, `--init-from`) is loaded into the fresh adapter at step 0; a finished
training's final checkpoint (`kind: checkpoint`, `loraflow extend`) is continued from its step by
the resume path (checkpoint.restore), once train_lora has checked it is the same training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

import checkpoint
import transfer
from errors import InputError


def fetch(spec: dict[str, Any], workdir: Path) -> tuple[dict[str, Any] | None, dict[str, torch.Tensor] | None]:
    """-> (a checkpoint to continue, or None; a LoRA state dict to start from, or None)."""
    path = workdir / "init-from.bin"
    transfer.download(spec["url"], path, "initFrom download")
    if spec["kind"] == "checkpoint":
        return checkpoint.load(path, "initFrom"), None
    return None, _load_safetensors(path)


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(path)
    except Exception as exc:
        raise InputError(f"initFrom: not a .safetensors LoRA ({type(exc).__name__})") from exc


KOHYA_PREFIXES = ("lora_unet_", "lora_te", "lora_transformer_")


def load_lora(trainable: dict[str, torch.nn.Parameter], state: dict[str, torch.Tensor], denoiser: str,
              rank: int, alpha: float) -> None:
    """Copy a published LoRA (diffusers layout, `<denoiser>.<module>.lora_A.weight`, alpha/rank folded
    into lora_B by fold_lora_scale) into the fresh adapter, undoing this training's own scale so the
    model starts out computing exactly what the published file does."""
    if any(k.startswith(KOHYA_PREFIXES) for k in state):
        raise InputError("initFrom: the LoRA is in kohya layout; only diffusers-layout LoRAs (the default --format) can be continued")
    prefix = f"{denoiser}."
    published = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    # peft names the trainable weights `<module>.lora_A.<adapter>.weight`; the file has no adapter name.
    ours = {name.replace(".lora_A.default.", ".lora_A.").replace(".lora_B.default.", ".lora_B."): p for name, p in trainable.items()}
    if set(published) != set(ours):
        missing, extra = len(set(ours) - set(published)), len(set(published) - set(ours))
        raise InputError(f"initFrom: the LoRA's layers do not match this model's ({missing} missing, {extra} not in this model): another base model?")
    scale = alpha / rank
    with torch.no_grad():
        for key, p in ours.items():
            value = published[key]
            if value.shape != p.shape:
                raise InputError(f"initFrom: {key} has shape {tuple(value.shape)}, this training's is {tuple(p.shape)}: another rank?")
            p.copy_((value / scale if ".lora_B." in key else value).to(p.device, p.dtype))
