"""The `.safetensors` header metadata that A1111, Forge and ComfyUI read to tag a LoRA (sd-scripts'
`ss_*` keys and Stability's `modelspec.*`), written deterministically.

safetensors itself writes metadata in hash-map order (the bytes, and so the sha256 the orchestrator
records, would differ run to run), so the header is rewritten here with sorted keys. Nothing
time-dependent goes in: the same training gives the same bytes.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

SPEC_VERSION = "1.0.0"


def describe(fam, model, job_input: dict[str, Any], fingerprint: dict[str, Any], resolution: int) -> dict[str, str]:
    """What the training was: base model, trigger word, rank, steps, dataset hash."""
    p = job_input["params"]
    arch, base_version, module, impl = fam.kohya_identity(model)
    trigger = job_input["triggerWord"]
    return {
        "modelspec.sai_model_spec": SPEC_VERSION,
        "modelspec.architecture": f"{arch}/lora",
        "modelspec.implementation": impl,
        "modelspec.title": trigger,
        "modelspec.trigger_phrase": trigger,
        "modelspec.resolution": f"{resolution}x{resolution}",
        "ss_base_model_version": base_version,
        "ss_sd_model_name": job_input["baseModel"],
        "ss_network_module": module,
        "ss_network_dim": str(p["rank"]),
        "ss_network_alpha": str(p["rank"]),  # alpha/rank is folded into the weights: scale 1
        "ss_max_train_steps": str(p["steps"]),
        "ss_steps": str(p["steps"]),
        "ss_learning_rate": repr(float(p["learningRate"])),
        "ss_seed": str(p["seed"]),
        "ss_resolution": f"({resolution}, {resolution})",
        "ss_num_train_images": str(len(job_input["images"])),
        "ss_tag_frequency": json.dumps({"dataset": {trigger: len(job_input["images"])}}, sort_keys=True),
        "ss_dataset_sha256": fingerprint["images"],  # ids and captions of the training images
    }


def write(path: Path, metadata: dict[str, str]) -> None:
    """Merge `metadata` into the header of the safetensors file at `path`, keys sorted."""
    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + size])
    header["__metadata__"] = {**header.get("__metadata__", {}), **metadata}
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    # Tensor offsets are relative to the end of the header, so only the header changes.
    text = json.dumps(dict(sorted(header.items())), separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header to 8 bytes with spaces
    path.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + size :])
