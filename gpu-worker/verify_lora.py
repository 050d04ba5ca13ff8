"""Check that a trained LoRA loads into its base pipeline and changes what it generates.

    python verify_lora.py --model MODELS_DIR/tiny-sd --lora lora.safetensors [--lora more.safetensors …] [--seed 0]

Works for SD, SDXL and FLUX base models, and for both the diffusers and the kohya key layout
(diffusers' `load_lora_weights` reads both). Prints one JSON line
{"loaded": bool, "changed": bool, "maxAbsDiff": float} per LoRA, in order (the pipeline is loaded
once for all of them); exits 1 if any LoRA cannot be loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPT = "a photo of a person standing in a field"
STEPS = 4


def load_pipeline(model: Path):
    import torch
    from diffusers import DiffusionPipeline

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if dev == "cuda" else torch.float32
    index = json.loads((model / "model_index.json").read_text(encoding="utf-8"))
    # SD-1.x images ship without the safety checker (see Dockerfile.gpu)
    extra = {"safety_checker": None, "feature_extractor": None} if "safety_checker" in index else {}
    pipe = DiffusionPipeline.from_pretrained(model, torch_dtype=dtype, **extra).to(dev)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def render(pipe, seed: int):
    import torch

    extra = {"max_sequence_length": 32} if type(pipe).__name__.startswith("Flux") else {}
    generator = torch.Generator(pipe.device).manual_seed(seed)
    return pipe(PROMPT, num_inference_steps=STEPS, generator=generator, output_type="np", **extra).images[0]


def verify(model: Path, lora: Path, seed: int = 0, pipe=None) -> dict[str, Any]:
    """`pipe`: a pipeline of `model` to reuse; the LoRA leaves it again afterwards."""
    import numpy as np

    pipe = pipe or load_pipeline(model)
    before = render(pipe, seed)
    try:
        pipe.load_lora_weights(str(lora.parent), weight_name=lora.name)
        adapters = pipe.get_list_adapters()
        if not (adapters.get("unet") or adapters.get("transformer")):
            raise ValueError("no LoRA layer matched the denoiser")
    except Exception as exc:  # noqa: BLE001 - any failure to load is the answer
        return {"loaded": False, "changed": False, "maxAbsDiff": 0.0, "error": f"{type(exc).__name__}: {exc}"}
    after = render(pipe, seed)
    pipe.unload_lora_weights()
    diff = float(np.abs(after.astype(np.float64) - before.astype(np.float64)).max())
    return {"loaded": True, "changed": diff > 0.0, "maxAbsDiff": diff}


def main() -> int:
    parser = argparse.ArgumentParser(description="Load a LoRA and compare generations with and without it.")
    parser.add_argument("--model", required=True, type=Path, help="base model directory (diffusers layout)")
    parser.add_argument("--lora", required=True, type=Path, action="append", help=".safetensors LoRA file (repeatable)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    pipe = load_pipeline(args.model)
    reports = [verify(args.model, lora, args.seed, pipe) for lora in args.lora]
    for report in reports:
        print(json.dumps(report))
    return 0 if all(r["loaded"] for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
