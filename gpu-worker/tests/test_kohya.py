"""Kohya layouts at FLUX.1's and SDXL's real layer sizes (rank 2 on models built on the meta device:
a few MB, no weights): every layer the worker trains gets the name sd-scripts uses, and diffusers'
own kohya readers turn the file back into exactly the LoRA that was trained."""

from __future__ import annotations

import torch

from families.flux import LORA_TARGETS as FLUX_TARGETS
from families.kohya import flux_to_kohya, unet_to_kohya
from families.base import LORA_TARGETS as UNET_TARGETS

SDXL_UNET = dict(  # stabilityai/stable-diffusion-xl-base-1.0 unet/config.json, the parts that set shapes
    sample_size=128, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=(320, 640, 1280),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
    use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
    projection_class_embeddings_input_dim=2816,
)
FLUX_DEV = dict(  # black-forest-labs/FLUX.1-dev transformer/config.json
    patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
    num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
    axes_dims_rope=(16, 56, 56),
)


def peft_state(model: torch.nn.Module, targets, rank: int = 2) -> dict[str, torch.Tensor]:
    """The state dict peft saves for a LoRA on `targets`, filled with random numbers."""
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict

    with torch.device("meta"):
        inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=rank, target_modules=targets), model)
    gen = torch.Generator().manual_seed(0)
    return {k: torch.randn(v.shape, generator=gen) for k, v in get_peft_model_state_dict(model).items()}


def test_flux_kohya_layout_round_trips_through_diffusers() -> None:
    from diffusers import FluxTransformer2DModel
    from diffusers.loaders.lora_conversion_utils import _convert_kohya_flux_lora_to_diffusers

    with torch.device("meta"):
        model = FluxTransformer2DModel(**FLUX_DEV)
    state = peft_state(model, FLUX_TARGETS)
    trained = {k.rsplit(".lora_", 1)[0] for k in state}
    # the reference's layers, in both block kinds, and not the final projection
    for layer in ("attn.to_q", "attn.add_k_proj", "attn.to_add_out", "ff.net.0.proj", "ff.net.2",
                  "ff_context.net.0.proj", "ff_context.net.2", "attn.to_out.0"):
        assert f"transformer_blocks.18.{layer}" in trained, layer
    for layer in ("attn.to_v", "proj_mlp", "proj_out"):
        assert f"single_transformer_blocks.37.{layer}" in trained, layer
    assert "proj_out" not in trained and len(trained) == 19 * 12 + 38 * 5

    kohya = flux_to_kohya(state, model)
    names = {k.split(".")[0] for k in kohya}
    assert len(names) == 19 * 8 + 38 * 2
    assert {"lora_unet_double_blocks_0_txt_attn_qkv", "lora_unet_double_blocks_0_img_mlp_2",
            "lora_unet_single_blocks_37_linear1", "lora_unet_single_blocks_37_linear2"} <= names
    assert kohya["lora_unet_single_blocks_0_linear1.lora_up.weight"].shape == (3 * 3072 + 12288, 4 * 2)

    back = _convert_kohya_flux_lora_to_diffusers(dict(kohya))
    assert set(back) == {f"transformer.{k}" for k in state}
    for key, value in state.items():
        torch.testing.assert_close(back[f"transformer.{key}"], value, rtol=0, atol=0, msg=key)


def test_sdxl_kohya_layout_uses_sd_scripts_block_names_and_round_trips() -> None:
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from diffusers.utils import convert_unet_state_dict_to_peft

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SDXL_UNET)
    state = peft_state(unet, UNET_TARGETS)
    kohya = unet_to_kohya(state, unet.config.layers_per_block)
    blocks = {k.split("_transformer_blocks")[0] for k in kohya}
    assert blocks == {"lora_unet_input_blocks_4_1", "lora_unet_input_blocks_5_1", "lora_unet_input_blocks_7_1",
                      "lora_unet_input_blocks_8_1", "lora_unet_middle_block_1",
                      *(f"lora_unet_output_blocks_{i}_1" for i in range(6))}
    assert "lora_unet_input_blocks_7_1_transformer_blocks_9_attn2_to_k.lora_down.weight" in kohya

    # what load_lora_weights does: read the kohya file (SGM names mapped back), then peft's names
    back, alphas = StableDiffusionXLPipeline.lora_state_dict(dict(kohya), unet_config=unet.config)
    back = convert_unet_state_dict_to_peft(back)
    assert set(alphas.values()) == {2.0}  # alpha == rank: scale 1, as trained
    assert set(back) == {f"unet.{k}" for k in state}
    for key, value in state.items():
        torch.testing.assert_close(back[f"unet.{key}"], value, rtol=0, atol=0, msg=key)
