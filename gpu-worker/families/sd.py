"""Stable Diffusion 1.x/2.x and SDXL: a UNet trained with DDPM noise.

Follows diffusers' train_text_to_image_lora.py and train_dreambooth_lora_sdxl.py: random
timesteps, epsilon or v-prediction target, MSE loss; optional min-SNR weighting and noise offset. SDXL adds a second text encoder
(penultimate hidden states of both, concatenated; pooled output of the second) and the
"time ids" (original size, crop corner, target size) of each image.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from families.base import Family, scheduler_from


@lru_cache(maxsize=2)
def _frozen(path: Path, dev: torch.device, dtype: torch.dtype, xl: bool) -> SimpleNamespace:
    """Tokenizers, text encoders, VAE, schedulers: loaded once per worker, never modified."""
    from diffusers import AutoencoderKL
    from transformers import AutoTokenizer, CLIPTextModel, CLIPTextModelWithProjection

    parts = SimpleNamespace()
    parts.tokenizers = [AutoTokenizer.from_pretrained(path, subfolder="tokenizer")]
    parts.text_encoders = [CLIPTextModel.from_pretrained(path, subfolder="text_encoder", dtype=dtype)]
    if xl:
        parts.tokenizers.append(AutoTokenizer.from_pretrained(path, subfolder="tokenizer_2"))
        parts.text_encoders.append(
            CLIPTextModelWithProjection.from_pretrained(path, subfolder="text_encoder_2", dtype=dtype)
        )
    # SDXL's VAE overflows in fp16 (NaN latents) unless it is a patched one: keep it in fp32 then.
    vae_dtype = torch.float32 if xl and dtype == torch.float16 else dtype
    parts.vae = AutoencoderKL.from_pretrained(path, subfolder="vae", torch_dtype=vae_dtype)
    for module in (*parts.text_encoders, parts.vae):
        module.to(dev).requires_grad_(False).eval()
    parts.inference_scheduler_config = scheduler_from(path).config
    return parts


@lru_cache(maxsize=2)
def _noise_scheduler(path: Path):
    """Training always uses DDPM noise, whatever sampler the pipeline ships with (as diffusers' examples do)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler.from_pretrained(path, subfolder="scheduler")


class StableDiffusion(Family):
    name = "sd"
    pipeline_class = "StableDiffusionPipeline"
    xl = False

    def __init__(self, path: Path, dev: torch.device, dtype: torch.dtype, options=None) -> None:
        super().__init__(path, dev, dtype, options)
        self.noise_scheduler = _noise_scheduler(path)  # a config file: cheap, and the loss needs it

    def load_frozen(self):
        return _frozen(self.path, self.device, self.dtype, self.xl)

    @property
    def tokenizers(self):
        return self.parts.tokenizers

    @property
    def text_encoders(self):
        return self.parts.text_encoders


    def frozen_modules(self):
        return [*self.text_encoders, self.vae]

    @property
    def native_resolution(self) -> int:
        from diffusers import UNet2DConditionModel

        return UNet2DConditionModel.load_config(self.path, subfolder="unet")["sample_size"] * self.vae_scale

    def load_trainable(self) -> torch.nn.Module:
        from diffusers import UNet2DConditionModel

        unet = UNet2DConditionModel.from_pretrained(self.path, subfolder="unet", torch_dtype=self.dtype)
        return unet.to(self.device).requires_grad_(False)

    def _token_ids(self, tokenizer, prompts: list[str]) -> torch.Tensor:
        return tokenizer(
            prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
        ).input_ids.to(self.device)

    def encode_prompts(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        ids = self._token_ids(self.tokenizers[0], prompts)
        return {"prompt_embeds": self.text_encoders[0](ids, return_dict=False)[0]}

    def encode(self, pixels, prompts, geometry):
        mean, std = self.vae_posterior(pixels)
        per_image = self.encode_text(prompts)
        for item, geo in zip(per_image, geometry):
            self.add_geometry(item, geo)
        return mean, std, per_image

    def encode_text(self, prompts):
        cond = self.encode_prompts(prompts)
        return [{k: v[i] for k, v in cond.items()} for i in range(len(prompts))]

    def text_windows(self):
        return [(t, t.model_max_length) for t in self.tokenizers]

    def add_geometry(self, item: dict[str, torch.Tensor], geo: dict[str, Any]) -> None:
        pass

    def added_cond(self, cond: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
        return None

    def draw(self, latents, gen):
        noise = self.randn(latents.shape, gen)
        if self.options.noise_offset:  # diffusers' --noise_offset: a per-image, per-channel shift
            noise = noise + self.options.noise_offset * self.randn((*latents.shape[:2], 1, 1), gen)
        timesteps = torch.randint(
            0, self.noise_scheduler.config.num_train_timesteps, (latents.shape[0],), generator=gen, device=self.device
        )
        return noise, timesteps

    def noisy_and_target(self, latents, noise, t):
        sched = self.noise_scheduler
        noisy = sched.add_noise(latents, noise, t)
        target = sched.get_velocity(latents, noise, t) if sched.config.prediction_type == "v_prediction" else noise
        return noisy, target

    def predict(self, model, noisy, t, cond):
        return model(
            noisy.to(self.dtype), t, cond["prompt_embeds"], added_cond_kwargs=self.added_cond(cond), return_dict=False,
        )[0]

    def loss_weights(self, t):
        gamma = self.options.snr_gamma
        if gamma is None:
            return None
        from diffusers.training_utils import compute_snr

        # Min-SNR (Hang et al. 2023), as diffusers' --snr_gamma: min(SNR, gamma) / SNR for epsilon,
        # / (SNR + 1) for v-prediction.
        snr = compute_snr(self.noise_scheduler, t)
        clipped = torch.minimum(snr, torch.full_like(snr, gamma))
        return clipped / (snr + 1 if self.noise_scheduler.config.prediction_type == "v_prediction" else snr)

    def kohya_identity(self, model):
        if self.xl:
            return "stable-diffusion-xl-v1-base", "sdxl_base_v1-0", "networks.lora", "https://github.com/Stability-AI/generative-models"
        v2 = model.config.cross_attention_dim == 1024  # SD-2.x conditions on OpenCLIP-H (1024), SD-1.x on CLIP-L (768)
        return ("stable-diffusion-v2", "sd_v2", "networks.lora", "diffusers") if v2 else \
            ("stable-diffusion-v1", "sd_v1", "networks.lora", "diffusers")

    def to_kohya(self, state, model):
        from families.kohya import unet_to_kohya

        return unet_to_kohya(state, model.config.layers_per_block if self.xl else None)

    def pipeline(self, model):
        from diffusers import StableDiffusionPipeline

        return StableDiffusionPipeline(
            vae=self.vae, text_encoder=self.text_encoders[0], tokenizer=self.tokenizers[0], unet=model,
            scheduler=self._inference_scheduler(), safety_checker=None, feature_extractor=None,
            requires_safety_checker=False,
        )

    def _inference_scheduler(self):
        import diffusers

        config = self.parts.inference_scheduler_config
        return getattr(diffusers, config["_class_name"]).from_config(config)


class StableDiffusionXL(StableDiffusion):
    name = "sdxl"
    pipeline_class = "StableDiffusionXLPipeline"
    xl = True

    def encode_prompts(self, prompts):
        hidden, pooled = [], None
        for tokenizer, encoder in zip(self.tokenizers, self.text_encoders):
            out = encoder(self._token_ids(tokenizer, prompts), output_hidden_states=True)
            pooled = out[0]  # the last encoder's projected pooled output
            hidden.append(out.hidden_states[-2])
        return {"prompt_embeds": torch.cat(hidden, dim=-1), "text_embeds": pooled}

    def add_geometry(self, item, geo):
        # (original h, w), (crop top, left), (target h, w), as SDXL was trained.
        ids = [*geo["original_size"], *geo["crop_top_left"], *geo["target_size"]]
        item["time_ids"] = torch.tensor(ids, dtype=item["prompt_embeds"].dtype, device=self.device)

    def added_cond(self, cond):
        return {"text_embeds": cond["text_embeds"], "time_ids": cond["time_ids"]}


    def pipeline(self, model):
        from diffusers import StableDiffusionXLPipeline

        return StableDiffusionXLPipeline(
            vae=self.vae, text_encoder=self.text_encoders[0], text_encoder_2=self.text_encoders[1],
            tokenizer=self.tokenizers[0], tokenizer_2=self.tokenizers[1], unet=model,
            scheduler=self._inference_scheduler(),
        )
