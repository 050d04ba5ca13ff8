"""A quantized frozen base: the denoiser's Linear weights stored in int8 (or fp8) by torchao, so
FLUX's 12B-parameter transformer takes 12 GB instead of 24 GB in bf16 and trains on 24 GB cards,
RunPod's cheapest and most available pool (ai-toolkit's 24 GB profile does the same).

Weight-only quantization: activations and the LoRA stay in the training dtype and fp32, and
peft wraps the quantized layers (its torchao support), so gradients flow through the LoRA only.
The saved LoRA applies to the unquantized base model at inference, as a QLoRA does.
"""

from __future__ import annotations

import torch

from errors import InputError

KINDS = ("int8", "fp8")
FP8_CAPABILITY = (8, 9)  # Ada / Hopper: fp8 kernels; older GPUs and CPUs have none


def check(kind: str | None, dev: torch.device) -> None:
    """Before anything loads: an fp8 base needs a GPU with fp8 support."""
    if kind == "fp8" and (dev.type != "cuda" or torch.cuda.get_device_capability(dev) < FP8_CAPABILITY):
        where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "a CPU"
        raise InputError(f"params.quantizeBase: fp8 needs an Ada or Hopper GPU (compute capability 8.9+), this worker has {where}; use int8")


def quantize(model: torch.nn.Module, kind: str) -> torch.nn.Module:
    from torchao.quantization import Float8WeightOnlyConfig, Int8WeightOnlyConfig, quantize_

    quantize_(model, Int8WeightOnlyConfig() if kind == "int8" else Float8WeightOnlyConfig())
    return model


def weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of the denoiser's Linear weights as stored (int8 ones count one byte per value)."""
    total = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            w = module.weight
            inner = getattr(w, "qdata", None)  # torchao's quantized tensor keeps its values here
            total += (inner if inner is not None else w).element_size() * w.numel()
    return total
