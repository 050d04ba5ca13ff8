"""What every model family has: the frozen parts, a trainable denoiser, encoding, the loss, saving
the LoRA and rendering a sample. Subclasses (sd.py, flux.py) fill in what differs; the training
loop every family shares is train_lora.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

import settings

LORA_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]
LORA_FILENAME = "pytorch_lora_weights.safetensors"


class Family:
    """Base class; subclasses fill in the model-specific parts."""

    name = ""
    pipeline_class = ""  # the diffusers pipeline, as model_index.json names it (`_class_name`)
    denoiser = "unet"  # the pipeline component that gets the LoRA
    sample_steps = 25
    fp16_refused = ""  # why this family cannot train in fp16, if it cannot
    lora_targets: list[str] | str = LORA_TARGETS  # peft target_modules

    def __init__(self, path: Path, dev: torch.device, dtype: torch.dtype) -> None:
        self.path, self.device, self.dtype = path, dev, dtype

    # --- geometry -------------------------------------------------------------------------
    @property
    def vae_scale(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def pixel_multiple(self) -> int:
        """Image sides must be multiples of this (the VAE factor, times the patch size)."""
        return self.vae_scale

    @property
    def native_resolution(self) -> int:
        raise NotImplementedError

    # --- per job --------------------------------------------------------------------------
    def load_trainable(self) -> torch.nn.Module:
        raise NotImplementedError

    def encode(self, pixels: torch.Tensor, prompts: list[str], geometry: list[dict[str, Any]]):
        """-> (latent mean, latent std, [per-image conditioning dict]) for one batch of same-size images."""
        raise NotImplementedError

    def loss(self, model: torch.nn.Module, mean: torch.Tensor, std: torch.Tensor, cond: dict[str, torch.Tensor],
             gen: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def save_lora(self, state: dict[str, torch.Tensor], out_dir: Path) -> Path:
        """Diffusers layout (`load_lora_weights`); `state` is peft's state dict of the denoiser.

        No adapter metadata: with the scale folded in, the file means the same to every loader.
        The tagging metadata (lora_metadata.py) is added afterwards, in a deterministic order."""
        import diffusers

        getattr(diffusers, self.pipeline_class).save_lora_weights(
            save_directory=out_dir, weight_name=LORA_FILENAME, safe_serialization=True,
            **{f"{self.denoiser}_lora_layers": state},
        )
        return out_dir / LORA_FILENAME

    def kohya_identity(self, model: torch.nn.Module) -> tuple[str, str, str, str]:
        """(modelspec architecture, ss_base_model_version, ss_network_module, modelspec implementation),
        as sd-scripts writes them for this base model."""
        raise NotImplementedError

    def to_kohya(self, state: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """Kohya / ComfyUI / A1111 key layout of the same LoRA (scale already folded in)."""
        raise NotImplementedError

    def pipeline(self, model: torch.nn.Module):
        """An inference pipeline around the frozen parts and the model being trained."""
        raise NotImplementedError

    def pipeline_kwargs(self) -> dict[str, Any]:
        return {}

    @torch.no_grad()
    def sample(self, model: torch.nn.Module, prompt: str, width: int, height: int, seed: int):
        """Denoise under the training's autocast (the LoRA weights are fp32, the frozen ones half), then
        decode outside it: SDXL's VAE overflows in fp16, and autocast would run it in fp16."""
        pipe = self.pipeline(model)
        pipe.set_progress_bar_config(disable=True)
        generator = torch.Generator(self.device).manual_seed(seed)
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            latents = pipe(
                prompt, width=width, height=height, generator=generator, output_type="latent",
                num_inference_steps=settings.load().sample_steps or self.sample_steps,
                **self.pipeline_kwargs(),
            ).images
        latents = self.unscale_latents(latents, width, height).to(self.vae.dtype)
        image = self.vae.decode(latents, return_dict=False)[0]
        return pipe.image_processor.postprocess(image.float(), output_type="pil")[0]

    def unscale_latents(self, latents: torch.Tensor, width: int, height: int) -> torch.Tensor:
        """The pipeline's output_type="latent" -> the VAE decoder's input."""
        return latents / self.vae.config.scaling_factor

    # --- shared helpers -------------------------------------------------------------------
    def vae_posterior(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dist = self.vae.encode(pixels.to(self.device, self.vae.dtype)).latent_dist
        return dist.mean.float(), dist.std.float()

    def randn(self, shape, gen: torch.Generator) -> torch.Tensor:
        return torch.randn(shape, generator=gen, device=self.device)


def scheduler_from(path: Path):
    """The pipeline's own (inference) scheduler, by the class named in model_index.json."""
    import diffusers

    index = json.loads((path / "model_index.json").read_text(encoding="utf-8"))
    cls = getattr(diffusers, index["scheduler"][1])
    return cls.from_pretrained(path, subfolder="scheduler")
