"""Check that a trained LoRA loads into its base pipeline and changes what it generates.

    python verify_lora.py --model MODELS_DIR/tiny-sd --lora lora.safetensors [--seed 0]

Prints one JSON line {"loaded": bool, "changed": bool, "maxAbsDiff": float}; exits 1 if
the LoRA cannot be loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPT = "a photo of a person standing in a field"
STEPS = 4


def render(pipe, seed: int):
    import torch

    generator = torch.Generator(pipe.device).manual_seed(seed)
    return pipe(PROMPT, num_inference_steps=STEPS, generator=generator, output_type="np").images[0]


def main() -> int:
    parser = argparse.ArgumentParser(description="Load a LoRA and compare generations with and without it.")
    parser.add_argument("--model", required=True, type=Path, help="base model directory (diffusers layout)")
    parser.add_argument("--lora", required=True, type=Path, help=".safetensors LoRA file")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import numpy as np
    import torch
    from diffusers import StableDiffusionPipeline

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if dev == "cuda" else torch.float32
    pipe = StableDiffusionPipeline.from_pretrained(
        args.model, torch_dtype=dtype, safety_checker=None, feature_extractor=None
    ).to(dev)
    pipe.set_progress_bar_config(disable=True)
    before = render(pipe, args.seed)
    try:
        pipe.load_lora_weights(str(args.lora.parent), weight_name=args.lora.name)
        if not pipe.get_list_adapters().get("unet"):
            raise ValueError("no LoRA layer matched the UNet")
    except Exception as exc:  # noqa: BLE001 - any failure to load is the answer
        print(json.dumps({"loaded": False, "changed": False, "maxAbsDiff": 0.0, "error": f"{type(exc).__name__}: {exc}"}))
        return 1
    after = render(pipe, args.seed)
    diff = float(np.abs(after.astype(np.float64) - before.astype(np.float64)).max())
    print(json.dumps({"loaded": True, "changed": diff > 0.0, "maxAbsDiff": diff}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
