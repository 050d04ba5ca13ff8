"""Train job: a LoRA on a Stable Diffusion UNet's attention layers.

Follows diffusers' examples/text_to_image/train_text_to_image_lora.py (DDPM noise, random
timesteps, epsilon or v-prediction target, MSE loss, AdamW on the LoRA parameters only),
with one change for small datasets: VAE latent distributions and text embeddings are
computed once per job and reused every step, so each step only runs the UNet.
"""

from __future__ import annotations

import hashlib
import math
import random
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import models
import transfer
from errors import InputError
from images import center_square, open_rgb
from progress import Progress
from trigger import ensure_trigger

LORA_TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]
MAX_CURVE_POINTS = 200
MAX_GRAD_NORM = 1.0
ENCODE_BATCH = 8
LORA_FILENAME = "pytorch_lora_weights.safetensors"


class PhaseTimer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def start(self, phase: str) -> None:
        self._phase, self._t0 = phase, time.perf_counter()

    def stop(self) -> None:
        self.seconds[self._phase] = round(time.perf_counter() - self._t0, 3)


def downsample(values: list[float], limit: int = MAX_CURVE_POINTS) -> list[float]:
    """At most `limit` evenly spaced points, always keeping the first and the last."""
    if len(values) <= limit:
        return list(values)
    idx = np.linspace(0, len(values) - 1, limit).round().astype(int)
    return [values[i] for i in idx]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device


def fold_lora_scale(state: dict[str, torch.Tensor], rank: int, alpha: float) -> dict[str, torch.Tensor]:
    """Multiply alpha/rank into the up (B) matrices, so the saved LoRA has scale 1.0.

    Loaders that ignore or lack alpha (most assume alpha == rank) then apply it correctly.
    """
    scale = alpha / rank
    if scale == 1.0:
        return state
    return {k: v * scale if "lora_B" in k else v for k, v in state.items()}


def _pixel_tensor(img, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """PIL RGB -> (3,H,W) in [-1, 1], the VAE's input range."""
    arr = torch.from_numpy(np.asarray(img, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)
    return arr.to(device, dtype)


@torch.no_grad()  # not inference_mode: these tensors feed autograd-recorded ops later
def cache_latents_and_embeddings(sd: models.FrozenSD, pil_images: list, prompts: list[str]):
    """VAE posterior (mean, std) per image and CLIP hidden states per prompt, computed once."""
    dev, dtype = sd.vae.device, sd.vae.dtype
    means, stds, embeds = [], [], []
    for start in range(0, len(pil_images), ENCODE_BATCH):
        stop = start + ENCODE_BATCH
        pixels = torch.stack([_pixel_tensor(img, dev, dtype) for img in pil_images[start:stop]])
        dist = sd.vae.encode(pixels).latent_dist
        means.append(dist.mean.float())
        stds.append(dist.std.float())
        ids = sd.tokenizer(
            prompts[start:stop], padding="max_length", max_length=sd.tokenizer.model_max_length,
            truncation=True, return_tensors="pt",
        ).input_ids.to(dev)
        embeds.append(sd.text_encoder(ids, return_dict=False)[0])
    return torch.cat(means), torch.cat(stds), torch.cat(embeds)


def _batch_indices(n: int, batch_size: int, generator: torch.Generator):
    """Endless shuffled epochs over n images, `batch_size` indices at a time."""
    queue: list[int] = []
    while True:
        while len(queue) < batch_size:
            queue.extend(torch.randperm(n, generator=generator).tolist())
        yield queue[:batch_size]
        queue = queue[batch_size:]


def _peak_memory_bytes(dev: torch.device) -> int:
    if dev.type == "cuda":
        return int(torch.cuda.max_memory_allocated(dev))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


def run_train(job_input: dict[str, Any], workdir: Path, progress: Progress) -> dict[str, Any]:
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.training_utils import cast_training_params
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    params, images = job_input["params"], job_input["images"]
    steps, seed, batch_size = params["steps"], params["seed"], params["batchSize"]
    timer = PhaseTimer()
    dev, dtype = models.device(), models.weight_dtype()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    timer.start("download")
    progress.phase("download")
    paths = transfer.download_images(images, workdir / "images")
    pil_images = [open_rgb(p, img["id"], f"images.{i}") for i, (p, img) in enumerate(zip(paths, images))]
    timer.stop()

    timer.start("load")
    progress.phase("load")
    sd = models.frozen_sd(job_input["baseModel"], str(models.model_dir()))
    # A fresh UNet per job: training mutates it, and jobs must not see each other's adapters.
    unet = UNet2DConditionModel.from_pretrained(sd.path, subfolder="unet", torch_dtype=dtype).to(dev)
    unet.requires_grad_(False)
    timer.stop()

    timer.start("caching")
    progress.phase("caching")
    resolution = params.get("resolution") or sd.native_resolution
    pil_images = [center_square(img, resolution) for img in pil_images]
    prompts = [ensure_trigger(job_input["triggerWord"], img["caption"]) for img in images]
    latent_mean, latent_std, text_embeds = cache_latents_and_embeddings(sd, pil_images, prompts)
    del pil_images
    timer.stop()

    timer.start("training")
    seed_everything(seed)
    rank, alpha = params["rank"], params.get("alpha") or params["rank"]
    unet.add_adapter(
        LoraConfig(r=rank, lora_alpha=alpha, target_modules=LORA_TARGETS,
                   init_lora_weights="gaussian")
    )
    if dtype != torch.float32:
        cast_training_params(unet, dtype=torch.float32)  # trainable LoRA weights stay in fp32
    lora_params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(lora_params, lr=params["learningRate"])
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    noise_scheduler = sd.noise_scheduler
    scaling = sd.vae.config.scaling_factor
    data_gen = torch.Generator().manual_seed(seed)  # batch order, on CPU
    noise_gen = torch.Generator(dev).manual_seed(seed)  # noise and timesteps, on the device
    batches = _batch_indices(len(images), batch_size, data_gen)

    unet.train()
    losses: list[float] = []
    progress.step("training", 0, steps)
    for step in range(1, steps + 1):
        idx = torch.tensor(next(batches), device=dev)
        mean, std = latent_mean[idx], latent_std[idx]
        latents = (mean + std * torch.randn(mean.shape, generator=noise_gen, device=dev)) * scaling
        noise = torch.randn(latents.shape, generator=noise_gen, device=dev)
        timesteps = torch.randint(
            0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],), generator=noise_gen, device=dev
        )
        noisy = noise_scheduler.add_noise(latents, noise, timesteps)
        if noise_scheduler.config.prediction_type == "v_prediction":
            target = noise_scheduler.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype != torch.float32):
            pred = unet(noisy.to(dtype), timesteps, text_embeds[idx], return_dict=False)[0]
        loss = F.mse_loss(pred.float(), target.float(), reduction="mean")

        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise InputError(
                f"params.learningRate: training diverged (loss {loss_value} at step {step}); "
                "lower the learning rate"
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(lora_params, MAX_GRAD_NORM)
        scaler.step(optimizer)
        scaler.update()
        losses.append(loss_value)
        progress.step("training", step, steps, loss_value)
    timer.stop()

    timer.start("upload")
    progress.phase("upload")
    unet.eval()
    lora_state = convert_state_dict_to_diffusers(fold_lora_scale(get_peft_model_state_dict(unet), rank, alpha))
    out_dir = workdir / "lora"
    # No adapter metadata: with the scale folded in, the file means the same to every loader,
    # and safetensors writes multi-key metadata in hash-map order (the sha256 would vary).
    StableDiffusionPipeline.save_lora_weights(
        save_directory=out_dir, unet_lora_layers=lora_state, weight_name=LORA_FILENAME, safe_serialization=True
    )
    lora_path = out_dir / LORA_FILENAME
    data = lora_path.read_bytes()
    transfer.upload(job_input["output"]["loraUrl"], lora_path)
    timer.stop()

    return {
        "lora": {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)},
        "metrics": {
            "steps": steps,
            "finalLoss": losses[-1],
            "lossCurve": downsample(losses),
            "seconds": timer.seconds,
            "device": models.device_label(),
            "peakMemoryBytes": _peak_memory_bytes(dev),
        },
    }
