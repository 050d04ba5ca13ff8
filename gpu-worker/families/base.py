"""What every model family has: the frozen parts, a trainable denoiser, encoding, the loss, saving
the LoRA and rendering a sample. Subclasses (sd.py, flux.py) fill in what differs; the training
loop every family shares is train_lora.py.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F

import settings
from families.options import Options, options_for

LORA_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]
LORA_FILENAME = "pytorch_lora_weights.safetensors"


class Family:
    """Base class; subclasses fill in the model-specific parts."""

    name = ""
    pipeline_class = ""  # the diffusers pipeline, as model_index.json names it (`_class_name`)
    denoiser = "unet"  # the pipeline component that gets the LoRA
    sample_steps = 25
    fp16_refused = ""  # why this family cannot train in fp16, if it cannot
    negative_prompts = True  # whether its pipeline takes a negative prompt (FLUX.1's does not)
    lora_targets: list[str] | str = LORA_TARGETS  # peft target_modules

    def __init__(self, path: Path, dev: torch.device, dtype: torch.dtype, options: Options | None = None) -> None:
        self.path, self.device, self.dtype = path, dev, dtype
        self.options = options or options_for(self.name, {})
        self._parts: SimpleNamespace | None = None

    # --- the frozen parts: loaded on first use. A job whose encodings all come from the S3 cache
    # (encoding_cache.py) and renders no sample never loads the text encoders and the VAE.
    @property
    def parts(self) -> SimpleNamespace:
        if self._parts is None:
            self._parts = self.load_frozen()
        return self._parts

    @property
    def frozen_loaded(self) -> bool:
        return self._parts is not None

    def load_frozen(self) -> SimpleNamespace:
        """Tokenizers, text encoders, VAE (cached per worker by the subclass: they are only read)."""
        raise NotImplementedError

    @property
    def vae(self):
        return self.parts.vae

    @property
    def vae_config(self) -> SimpleNamespace:
        """The VAE's geometry and latent scaling, read from its config without loading it."""
        return _vae_config(self.path)

    # --- geometry -------------------------------------------------------------------------
    @property
    def vae_scale(self) -> int:
        return 2 ** (len(self.vae_config.block_out_channels) - 1)

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

    # --- the training objective: loss() = draw -> noisy_and_target -> predict -> weighted MSE.
    # Split so that tests can evaluate a fixed (noise, timestep) set and feed the target to the
    # inference scheduler (tests/test_learning.py, tests/test_consistency.py).
    def scale_latents(self, sample: torch.Tensor) -> torch.Tensor:
        """A VAE latent sample -> the denoiser's latent space."""
        return sample * self.vae_config.scaling_factor

    def draw(self, latents: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (noise, t): t is what noisy_and_target and predict take (DDPM step or flow sigma)."""
        raise NotImplementedError

    def noisy_and_target(self, latents, noise, t) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def predict(self, model: torch.nn.Module, noisy: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def loss_weights(self, t: torch.Tensor) -> torch.Tensor | None:
        """Per-sample loss weights (min-SNR), or None for a plain mean."""
        return None

    def encode_text(self, prompts: list[str]) -> list[dict[str, torch.Tensor]]:
        """Per-prompt text conditioning (the keys caption dropout swaps for the empty caption's)."""
        raise NotImplementedError

    def text_windows(self) -> list[tuple[Any, int]]:
        """(tokenizer, token limit) of each text encoder whose window cuts what the model reads."""
        raise NotImplementedError

    def truncated(self, prompts: list[str]) -> list[bool]:
        """Which prompts are longer than a text encoder's window (their tail is cut)."""
        out = [False] * len(prompts)
        for tokenizer, limit in self.text_windows():
            for i, ids in enumerate(tokenizer(prompts, truncation=False).input_ids):
                out[i] = out[i] or len(ids) > limit
        return out

    def loss(self, model: torch.nn.Module, mean: torch.Tensor, std: torch.Tensor, cond: dict[str, torch.Tensor],
             gen: torch.Generator) -> torch.Tensor:
        latents = self.scale_latents(mean + std * self.randn(mean.shape, gen))
        noise, t = self.draw(latents, gen)
        noisy, target = self.noisy_and_target(latents, noise, t)
        return self.mse(self.predict(model, noisy, t, cond), target, t)

    def mse(self, pred: torch.Tensor, target: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        weights = self.loss_weights(t)
        if weights is None:
            return F.mse_loss(pred.float(), target.float(), reduction="mean")
        per_sample = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=tuple(range(1, pred.ndim)))
        return (per_sample * weights).mean()

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
    def sample(self, model: torch.nn.Module, prompt: str, width: int, height: int, seed: int, *,
               steps: int | None = None, guidance: float | None = None, negative: str | None = None, pipe=None):
        """Denoise under the training's autocast (the LoRA weights are fp32, the frozen ones half), then
        decode outside it: SDXL's VAE overflows in fp16, and autocast would run it in fp16.

        Training samples take the defaults; a generate job (generate.py) passes its own steps,
        guidance and negative prompt, and its pipeline with the LoRAs loaded."""
        pipe = pipe or self.pipeline(model)
        pipe.set_progress_bar_config(disable=True)
        generator = torch.Generator(self.device).manual_seed(seed)
        extra = {**self.pipeline_kwargs(), **({"guidance_scale": guidance} if guidance is not None else {}),
                 **({"negative_prompt": negative} if negative is not None else {})}
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            latents = pipe(
                prompt, width=width, height=height, generator=generator, output_type="latent",
                num_inference_steps=steps or settings.load().sample_steps or self.sample_steps, **extra,
            ).images
        latents = self.unscale_latents(latents, width, height).to(self.vae.dtype)
        image = self.vae.decode(latents, return_dict=False)[0]
        return pipe.image_processor.postprocess(image.float(), output_type="pil")[0]

    def unscale_latents(self, latents: torch.Tensor, width: int, height: int) -> torch.Tensor:
        """The pipeline's output_type="latent" -> the VAE decoder's input."""
        return latents / self.vae_config.scaling_factor

    # --- memory: the frozen parts are on the training device only while they work -------------
    def frozen_modules(self) -> list[torch.nn.Module]:
        """Text encoders and VAE (cached per worker, see family_*.py)."""
        raise NotImplementedError

    def onload(self) -> None:
        for module in self.frozen_modules():
            module.to(self.device)

    def offload(self) -> None:
        """After caching: to CPU memory (kept for the next job on this worker, not reloaded), so
        that FLUX's T5-XXL (9.5 GB in bf16), CLIP and the VAE do not sit beside the training."""
        if not self.frozen_loaded:
            return
        for module in self.frozen_modules():
            module.to("cpu")
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    @contextmanager
    def onloaded(self):
        """The frozen parts back on the device for a while (a sample render)."""
        self.onload()
        try:
            yield
        finally:
            self.offload()

    # --- shared helpers -------------------------------------------------------------------
    def vae_posterior(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dist = self.vae.encode(pixels.to(self.device, self.vae.dtype)).latent_dist
        return dist.mean.float(), dist.std.float()

    def randn(self, shape, gen: torch.Generator) -> torch.Tensor:
        return torch.randn(shape, generator=gen, device=self.device)


@lru_cache(maxsize=4)
def _vae_config(path: Path) -> SimpleNamespace:
    from diffusers import AutoencoderKL

    cfg = AutoencoderKL.load_config(path, subfolder="vae")
    return SimpleNamespace(block_out_channels=cfg["block_out_channels"], scaling_factor=cfg["scaling_factor"],
                           shift_factor=cfg.get("shift_factor") or 0.0, sample_size=cfg["sample_size"])


def scheduler_from(path: Path):
    """The pipeline's own (inference) scheduler, by the class named in model_index.json."""
    import diffusers

    index = json.loads((path / "model_index.json").read_text(encoding="utf-8"))
    cls = getattr(diffusers, index["scheduler"][1])
    return cls.from_pretrained(path, subfolder="scheduler")
