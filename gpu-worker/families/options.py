"""The training options that differ per family, with each family's default, in one place.

A job's params may leave them out (the contract marks them optional): the family's default, which
follows its reference trainer, applies then. Options a family does not have are INPUT errors, not
silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from errors import InputError


@dataclass(frozen=True)
class Options:
    timestep_sampling: str
    """FLUX: "logit_normal" (the default of diffusers' FLUX/SD3 scripts' recommended scheme and
    ai-toolkit's "sigmoid"), "uniform" (weighting scheme "none"), or "shift" (sd-scripts'
    flux_shift: sigmoid of a normal, shifted by the image's token count). SD/SDXL: "uniform" only
    (DDPM timesteps, as their reference scripts draw them)."""
    snr_gamma: float | None
    """SD/SDXL: min-SNR loss weighting (diffusers' --snr_gamma; 5.0 is the paper's value); None: off."""
    noise_offset: float
    """SD/SDXL: add this times a per-channel normal to the noise (darker darks, brighter brights)."""
    caption_dropout: float
    """All: the probability that an image trains with the empty caption (helps the LoRA without its trigger)."""
    flip: bool
    """All: each image also trains mirrored (its latents are cached both ways)."""


TIMESTEP_SAMPLINGS = {"flux": ("logit_normal", "uniform", "shift"), "sd": ("uniform",), "sdxl": ("uniform",)}
DEFAULT_TIMESTEP_SAMPLING = {"flux": "logit_normal", "sd": "uniform", "sdxl": "uniform"}
SNR_FAMILIES = ("sd", "sdxl")  # min-SNR and noise offset are DDPM-noise options


def options_for(family: str, params: dict[str, Any]) -> Options:
    sampling = params.get("timestepSampling") or DEFAULT_TIMESTEP_SAMPLING[family]
    if sampling not in TIMESTEP_SAMPLINGS[family]:
        raise InputError(f"params.timestepSampling: {family} trains with {', '.join(TIMESTEP_SAMPLINGS[family])}, not {sampling!r}")
    if family not in SNR_FAMILIES:
        for key in ("snrGamma", "noiseOffset"):
            if params.get(key):
                raise InputError(f"params.{key}: only for SD and SDXL (DDPM noise), not {family}")
    return Options(
        timestep_sampling=sampling, snr_gamma=params.get("snrGamma"), noise_offset=params.get("noiseOffset") or 0.0,
        caption_dropout=params.get("captionDropout") or 0.0, flip=bool(params.get("flipHorizontal")),
    )


CHECKPOINTING_FAMILIES = ("sdxl", "flux")
CHECKPOINTING_FROM = 1024  # px: where SDXL's and FLUX's activations, not their weights, dominate memory


def gradient_checkpointing(family: str, params: dict[str, Any], resolution: int) -> bool:
    """params.gradientCheckpointing, or the family's default at this resolution (the reference
    trainers' 24 GB profiles all turn it on for SDXL and FLUX at 1024)."""
    if params.get("gradientCheckpointing") is not None:
        return bool(params["gradientCheckpointing"])
    return family in CHECKPOINTING_FAMILIES and resolution >= CHECKPOINTING_FROM


def fingerprint(options: Options) -> dict[str, Any]:
    """What resuming must not change (see train_lora.fingerprint)."""
    return {"timestepSampling": options.timestep_sampling, "snrGamma": options.snr_gamma,
            "noiseOffset": options.noise_offset, "captionDropout": options.caption_dropout, "flip": options.flip}
