"""FLUX.1: a flow-matching transformer, conditioned on T5 hidden states and a pooled CLIP embedding.

Follows diffusers' train_dreambooth_lora_flux.py: latents (shifted and scaled) are packed into
2x2 patches, a sigma is drawn (logit-normal by default, see options.py), the input is (1 - sigma) * latents + sigma * noise
and the target is noise - latents. The LoRA covers the layers that script trains.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

import torch

from families.base import Family, scheduler_from

MAX_SEQUENCE_LENGTH = 512  # FLUX.1's T5 context; smaller tokenizers cap it
# FLUX.1-dev's distilled guidance input during training: 1.0, as every diffusers example and
# sd-scripts train it (3.5 is an inference value; training at 3.5 bakes it into the LoRA).
TRAIN_GUIDANCE = 1.0

# The layers diffusers' train_dreambooth_lora_flux.py trains (attention of both streams, both
# feed-forwards, the single blocks' MLP in and out), as a regex: a plain "proj_out" would also catch
# the transformer's final projection, which no reference trains.
LORA_TARGETS = (
    r".*transformer_blocks\.\d+\.(attn\.(to_q|to_k|to_v|to_out\.0|add_q_proj|add_k_proj|add_v_proj|to_add_out)"
    r"|ff\.net\.(0\.proj|2)|ff_context\.net\.(0\.proj|2)|proj_mlp|proj_out)"
)


@lru_cache(maxsize=2)
def _frozen(path: Path, dev: torch.device, dtype: torch.dtype) -> SimpleNamespace:
    from diffusers import AutoencoderKL
    from transformers import AutoTokenizer, CLIPTextModel, T5EncoderModel

    parts = SimpleNamespace()
    parts.tokenizer = AutoTokenizer.from_pretrained(path, subfolder="tokenizer")
    parts.tokenizer_2 = AutoTokenizer.from_pretrained(path, subfolder="tokenizer_2")
    parts.text_encoder = CLIPTextModel.from_pretrained(path, subfolder="text_encoder", dtype=dtype)
    parts.text_encoder_2 = T5EncoderModel.from_pretrained(path, subfolder="text_encoder_2", dtype=dtype)
    parts.vae = AutoencoderKL.from_pretrained(path, subfolder="vae", torch_dtype=dtype)
    for module in (parts.text_encoder, parts.text_encoder_2, parts.vae):
        module.to(dev).requires_grad_(False).eval()
    parts.inference_scheduler = scheduler_from(path)
    return parts


@lru_cache(maxsize=2)
def _noise_scheduler(path: Path):
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler.from_pretrained(path, subfolder="scheduler")


class Flux(Family):
    name = "flux"
    pipeline_class = "FluxPipeline"
    denoiser = "transformer"
    sample_steps = 28
    negative_prompts = False  # distilled guidance: FluxPipeline ignores a negative prompt without true CFG
    # FLUX.1 was trained in bf16: its activations exceed fp16's range (inf/NaN), and every reference
    # trainer (diffusers, ai-toolkit, sd-scripts) runs it in bf16.
    fp16_refused = "its activations overflow fp16's range; it was trained and is only trained in bf16"

    def __init__(self, path: Path, dev: torch.device, dtype: torch.dtype, options=None) -> None:
        super().__init__(path, dev, dtype, options)
        self.noise_scheduler = _noise_scheduler(path)  # a config file: cheap, and the loss needs it

    def load_frozen(self):
        return _frozen(self.path, self.device, self.dtype)

    @property
    def max_sequence_length(self) -> int:
        return min(MAX_SEQUENCE_LENGTH, self.parts.tokenizer_2.model_max_length)


    def frozen_modules(self):
        return [self.parts.text_encoder, self.parts.text_encoder_2, self.vae]

    @property
    def pixel_multiple(self) -> int:
        return self.vae_scale * 2  # latents are packed into 2x2 patches

    @property
    def native_resolution(self) -> int:
        return int(self.vae_config.sample_size)

    def load_trainable(self):
        from diffusers import FluxTransformer2DModel

        model = FluxTransformer2DModel.from_pretrained(self.path, subfolder="transformer", torch_dtype=self.dtype)
        return model.to(self.device).requires_grad_(False)

    def encode(self, pixels, prompts, geometry):
        mean, std = self.vae_posterior(pixels)
        return mean, std, self.encode_text(prompts)

    def encode_text(self, prompts):
        p = self.parts
        clip_ids = p.tokenizer(
            prompts, padding="max_length", max_length=p.tokenizer.model_max_length, truncation=True,
            return_tensors="pt",
        ).input_ids.to(self.device)
        pooled = p.text_encoder(clip_ids, output_hidden_states=False).pooler_output
        t5_ids = p.tokenizer_2(
            prompts, padding="max_length", max_length=self.max_sequence_length, truncation=True,
            return_tensors="pt",
        ).input_ids.to(self.device)
        embeds = p.text_encoder_2(t5_ids, output_hidden_states=False)[0]
        return [{"prompt_embeds": embeds[i], "pooled": pooled[i]} for i in range(len(prompts))]

    def text_windows(self):
        # T5 carries the prompt; CLIP only gives the pooled vector, cut at 77 tokens by the
        # reference and the pipeline alike.
        return [(self.parts.tokenizer_2, self.max_sequence_length)]

    def scale_latents(self, sample):
        return (sample - self.vae_config.shift_factor) * self.vae_config.scaling_factor

    def draw(self, latents, gen):
        from diffusers.training_utils import compute_density_for_timestep_sampling

        noise = self.randn(latents.shape, gen)
        b, sched = latents.shape[0], self.noise_scheduler
        if self.options.timestep_sampling == "shift":
            # sd-scripts' flux_shift: sigmoid(normal), shifted towards noise for larger images
            # exactly as the inference scheduler's dynamic shift does (mu from the token count).
            from diffusers.pipelines.flux.pipeline_flux import calculate_shift

            cfg = sched.config
            tokens = (latents.shape[2] // 2) * (latents.shape[3] // 2)
            mu = calculate_shift(tokens, cfg.base_image_seq_len, cfg.max_image_seq_len, cfg.base_shift, cfg.max_shift)
            t = torch.sigmoid(torch.randn((b,), generator=gen, device=self.device))
            return noise, (math.exp(mu) / (math.exp(mu) + (1 / t - 1))).float()
        # diffusers' script: u from the weighting scheme, then the training scheduler's sigma at u.
        scheme = "logit_normal" if self.options.timestep_sampling == "logit_normal" else "none"
        u = compute_density_for_timestep_sampling(scheme, b, logit_mean=0.0, logit_std=1.0, device=self.device, generator=gen)
        indices = (u * sched.config.num_train_timesteps).long().clamp(max=sched.config.num_train_timesteps - 1).cpu()
        return noise, sched.sigmas[indices].to(self.device, torch.float32)

    def noisy_and_target(self, latents, noise, t):
        sigmas = t.view(-1, 1, 1, 1)
        return (1.0 - sigmas) * latents + sigmas * noise, noise - latents

    def predict(self, model, noisy, t, cond):
        from diffusers import FluxPipeline

        b, c, h, w = noisy.shape
        packed = FluxPipeline._pack_latents(noisy, b, c, h, w)
        img_ids = FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, self.device, self.dtype)
        embeds = cond["prompt_embeds"]
        txt_ids = torch.zeros(embeds.shape[1], 3, device=self.device, dtype=self.dtype)
        guidance = None
        if model.config.guidance_embeds:
            guidance = torch.full((b,), TRAIN_GUIDANCE, device=self.device, dtype=torch.float32)
        # The transformer takes the sigma itself (the pipeline passes scheduler timestep / 1000).
        pred = model(
            hidden_states=packed.to(self.dtype), timestep=t, guidance=guidance, pooled_projections=cond["pooled"],
            encoder_hidden_states=embeds, txt_ids=txt_ids, img_ids=img_ids, return_dict=False,
        )[0]
        return FluxPipeline._unpack_latents(pred, h * self.vae_scale, w * self.vae_scale, self.vae_scale)

    lora_targets = LORA_TARGETS

    def kohya_identity(self, model):
        # FLUX.1-dev embeds the distilled guidance; schnell does not.
        arch = "flux-1-dev" if model.config.guidance_embeds else "flux-1-schnell"
        return arch, "flux1", "networks.lora_flux", "https://github.com/black-forest-labs/flux"

    def to_kohya(self, state, model):
        from families.kohya import flux_to_kohya

        return flux_to_kohya(state, model)

    def pipeline(self, model):
        from diffusers import FluxPipeline

        p = self.parts
        return FluxPipeline(
            scheduler=type(p.inference_scheduler).from_config(p.inference_scheduler.config), vae=self.vae,
            text_encoder=p.text_encoder, tokenizer=p.tokenizer, text_encoder_2=p.text_encoder_2,
            tokenizer_2=p.tokenizer_2, transformer=model,
        )

    def unscale_latents(self, latents, width, height):
        from diffusers import FluxPipeline

        latents = FluxPipeline._unpack_latents(latents, height, width, self.vae_scale)
        return latents / self.vae_config.scaling_factor + self.vae_config.shift_factor

    def pipeline_kwargs(self):
        return {"max_sequence_length": self.max_sequence_length}
