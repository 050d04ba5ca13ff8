"""Kohya / sd-scripts key layouts of a LoRA (what A1111, Forge and ComfyUI read), from peft's state dict.

FLUX: the original BFL module names, where q, k, v (and the single blocks' MLP input) are one fused
Linear. SDXL: sd-scripts' names of the original (SGM) UNet blocks (input_blocks / middle_block /
output_blocks). SD-1.x: sd-scripts' SD-1 UNet uses diffusers' own names, so only the separators change.
Each layout round-trips through diffusers' own readers (tests/test_kohya.py, at real layer sizes).
"""

from __future__ import annotations

import re

import torch

# Original BFL / sd-scripts module -> the diffusers layers it holds (several: one fused Linear there).
DOUBLE_BLOCK = {
    "img_attn_qkv": ["attn.to_q", "attn.to_k", "attn.to_v"],
    "img_attn_proj": ["attn.to_out.0"],
    "txt_attn_qkv": ["attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"],
    "txt_attn_proj": ["attn.to_add_out"],
    "img_mlp_0": ["ff.net.0.proj"], "img_mlp_2": ["ff.net.2"],
    "txt_mlp_0": ["ff_context.net.0.proj"], "txt_mlp_2": ["ff_context.net.2"],
}
SINGLE_BLOCK = {"linear1": ["attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"], "linear2": ["proj_out"]}


def _fuse(parts: list[tuple[torch.Tensor, torch.Tensor] | int]) -> tuple[torch.Tensor, torch.Tensor]:
    """LoRAs (A_i: r x in, B_i: out_i x r) of layers that the original FLUX code fuses into one
    linear layer -> one LoRA of rank sum(r): A stacked, B block-diagonal; an int part is that many
    output rows without a LoRA (zero rows). Exactly the same weight deltas, and the block-diagonal
    B is what diffusers' kohya reader recognises to split the layer back."""
    loras = [p for p in parts if not isinstance(p, int)]
    down = torch.cat([a for a, _ in loras], dim=0)
    rows = sum(p if isinstance(p, int) else p[1].shape[0] for p in parts)
    up = torch.zeros(rows, down.shape[0], dtype=loras[0][1].dtype)
    r0 = c0 = 0
    for p in parts:
        if isinstance(p, int):
            r0 += p
            continue
        b = p[1]
        up[r0 : r0 + b.shape[0], c0 : c0 + b.shape[1]] = b
        r0, c0 = r0 + b.shape[0], c0 + b.shape[1]
    return down.contiguous(), up


def flux_to_kohya(state: dict[str, torch.Tensor], model) -> dict[str, torch.Tensor]:
    """sd-scripts / ComfyUI FLUX layout (the original BFL module names, with fused qkv and
    linear1) from a peft state dict with the scale folded in. `model` gives the output size of a
    fused layer's parts that have no LoRA."""
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def convert(prefix: str, kohya: str, layers: list[str]) -> None:
        present = [m for m in layers if f"{prefix}.{m}.lora_A.weight" in state]
        if not present:
            return
        parts: list = []
        for m in layers:
            if m in present:
                parts.append((state[f"{prefix}.{m}.lora_A.weight"].float(), state[f"{prefix}.{m}.lora_B.weight"].float()))
                used.add(f"{prefix}.{m}")
            else:
                parts.append(model.get_submodule(f"{prefix}.{m}").out_features)
        down, up = _fuse(parts) if len(layers) > 1 else parts[0]
        name = f"lora_unet_{kohya}"
        out[f"{name}.lora_down.weight"], out[f"{name}.lora_up.weight"] = down.contiguous(), up.contiguous()
        out[f"{name}.alpha"] = torch.tensor(float(down.shape[0]))  # scale 1: alpha == rank

    for i in range(len(model.transformer_blocks)):
        for kohya, layers in DOUBLE_BLOCK.items():
            convert(f"transformer_blocks.{i}", f"double_blocks_{i}_{kohya}", layers)
    for i in range(len(model.single_transformer_blocks)):
        for kohya, layers in SINGLE_BLOCK.items():
            convert(f"single_transformer_blocks.{i}", f"single_blocks_{i}_{kohya}", layers)
    left = {k.rsplit(".lora_", 1)[0] for k in state} - used
    if left:
        raise ValueError(f"no kohya FLUX name for LoRA layers {sorted(left)[:3]}")
    return out


def sgm_module_path(path: str, layers_per_block: int) -> str:
    """diffusers UNet module path -> the original SGM UNet's (SDXL's checkpoints, sd-scripts)."""
    per_level = layers_per_block + 1  # resnets+attentions per level, then a down/upsampler
    path = re.sub(r"^down_blocks\.(\d+)\.attentions\.(\d+)\.",
                  lambda m: f"input_blocks.{1 + int(m[1]) * per_level + int(m[2])}.1.", path)
    path = re.sub(r"^mid_block\.attentions\.0\.", "middle_block.1.", path)
    return re.sub(r"^up_blocks\.(\d+)\.attentions\.(\d+)\.",
                  lambda m: f"output_blocks.{int(m[1]) * per_level + int(m[2])}.1.", path)


def unet_to_kohya(state: dict[str, torch.Tensor], sgm_layers_per_block: int | None) -> dict[str, torch.Tensor]:
    """`lora_unet_<module path with _>.lora_down/lora_up/alpha`; with SGM block names for SDXL."""
    from diffusers.utils import convert_state_dict_to_kohya

    if sgm_layers_per_block is not None:
        state = {sgm_module_path(k, sgm_layers_per_block): v for k, v in state.items()}
    kohya = convert_state_dict_to_kohya({f"unet.{k}": v for k, v in state.items()})
    return {k: (v.to(torch.float32) if k.endswith(".alpha") else v.contiguous()) for k, v in kohya.items()}
