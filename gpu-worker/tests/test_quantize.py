"""A quantized frozen base: the denoiser's Linear weights are held in int8 (a quarter of fp32, half
of bf16) while the LoRA trains on top; the warm worker keeps it apart from an unquantized one and
gives it back clean. fp8 where the GPU has no fp8 is refused before anything is downloaded.
(That such a LoRA learns: tests/test_learning.py.)"""

from __future__ import annotations

import handler
import warm
from conftest import train_job
from quantize import weight_bytes


def test_an_int8_base_trains_a_lora_and_is_kept_apart(worker_env, store, progress_log) -> None:
    warm.drop()
    plain = handler.run_job(train_job(store, base="tiny-flux", steps=2, out="out/plain.safetensors"))
    full = weight_bytes(warm._held["model"])
    quantized = handler.run_job(train_job(store, base="tiny-flux", steps=2, quantizeBase="int8", out="out/int8.safetensors"))
    assert "error" not in plain and "error" not in quantized, (plain, quantized)
    kept = warm._held["model"]
    assert weight_bytes(kept) * 4 == full, "int8: one byte per weight instead of four"
    assert not any("lora_" in n for n, _ in kept.named_parameters()), "the adapter left the kept base"
    assert quantized["lora"]["sha256"] != plain["lora"]["sha256"]
    again = handler.run_job(train_job(store, base="tiny-flux", steps=2, out="out/again.safetensors"))
    assert again["lora"]["sha256"] == plain["lora"]["sha256"], "the unquantized base was reloaded, not the int8 one reused"


def test_fp8_without_an_fp8_gpu_is_refused_before_any_download(worker_env, store, progress_log) -> None:
    out = handler.run_job(train_job(store, base="tiny-flux", steps=2, quantizeBase="fp8"))
    assert out["error"].startswith("[INPUT] params.quantizeBase: fp8 needs an Ada or Hopper GPU"), out
    assert not [k for m, k, _ in store.requests if m == "GET"], "nothing downloaded"
