"""Build tiny, randomly initialised stand-ins for the worker's models, fully offline.

    python gpu-worker/build_tiny_models.py --out MODELS_DIR

writes, each with the libraries' own `save_pretrained` so the worker loads them exactly
like the real thing:
  MODELS_DIR/tiny-sd         a Stable-Diffusion-1.5-shaped pipeline, 32 px native
  MODELS_DIR/tiny-sdxl       an SDXL-shaped pipeline (two text encoders, text_time UNet), 32 px
  MODELS_DIR/tiny-flux       a FLUX.1-shaped pipeline (CLIP + T5, 16-channel VAE, flow matching), 32 px
  MODELS_DIR/tiny-captioner  a BLIP image-captioning model + processor
 Weights are random but seeded: the same
library versions produce the same files. Re-running replaces the directories atomically.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

SEED = 0
SD_NAME = "tiny-sd"
SDXL_NAME = "tiny-sdxl"
FLUX_NAME = "tiny-flux"
CAPTIONER_NAME = "tiny-captioner"

# A small English vocabulary so the random captioner emits words, not sub-word noise.
WORDS = (
    "a an the of in on with and photo picture image portrait close up of person man woman "
    "child dog cat bird horse car house tree flower sky water beach mountain city street room "
    "table chair window door red blue green yellow black white brown orange pink gray small "
    "large old young happy sitting standing walking running looking smiling wearing holding "
    "shirt hat dress jacket glasses hair face hand light dark bright sunny night day field "
    "grass snow road bridge river lake boat train plane food cup book phone"
).split()


def _bytes_to_unicode() -> list[str]:
    """GPT-2/CLIP byte-level alphabet: every byte maps to one printable unicode char."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def build_clip_tokenizer():
    """Byte-level BPE with only single characters (+ their end-of-word forms): tiny but complete."""
    from transformers import CLIPTokenizer

    alphabet = _bytes_to_unicode()
    tokens = alphabet + [c + "</w>" for c in alphabet] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def build_tiny_sd(out: Path) -> None:
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = build_clip_tokenizer()
    torch.manual_seed(SEED)
    # Two VAE blocks => 2x downsampling; UNet sample_size 16 => 32 px native resolution.
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(16, 32),
        latent_channels=4,
        norm_num_groups=8,
        sample_size=32,
    )
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    scheduler = DDPMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
        clip_sample=False, steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out, safe_serialization=True)


def _tiny_clip_text_config(tokenizer, **extra):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **extra,
    )


def _tiny_vae(latent_channels: int, **extra):
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(
        in_channels=3, out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(16, 32), latent_channels=latent_channels, norm_num_groups=8, sample_size=32, **extra,
    )
    # A random encoder's posterior is noise (std ~1 around a mean ~0.3): the "image" a denoiser sees
    # would change every step, and nothing could be learned from it. Give it a trained VAE's shape:
    # latents of about unit variance after scaling_factor, and a small posterior std.
    with torch.no_grad():
        q = vae.quant_conv if vae.quant_conv is not None else vae.encoder.conv_out  # -> (mean, logvar)
        q.weight[:latent_channels] *= 3.0 / vae.config.scaling_factor
        q.bias[:latent_channels] *= 3.0 / vae.config.scaling_factor
        q.weight[latent_channels:] = 0.0
        q.bias[latent_channels:] = -10.0  # log variance: std = exp(-5)
    return vae


def build_tiny_sdxl(out: Path) -> None:
    """Shaped like diffusers' own SDXL pipeline tests: text_time conditioning, two CLIP encoders."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = build_clip_tokenizer()
    torch.manual_seed(SEED)
    vae = _tiny_vae(4, scaling_factor=0.13025)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, transformer_layers_per_block=(1, 2),
        addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 32,  # 6 time ids + the pooled text embedding
        cross_attention_dim=64, norm_num_groups=8,  # the two encoders' hidden states, concatenated
    )
    text_encoder = CLIPTextModel(_tiny_clip_text_config(tokenizer))
    text_encoder_2 = CLIPTextModelWithProjection(_tiny_clip_text_config(tokenizer, projection_dim=32))
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
        steps_offset=1, timestep_spacing="leading",
    )
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
        tokenizer_2=build_clip_tokenizer(), unet=unet, scheduler=scheduler,
    )
    pipe.save_pretrained(out, safe_serialization=True)


def build_t5_tokenizer():
    """A Unigram T5 tokenizer over WORDS plus single characters (no sentencepiece needed)."""
    from transformers import T5Tokenizer

    chars = sorted(set("abcdefghijklmnopqrstuvwxyz0123456789,.-_!?'"))
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [("\u2581" + w, -1.0) for w in sorted(set(WORDS))] + [(c, -5.0) for c in chars]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=32)


def build_tiny_flux(out: Path) -> None:
    """Shaped like diffusers' FLUX pipeline tests, with FLUX.1's 16 latent channels."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel, T5Config, T5EncoderModel

    tokenizer = build_clip_tokenizer()
    tokenizer_2 = build_t5_tokenizer()
    torch.manual_seed(SEED)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16 * 4, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=(4, 4, 8),
        guidance_embeds=False,
    )
    text_encoder = CLIPTextModel(_tiny_clip_text_config(tokenizer))
    text_encoder_2 = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer_2), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
            relative_attention_num_buckets=8, pad_token_id=tokenizer_2.pad_token_id,
            eos_token_id=tokenizer_2.eos_token_id, decoder_start_token_id=tokenizer_2.pad_token_id,
        )
    )
    vae = _tiny_vae(16, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    pipe = FluxPipeline(
        scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
        text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, transformer=transformer,
    )
    pipe.save_pretrained(out, safe_serialization=True)


def build_tiny_captioner(out: Path) -> None:
    from transformers import (
        BertTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
    vocab = {tok: i for i, tok in enumerate(specials + sorted(set(WORDS)))}
    tokenizer = BertTokenizer(vocab=vocab, model_max_length=40)
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    image_processor = BlipImageProcessor(size={"height": 32, "width": 32})
    processor = BlipProcessor(image_processor=image_processor, tokenizer=tokenizer)

    config = BlipConfig(
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            image_size=32, patch_size=8, projection_dim=32,
        ),
        text_config=dict(
            vocab_size=len(vocab), hidden_size=32, encoder_hidden_size=32, intermediate_size=64,
            num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64, projection_dim=32,
            bos_token_id=vocab["[DEC]"], pad_token_id=vocab["[PAD]"],
            sep_token_id=vocab["[SEP]"], eos_token_id=vocab["[SEP]"],
        ),
        projection_dim=32,
    )
    torch.manual_seed(SEED)
    model = BlipForConditionalGeneration(config)
    model.save_pretrained(out, safe_serialization=True)
    processor.save_pretrained(out)


BUILDERS = {SD_NAME: build_tiny_sd, SDXL_NAME: build_tiny_sdxl, FLUX_NAME: build_tiny_flux, CAPTIONER_NAME: build_tiny_captioner}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="models directory to write into")
    args = parser.parse_args()
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    for name, build in BUILDERS.items():
        # Build beside the target, then swap in, so a crash never leaves a half-written model.
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out))
        try:
            build(tmp)
            final = out / name
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        size = sum(f.stat().st_size for f in final.rglob("*") if f.is_file())
        print(f"wrote {final} ({size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
