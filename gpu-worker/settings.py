"""Every environment variable the GPU worker reads, in one place.

`load()` reads them when called (cheap), so a test can change the environment between jobs.
The orchestrator's variables live in lib/config.ts; LORAFLOW_CAPTIONER is read by both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

DEFAULT_MODEL_DIR = "/models"
DEFAULT_CAPTIONER = "tiny-captioner"
DEFAULT_CONTRACT_DIR = Path(__file__).resolve().parent.parent / "contract" / "schema"


@dataclass(frozen=True)
class Settings:
    model_dir: Path
    """LORAFLOW_MODEL_DIR: base models and the captioner, one directory per name (baked into the image)."""
    captioner: str
    """LORAFLOW_CAPTIONER: the captioner caption jobs use (the orchestrator caches captions under it)."""
    contract_dir: Path
    """LORAFLOW_CONTRACT_DIR: the JSON Schemas generated from contract/gpu-job.ts."""
    work_dir: str | None
    """LORAFLOW_WORK_DIR: where a job's temporary files go (default: the system temp dir)."""
    sample_steps: int | None
    """LORAFLOW_SAMPLE_STEPS: inference steps of sample images (default: the family's)."""
    log_level: str
    """LORAFLOW_LOG_LEVEL: the worker's log level."""
    require_cuda: bool
    """LORAFLOW_REQUIRE_CUDA: refuse every job when torch sees no GPU (set in Dockerfile.gpu: a worker
    that fell back to the CPU would bill GPU time for hours of CPU training)."""
    keep_denoiser: bool
    """LORAFLOW_KEEP_DENOISER: keep the clean base denoiser in memory between jobs (warm.py; default
    on). Off: every job loads it again, as a worker with no memory to spare must (and the benchmark's baseline)."""


def load(env: Mapping[str, str] = os.environ) -> Settings:
    steps = env.get("LORAFLOW_SAMPLE_STEPS")
    return Settings(
        model_dir=Path(env.get("LORAFLOW_MODEL_DIR", DEFAULT_MODEL_DIR)),
        captioner=env.get("LORAFLOW_CAPTIONER", DEFAULT_CAPTIONER),
        contract_dir=Path(env.get("LORAFLOW_CONTRACT_DIR", DEFAULT_CONTRACT_DIR)),
        work_dir=env.get("LORAFLOW_WORK_DIR") or None,
        sample_steps=int(steps) if steps else None,
        log_level=env.get("LORAFLOW_LOG_LEVEL", "INFO").upper(),
        require_cuda=env.get("LORAFLOW_REQUIRE_CUDA", "") in ("1", "true"),
        keep_denoiser=env.get("LORAFLOW_KEEP_DENOISER", "1") not in ("0", "false"),
    )
