"""SDXL- and FLUX-shaped models, the kohya key layout, samples, buckets and the other parameters."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as load_safetensors

import handler
from buckets import BatchPlan, bucket_sizes, nearest_bucket
from conftest import png_bytes, train_job
from verify_lora import verify

STEPS = 3


def run(store, base: str, key: str, fmt: str = "diffusers", **params) -> tuple[dict, dict[str, torch.Tensor]]:
    job = train_job(store, base=base, job_id=f"job-{key}", out=f"out/{key}.safetensors", steps=STEPS, **params)
    job["input"]["format"] = fmt
    result = handler.run_job(job)
    assert "error" not in result, result
    return result, load_safetensors(store.objects[f"out/{key}.safetensors"])


def save(tmp_path: Path, store, key: str) -> Path:
    path = tmp_path / f"{key}.safetensors"
    path.write_bytes(store.objects[f"out/{key}.safetensors"])
    return path


@pytest.mark.parametrize("base", ["tiny-sd", "tiny-sdxl"])
def test_unet_lora_in_both_layouts_loads_into_diffusers(base, worker_env, store, progress_log, model_dir, tmp_path) -> None:
    _, diffusers_sd = run(store, base, "d")
    _, kohya_sd = run(store, base, "k", fmt="kohya")
    assert all(k.startswith("unet.") for k in diffusers_sd)
    assert all(k.startswith("lora_unet_") and k.endswith((".lora_down.weight", ".lora_up.weight", ".alpha")) for k in kohya_sd)
    assert any("_attn1_to_q.lora_down.weight" in k for k in kohya_sd)
    assert sum(k.endswith(".alpha") for k in kohya_sd) == sum(k.endswith(".lora_A.weight") for k in diffusers_sd)
    rank = next(v for k, v in kohya_sd.items() if k.endswith(".lora_down.weight")).shape[0]
    assert all(float(v) == rank for k, v in kohya_sd.items() if k.endswith(".alpha"))  # scale already folded in

    reports = {key: verify(model_dir / base, save(tmp_path, store, key)) for key in ("d", "k")}
    for report in reports.values():
        assert report["loaded"] and report["changed"], reports
    # The same training in either layout changes the picture in exactly the same way.
    assert reports["d"]["maxAbsDiff"] == pytest.approx(reports["k"]["maxAbsDiff"], rel=1e-4, abs=1e-6)


def test_flux_lora_trains_and_loads(worker_env, store, progress_log, model_dir, tmp_path) -> None:
    result, state = run(store, "tiny-flux", "f", gradientCheckpointing=True, aspectBuckets=True)
    assert result["metrics"]["steps"] == STEPS and result["metrics"]["finalLoss"] > 0
    assert all(k.startswith("transformer.") for k in state)
    assert any(".single_transformer_blocks.0.attn.to_q.lora_A" in k for k in state)
    report = verify(model_dir / "tiny-flux", save(tmp_path, store, "f"))
    assert report["loaded"] and report["changed"], report


def test_flux_kohya_layout_is_the_same_lora(worker_env, store, progress_log, model_dir) -> None:
    """Kohya FLUX files use the original fused layers (qkv, linear1). diffusers' kohya-FLUX reader
    assumes FLUX.1's full dimensions (test_kohya.py checks it there), so the trained tiny model is
    checked numerically: every weight delta B @ A of the fused layers equals the unfused ones stacked."""
    _, d = run(store, "tiny-flux", "fd")
    _, k = run(store, "tiny-flux", "fk", fmt="kohya")

    def delta(sd, prefix):
        return sd[f"transformer.{prefix}.lora_B.weight"] @ sd[f"transformer.{prefix}.lora_A.weight"]

    def kdelta(name):
        return k[f"{name}.lora_up.weight"] @ k[f"{name}.lora_down.weight"] * (k[f"{name}.alpha"] / k[f"{name}.lora_down.weight"].shape[0])

    qkv = torch.cat([delta(d, f"transformer_blocks.0.attn.to_{m}") for m in "qkv"])
    torch.testing.assert_close(kdelta("lora_unet_double_blocks_0_img_attn_qkv"), qkv)
    torch.testing.assert_close(kdelta("lora_unet_double_blocks_0_img_attn_proj"), delta(d, "transformer_blocks.0.attn.to_out.0"))
    linear1 = kdelta("lora_unet_single_blocks_0_linear1")
    single = torch.cat([delta(d, f"single_transformer_blocks.0.attn.to_{m}") for m in "qkv"])
    torch.testing.assert_close(linear1[: single.shape[0]], single)
    proj_mlp = delta(d, "single_transformer_blocks.0.proj_mlp")
    torch.testing.assert_close(linear1[single.shape[0]:], proj_mlp)
    torch.testing.assert_close(kdelta("lora_unet_single_blocks_0_linear2"), delta(d, "single_transformer_blocks.0.proj_out"))
    txt = torch.cat([delta(d, f"transformer_blocks.0.attn.add_{m}_proj") for m in "qkv"])
    torch.testing.assert_close(kdelta("lora_unet_double_blocks_0_txt_attn_qkv"), txt)
    assert {n.split(".")[0] for n in k} == {
        *(f"lora_unet_double_blocks_0_{m}" for m in ("img_attn_qkv", "img_attn_proj", "txt_attn_qkv", "txt_attn_proj",
                                                     "img_mlp_0", "img_mlp_2", "txt_mlp_0", "txt_mlp_2")),
        "lora_unet_single_blocks_0_linear1", "lora_unet_single_blocks_0_linear2",
    }


def test_samples_are_rendered_and_uploaded(worker_env, store, progress_log) -> None:
    job = train_job(store, steps=4, extra={"samples": {"prompts": ["zxq on a beach"], "urls": {"2": [store.url("s/2.png")], "4": [store.url("s/4.png")]}}})
    result = handler.run_job(job)
    assert "error" not in result, result
    assert [s["step"] for s in result["samples"]] == [2, 4]
    for sample in result["samples"]:
        body = store.objects[f"s/{sample['step']}.png"]
        assert hashlib.sha256(body).hexdigest() == sample["sha256"]
        assert body.startswith(b"\x89PNG")
    assert store.objects["s/2.png"] != store.objects["s/4.png"]  # the LoRA moved in between
    assert "samples" in result["metrics"]["seconds"]
    # Rendering a sample must not disturb the training's randomness.
    plain = handler.run_job(train_job(store, steps=4, out="out/plain.safetensors"))
    assert plain["lora"]["sha256"] == result["lora"]["sha256"]


def test_parameters_change_the_training(worker_env, store, progress_log) -> None:
    base, _ = run(store, "tiny-sd", "base")
    variants = [
        dict(lrScheduler="linear", warmupSteps=2),
        dict(gradientAccumulation=2),
        dict(aspectBuckets=True),
        dict(mixedPrecision="bf16"),
    ]
    for i, params in enumerate(variants):
        result, _ = run(store, "tiny-sd", f"v{i}", **params)
        assert result["lora"]["sha256"] != base["lora"]["sha256"], params
    # gradient checkpointing recomputes activations: same result, less memory
    same, _ = run(store, "tiny-sd", "gc", gradientCheckpointing=True)
    assert same["metrics"]["lossCurve"] == pytest.approx(base["metrics"]["lossCurve"], rel=1e-4)


def test_exploding_loss_stops_the_training(worker_env, store, progress_log, monkeypatch) -> None:
    import torch.nn.functional as F

    real, calls = F.mse_loss, {"n": 0}

    def exploding(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs) * (1e6 if calls["n"] > 12 else 1.0)

    monkeypatch.setattr(F, "mse_loss", exploding)
    result = handler.run_job(train_job(store, steps=20))
    assert result["error"].startswith("[INPUT] params.learningRate: training diverged (loss ")
    assert "at step 13" in result["error"] and not any(worker_env.iterdir())


def test_out_of_memory_is_classified_and_cleaned_up(worker_env, store, progress_log, monkeypatch) -> None:
    from families import sd as family_sd

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(family_sd.StableDiffusion, "loss", oom)
    result = handler.run_job(train_job(store, steps=2))
    assert result["error"].startswith("[OOM] ")
    assert not any(worker_env.iterdir())


def test_jobs_in_a_row_are_independent(worker_env, store, progress_log) -> None:
    first, _ = run(store, "tiny-sd", "a")
    run(store, "tiny-flux", "b")
    run(store, "tiny-sd", "c", rank=8, learningRate=1e-2)
    again, _ = run(store, "tiny-sd", "a2")
    assert again["lora"]["sha256"] == first["lora"]["sha256"]


def test_aspect_buckets() -> None:
    sizes = bucket_sizes(1024, 8)
    assert (1024, 1024) in sizes and all(w % 64 == 0 and h % 64 == 0 and w * h <= 1024 * 1024 for w, h in sizes)
    assert nearest_bucket(1600, 900, sizes) in [(1344, 768), (1280, 768), (1344, 704)]
    assert nearest_bucket(900, 1600, sizes)[1] > nearest_bucket(900, 1600, sizes)[0]
    assert nearest_bucket(500, 500, sizes) == (1024, 1024)
    tiny = bucket_sizes(32, 2)
    assert all(w % 2 == 0 and h % 2 == 0 for w, h in tiny)
    # batches never mix sizes, every image is seen once per epoch, the order depends on the seed only
    plan = BatchPlan([(32, 32), (40, 24), (32, 32), (40, 24), (32, 32)], batch_size=2, seed=3)
    epoch = [plan.batch(i) for i in range(plan.per_epoch)]
    assert sorted(i for b in epoch for i in b) == [0, 1, 2, 3, 4]
    assert all(len({(0 if i in (0, 2, 4) else 1) for i in b}) == 1 for b in epoch)
    sizes5 = [(32, 32), (40, 24), (32, 32), (40, 24), (32, 32)]
    assert [plan.batch(i) for i in range(9)] == [BatchPlan(sizes5, 2, 3).batch(i) for i in range(9)]
    assert [plan.batch(i) for i in range(9)] != [BatchPlan(sizes5, 2, 4).batch(i) for i in range(9)]


def test_wide_images_keep_their_aspect_ratio(worker_env, store, progress_log) -> None:
    job = train_job(store, steps=2, aspectBuckets=True)
    wide = store.put_image("img/wide.png", png_bytes(9, size=24, width=72))
    job["input"]["images"].append(dict(wide, caption="a wide picture"))
    result = handler.run_job(job)
    assert "error" not in result, result
