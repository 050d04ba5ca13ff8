"""Training checkpoints: one file with everything a later job needs to continue exactly.

Contents: the trainable LoRA parameters, the optimizer, lr-scheduler and grad-scaler states,
the step, the loss history (so the final loss curve covers the whole training), the noise
generator's and the global RNG states, a fingerprint of the training (base model,
parameters, images) so a checkpoint cannot be resumed into a different training, and the
training's history so far (samples and intermediate LoRAs uploaded, segment ends: plain lists
of dicts), so a job that resumes reports them instead of redoing or losing them.

Written with torch.save, read with torch.load(weights_only=True): tensors and plain
containers only, nothing that could run code.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from errors import InputError

FORMAT = "loraflow-checkpoint/1"


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(path: Path, *, step: int, fingerprint: dict[str, Any], params: dict[str, torch.nn.Parameter],
         optimizer, lr_scheduler, scaler, noise_gen: torch.Generator, losses: list[float],
         history: dict[str, list[dict[str, Any]]] | None = None) -> None:
    payload = {
        "format": FORMAT,
        "step": step,
        "fingerprint": fingerprint,
        "lora": {name: p.detach().to("cpu", copy=True) for name, p in params.items()},
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": lr_scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "noise_generator": {"device": noise_gen.device.type, "state": noise_gen.get_state()},
        "rng": _rng_state(),
        "losses": torch.tensor(losses, dtype=torch.float64),
        "history": history or {},
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    path.write_bytes(buf.getvalue())


def load(path: Path, field: str = "resume") -> dict[str, Any]:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(f"{field}: not a loraflow checkpoint ({type(exc).__name__})") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise InputError(f"{field}: not a {FORMAT} file")
    return ckpt


def check_fingerprint(ckpt: dict[str, Any], fingerprint: dict[str, Any], ignore: tuple[str, ...] = (), field: str = "resume") -> None:
    """`ignore`: keys that may differ (a continued training changes params.steps, nothing else)."""
    saved = ckpt["fingerprint"]
    diffs = [k for k in sorted(set(saved) | set(fingerprint)) if k not in ignore and saved.get(k) != fingerprint.get(k)]
    if diffs:
        shown = ", ".join(f"{k}: {saved.get(k)!r} != {fingerprint.get(k)!r}" for k in diffs[:4])
        raise InputError(f"{field}: the checkpoint belongs to a different training ({shown})")
    if ckpt["step"] > fingerprint["steps"]:
        raise InputError(f"{field}: checkpoint step {ckpt['step']} is after params.steps ({fingerprint['steps']})")


def restore(ckpt: dict[str, Any], *, params: dict[str, torch.nn.Parameter], optimizer, lr_scheduler, scaler,
            noise_gen: torch.Generator, seed: int) -> tuple[int, list[float]]:
    """Load every state saved by `save`; returns (step, losses so far)."""
    saved = ckpt["lora"]
    if set(saved) != set(params):
        raise InputError("resume: the checkpoint's LoRA layers do not match this model")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(saved[name].to(p.device, p.dtype))
    optimizer.load_state_dict(ckpt["optimizer"])
    lr_scheduler.load_state_dict(ckpt["lr_scheduler"])
    if ckpt["scaler"] and scaler.is_enabled():  # fp16 before and now; otherwise nothing to carry over
        scaler.load_state_dict(ckpt["scaler"])
    _restore_rng_state(ckpt["rng"])
    gen_state = ckpt["noise_generator"]
    if gen_state["device"] == noise_gen.device.type:
        noise_gen.set_state(gen_state["state"])
    else:  # resumed on another kind of device: still deterministic, just not the same stream
        noise_gen.manual_seed(seed + ckpt["step"])
    return int(ckpt["step"]), [float(x) for x in ckpt["losses"].tolist()]


def history(ckpt: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The history saved with `save` (empty for a checkpoint written before it was kept)."""
    return {k: [dict(r) for r in v] for k, v in (ckpt.get("history") or {}).items()}
