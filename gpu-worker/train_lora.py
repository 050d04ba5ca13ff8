"""Train job: a LoRA on an SD or SDXL UNet's attention or on FLUX's transformer blocks.

The loop every family shares (family_*.py hold what differs): AdamW on the LoRA parameters
only, an lr schedule, gradient accumulation, mixed precision (frozen weights in bf16/fp16,
LoRA weights in fp32), optional gradient checkpointing. VAE latent distributions and text
embeddings are computed once per job and reused every step, so a step only runs the denoiser.

A job trains from step 0 or from a resumed checkpoint up to params.steps, or ends a segment
early (stopAtStep, stopAfterSeconds, cancel, SIGTERM) with a checkpoint and no LoRA. A training
may start from earlier weights (initFrom): a published LoRA's, or a finished training's final
checkpoint, which it then continues to its own, larger params.steps. The batch
order is a function of (seed, step) and every RNG state is checkpointed, so a training split
into segments ends with the same weights as an uninterrupted one. Samples (one per prompt, a
fixed seed per prompt) and intermediate LoRAs (saves) are recorded in the checkpoints with the
files tag of the job that made them: a resumed job reports them all, and makes up at its first
step any that a stop skipped.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import torch

import checkpoint
import encoding_cache
import init_from
import lora_metadata
import models
import quantize
import settings
import transfer
import warm
from buckets import BatchPlan, bucket_sizes, nearest_bucket
from cache import Cache
from errors import InputError, TransientError
from families import LORA_FILENAME, Family, family_for
from families.options import fingerprint as options_fingerprint
from families.options import gradient_checkpointing
from images import open_rgb
from progress import Progress
from stop import StopSignal
from trigger import ensure_trigger
from training_parts import PhaseTimer, downsample, fold_lora_scale, peak_memory_bytes, seed_everything, sha256_hex

MAX_GRAD_NORM = 1.0
EXPLODE_FACTOR = 100.0  # loss this many times its early median: the training exploded
EXPLODE_REFERENCE_STEPS = 10

log = logging.getLogger("loraflow.train")


def fingerprint(job_input: dict[str, Any], fam: Family, resolution: int) -> dict[str, Any]:
    """What must not change between the segments of one training."""
    p = job_input["params"]
    images = hashlib.sha256(
        "\n".join(f"{img['id']} {img['caption']}" for img in job_input["images"]).encode()
    ).hexdigest()
    return {
        "family": fam.name, "baseModel": job_input["baseModel"], "triggerWord": job_input["triggerWord"],
        "images": images, "steps": p["steps"], "rank": p["rank"], "alpha": p.get("alpha") or p["rank"],
        "learningRate": p["learningRate"], "batchSize": p["batchSize"], "seed": p["seed"],
        "resolution": resolution, "aspectBuckets": p.get("aspectBuckets", False),
        "lrScheduler": p.get("lrScheduler", "constant"), "warmupSteps": p.get("warmupSteps", 0),
        "gradientAccumulation": p.get("gradientAccumulation", 1), **options_fingerprint(fam.options),
        **({"quantizeBase": p["quantizeBase"]} if p.get("quantizeBase") else {}),
    }


def run_train(job_input: dict[str, Any], workdir: Path, progress: Progress, stop: StopSignal | None = None) -> dict[str, Any]:
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import cast_training_params
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    stop = stop or StopSignal()
    params, images = job_input["params"], job_input["images"]
    steps, seed, batch_size = params["steps"], params["seed"], params["batchSize"]
    accumulation = params.get("gradientAccumulation", 1)
    ckpt_spec, sample_spec, save_spec = job_input.get("checkpoint"), job_input.get("samples"), job_input.get("saves")
    tag = {"filesTag": job_input["filesTag"]} if "filesTag" in job_input else {}
    timer = PhaseTimer()
    dev, dtype = models.device(), models.training_dtype(params.get("mixedPrecision", "auto"))
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    quantize.check(params.get("quantizeBase"), dev)  # before any download

    def stopped_before_training(phase: str) -> None:
        if stop.is_set():
            raise TransientError(f"job stopped ({stop.reason}) during {phase}, before any training step")

    timer.start("download")
    progress.phase("download")
    # Encodings first: an image whose encoding is cached is never downloaded (encoding_cache.py).
    flip, dropout = bool(params.get("flipHorizontal")), bool(params.get("captionDropout"))
    ident = encoding_cache.identity(job_input["baseModel"], dtype, flip=flip, caption_dropout=dropout)
    cached = encoding_cache.fetch(images, workdir / "encodings", ident)
    missing = [i for i in range(len(images)) if i not in cached]
    fetched = transfer.download_images([images[i] for i in missing], workdir / "images", indices=missing) if missing else []
    paths: dict[int, Path] = dict(zip(missing, fetched))
    resumed = None
    # A job the service retried (same id, same input) continues from its own last checkpoint,
    # which is newer than the one it was given to resume from.
    own = (ckpt_spec or {}).get("readUrl")
    if own and transfer.fetch_if_exists(own, workdir / "resume.ckpt", "checkpoint.readUrl download"):
        resumed = checkpoint.load(workdir / "resume.ckpt")
    elif "resume" in job_input:
        transfer.download(job_input["resume"]["url"], workdir / "resume.ckpt", "resume download")
        resumed = checkpoint.load(workdir / "resume.ckpt")
    # No checkpoint of this training yet: its first job starts from the weights it was given.
    continuing, init_lora = False, None
    if resumed is None and "initFrom" in job_input:
        resumed, init_lora = init_from.fetch(job_input["initFrom"], workdir)
        continuing = resumed is not None
    # Every downloaded image is decoded now, one at a time, so a bad one fails the job before any
    # model loads; only its size is kept (the cache decodes again, a chunk at a time).
    image_sizes = {i: open_rgb(paths[i], images[i]["id"], f"images.{i}").size for i in missing}
    timer.stop()
    stopped_before_training("download")
    timer.start("load")
    progress.phase("load")
    fam = family_for(models.base_model_path(job_input["baseModel"], settings.load().model_dir), dev, dtype, params)
    model, kept = warm.denoiser(fam, params.get("quantizeBase"))  # kept clean between jobs (warm.py)
    log.info("denoiser %s", "kept from the last job" if kept else "loaded")
    timer.stop()
    stopped_before_training("load")

    timer.start("caching")
    progress.phase("caching")
    multiple = fam.pixel_multiple
    resolution = max(multiple, (params.get("resolution") or fam.native_resolution) // multiple * multiple)
    fp = fingerprint(job_input, fam, resolution)
    if resumed is not None:
        # A continued training is the same one made longer: everything but params.steps must match.
        checkpoint.check_fingerprint(resumed, fp, ignore=("steps",) if continuing else (), field="initFrom" if continuing else "resume")
        if continuing and resumed["step"] >= steps:
            raise InputError(f"params.steps: {steps} is not past the continued training's step {resumed['step']}")
    choices = bucket_sizes(resolution, multiple) if params.get("aspectBuckets") else None
    sizes = [cached[i].size if i in cached else
             (nearest_bucket(*image_sizes[i], choices) if choices else (resolution, resolution)) for i in range(len(images))]
    prompts = [ensure_trigger(job_input["triggerWord"], img["caption"]) for img in images]
    # A caption longer than a text encoder's window loses its tail: say which, rather than cut silently.
    cut = dict(zip(missing, fam.truncated([prompts[i] for i in missing]))) if missing else {}
    truncated = [img["id"] for i, img in enumerate(images) if (cached[i].truncated if i in cached else cut[i])]
    if truncated:
        log.warning("%d captions are longer than the text encoder's window and were cut", len(truncated))
    opts = fam.options
    if missing or (opts.caption_dropout and not cached):
        fam.onload()  # the text encoders and the VAE: loaded (once per worker) only for images to encode
    cache = Cache(fam, lambda i: open_rgb(paths[i], images[i]["id"], f"images.{i}"), sizes, prompts,
                  flip=opts.flip, caption_dropout=opts.caption_dropout > 0, cached=cached)
    fam.offload()  # the text encoders and VAE leave the GPU: training needs only the denoiser
    stored = encoding_cache.store(images, {i: cache.entry(i, cut[i]) for i in missing}, workdir / "encodings", ident)
    cache_stats = {"hits": len(cached), "encoded": len(missing), "stored": stored}
    log.info("encodings: %d from the cache, %d encoded, %d stored", len(cached), len(missing), stored)
    timer.stop()
    stopped_before_training("caching")

    timer.start("training")
    seed_everything(seed)
    rank, alpha = params["rank"], params.get("alpha") or params["rank"]
    model.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, target_modules=fam.lora_targets, init_lora_weights="gaussian"))
    if gradient_checkpointing(fam.name, params, resolution):
        model.enable_gradient_checkpointing()
    if dtype != torch.float32:
        cast_training_params(model, dtype=torch.float32)  # trainable LoRA weights stay in fp32
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if init_lora is not None:
        init_from.load_lora(trainable, init_lora, fam.denoiser, rank, alpha)
        del init_lora
    lora_params = list(trainable.values())
    optimizer = torch.optim.AdamW(lora_params, lr=params["learningRate"])
    lr_scheduler = get_scheduler(
        params.get("lrScheduler", "constant"), optimizer, num_warmup_steps=params.get("warmupSteps", 0),
        num_training_steps=steps,
    )
    scaler = torch.amp.GradScaler(dev.type, enabled=dtype == torch.float16)
    noise_gen = torch.Generator(dev).manual_seed(seed)  # VAE sampling, noise, timesteps
    plan = BatchPlan(sizes, batch_size, seed)
    start_step, losses = 0, []
    # What the training made so far, kept in every checkpoint: samples {step, prompt (text), sha256,
    # filesTag}, saves {step, sha256, bytes, filesTag}, events {step, kind}.
    history: dict[str, list[dict[str, Any]]] = {"samples": [], "saves": [], "events": []}
    if resumed is not None:
        start_step, losses = checkpoint.restore(
            resumed, params=trainable, optimizer=optimizer, lr_scheduler=lr_scheduler, scaler=scaler,
            noise_gen=noise_gen, seed=seed,
        )
        history.update(checkpoint.history(resumed))
        del resumed
        # A checkpoint not written at a segment's end: the job after it was lost, its later steps redone.
        if start_step < steps and history["events"][-1:] != [{"step": start_step, "kind": "segment-end"}]:
            history["events"].append({"step": start_step, "kind": "resumed-after-loss"})
    end_step = min(job_input.get("stopAtStep") or steps, steps)
    stop_after = job_input.get("stopAfterSeconds")
    sample_prompts: list[str] = (sample_spec or {}).get("prompts", [])
    sample_urls = {int(k): v for k, v in (sample_spec or {}).get("urls", {}).items()}
    save_urls = {int(k): v for k, v in (save_spec or {}).get("urls", {}).items()}
    last_checkpoint: dict[str, Any] | None = None
    checkpointed_events = 0  # events in the last uploaded checkpoint

    def add_seconds(phase: str, t0: float) -> None:
        timer.seconds[phase] = round(timer.seconds.get(phase, 0.0) + time.perf_counter() - t0, 3)

    def upload_checkpoint(step: int, field: str = "url") -> dict[str, Any]:
        nonlocal last_checkpoint, checkpointed_events
        t0 = time.perf_counter()
        path = workdir / "checkpoint.pt"
        checkpoint.save(path, step=step, fingerprint=fp, params=trainable, optimizer=optimizer,
                        lr_scheduler=lr_scheduler, scaler=scaler, noise_gen=noise_gen, losses=losses, history=history)
        data = path.read_bytes()
        transfer.upload(ckpt_spec[field], path, f"checkpoint.{field} upload")
        uploaded = {"sha256": sha256_hex(data), "bytes": len(data), "step": step}
        if field == "url":
            last_checkpoint, checkpointed_events = uploaded, len(history["events"])
        path.unlink()
        add_seconds("checkpoint", t0)
        return uploaded

    def render_samples(step: int) -> None:
        """One sample per prompt not yet rendered at this step, each prompt with its own fixed seed."""
        done = {r["prompt"] for r in history["samples"] if r["step"] == step}
        for i, text in enumerate(sample_prompts):
            if text in done:
                continue
            t0 = time.perf_counter()
            model.eval()
            with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []), fam.onloaded():
                image = fam.sample(model, text, resolution, resolution, seed + i)
            model.train()
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            path = workdir / f"sample-{step}-{i}.png"
            path.write_bytes(buf.getvalue())
            transfer.upload(sample_urls[step][i], path, f"samples.urls.{step}.{i} upload")
            history["samples"].append({"step": step, "prompt": text, "sha256": sha256_hex(buf.getvalue()), **tag})
            path.unlink()
            add_seconds("samples", t0)

    def export_lora(out_dir: Path, step: int) -> Path:
        """The LoRA as it is now, in the job's format, with its deterministic header."""
        state = fold_lora_scale(get_peft_model_state_dict(model), rank, alpha)
        if job_input.get("format", "diffusers") == "kohya":
            out_dir.mkdir()
            lora_path = out_dir / LORA_FILENAME
            save_file(fam.to_kohya(state, model), lora_path)
        else:
            lora_path = fam.save_lora(state, out_dir)  # peft's lora_A/lora_B names, as diffusers saves them
        header = lora_metadata.describe(fam, model, job_input, fp, resolution)
        lora_metadata.write(lora_path, {**header, "ss_steps": str(step)})
        return lora_path

    def save_intermediate(step: int) -> None:
        if any(r["step"] == step for r in history["saves"]):
            return
        t0 = time.perf_counter()
        lora_path = export_lora(workdir / f"lora-step{step}", step)
        data = lora_path.read_bytes()
        transfer.upload(save_urls[step], lora_path, f"saves.urls.{step} upload")
        history["saves"].append({"step": step, "sha256": sha256_hex(data), "bytes": len(data), **tag})
        shutil.rmtree(lora_path.parent)
        add_seconds("saves", t0)

    def should_stop(step: int) -> bool:
        if step >= end_step or stop.is_set():
            return True
        # By time, counted from the first step (setup never eats a segment), and only once this job
        # trained a step, so every segment makes progress.
        return bool(stop_after) and step > start_step and time.monotonic() - loop_started >= stop_after

    def check_loss(step: int, value: float) -> None:
        reference = statistics.median(losses[:EXPLODE_REFERENCE_STEPS]) if losses else None
        if not math.isfinite(value) or (reference is not None and value > EXPLODE_FACTOR * max(reference, 0.01)):
            raise InputError(
                f"params.learningRate: training diverged (loss {value:.4g} at step {step}"
                + (f", {reference:.4g} early on" if reference is not None else "")
                + "); lower the learning rate"
            )

    model.train()
    step, loop_started = start_step, time.monotonic()
    # A job stopped right after a step skips its samples and save (the checkpoint first, and fast):
    # the job that resumes from that step makes them up, from the same weights.
    if start_step and not stop.is_set():
        if start_step in sample_urls:
            render_samples(start_step)
        if start_step in save_urls:
            save_intermediate(start_step)
    progress.step("training", step, steps)
    while not should_stop(step):
        step += 1
        optimizer.zero_grad(set_to_none=True)
        step_loss = 0.0
        for micro in range(accumulation):
            idx = plan.batch((step - 1) * accumulation + micro)
            # Drawn only when on, so that a training without them keeps its random stream.
            mirrored = (torch.rand(len(idx), generator=noise_gen, device=dev) < 0.5).tolist() if opts.flip else None
            dropped = (torch.rand(len(idx), generator=noise_gen, device=dev) < opts.caption_dropout).tolist() \
                if opts.caption_dropout else None
            mean, std, cond = cache.batch(idx, mirrored, dropped)
            with torch.autocast(dev.type, dtype=dtype, enabled=dtype != torch.float32):
                loss = fam.loss(model, mean, std, cond, noise_gen)
            value = loss.item()
            check_loss(step, value)
            scaler.scale(loss / accumulation).backward()
            step_loss += value / accumulation
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(lora_params, MAX_GRAD_NORM)
        scaler.step(optimizer)
        scaler.update()
        lr_scheduler.step()
        losses.append(step_loss)
        rate = (step - start_step) / max(time.monotonic() - loop_started, 1e-9)
        progress.step("training", step, steps, step_loss, it_per_sec=rate, eta_seconds=(steps - step) / rate)
        if step in sample_urls and not stop.is_set():  # stopping: the checkpoint first, and fast
            render_samples(step)
        if step in save_urls and not stop.is_set():
            save_intermediate(step)
        # A segment ending here uploads its checkpoint below, once, with its segment-end event.
        if ckpt_spec and step % ckpt_spec["everySteps"] == 0 and not (step < steps and should_stop(step)):
            upload_checkpoint(step)
    model.eval()
    training_seconds = timer.stop() - sum(timer.seconds.get(p, 0.0) for p in ("checkpoint", "samples", "saves"))
    timer.seconds["training"] = round(max(training_seconds, 0.0), 3)

    finished = step >= steps
    if not finished:
        why = stop.reason or ("stopAtStep" if step >= end_step else "stopAfterSeconds")
        if step == 0:
            raise TransientError(f"job stopped ({why}) before its first training step")
        if not ckpt_spec:
            raise TransientError(f"job stopped ({why}) at step {step} with no checkpoint URL to save it to")
        history["events"].append({"step": step, "kind": "segment-end"})
        if last_checkpoint is None or last_checkpoint["step"] != step or checkpointed_events != len(history["events"]):
            progress.phase("upload")
            upload_checkpoint(step)

    result: dict[str, Any] = {"step": step}
    if finished:
        timer.start("upload")
        progress.phase("upload")
        lora_path = export_lora(workdir / "lora", step)
        data = lora_path.read_bytes()
        transfer.upload(job_input["output"]["loraUrl"], lora_path)
        timer.stop()
        result["lora"] = {"sha256": sha256_hex(data), "bytes": len(data)}
        if ckpt_spec and ckpt_spec.get("finalUrl"):
            result["finalCheckpoint"] = upload_checkpoint(step, "finalUrl")
    if last_checkpoint:
        result["checkpoint"] = last_checkpoint
    # Carried-over samples of a prompt this job does not render are left out (another run's prompts).
    samples = [{**r, "prompt": sample_prompts.index(r["prompt"])} for r in history["samples"] if r["prompt"] in sample_prompts]
    if samples:
        result["samples"] = samples
    if history["saves"]:
        result["saves"] = history["saves"]
    result["metrics"] = {
        "steps": step - start_step,
        "finalLoss": losses[-1] if losses else 0.0,
        "lossCurve": downsample(losses),
        "seconds": timer.seconds,
        "device": models.device_label(),
        "peakMemoryBytes": peak_memory_bytes(dev),
    }
    if history["events"]:
        result["metrics"]["events"] = history["events"]
    if truncated:
        result["metrics"]["truncatedCaptions"] = truncated
    result["metrics"]["encodings"] = cache_stats
    result["metrics"]["warm"] = kept
    return result
