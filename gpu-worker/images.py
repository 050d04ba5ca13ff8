"""Decoding and squaring the downloaded images. A file PIL cannot read is the caller's fault.

Ingest stores JPEG, PNG and WebP files as they came (metadata removed, ICC profile kept), so the
pixels are converted to sRGB here, as ingest's own decoder (libvips) would show them.
"""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, ImageCms, ImageOps

from errors import InputError

_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _to_srgb(img: Image.Image, icc: bytes | None) -> Image.Image:
    """Apply an embedded ICC profile (a Display P3 photo's colours mean nothing without it). A
    profile that does not fit the pixels (or does not parse) is ignored, as browsers do."""
    if not icc or img.mode not in ("RGB", "RGBA", "L"):
        return img
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        out_mode = "RGBA" if img.mode == "RGBA" else "RGB"
        return ImageCms.profileToProfile(img, source, _SRGB, renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC, outputMode=out_mode)
    except (ImageCms.PyCMSError, OSError, ValueError):
        return img


def open_rgb(path: Path, image_id: str, field: str) -> Image.Image:
    """Decode fully (not lazily), honour EXIF rotation and the ICC profile, flatten alpha onto white."""
    try:
        with Image.open(path) as img:
            img.load()
            icc = img.info.get("icc_profile")
            img = ImageOps.exif_transpose(img)
            if img.mode in ("LA", "P"):
                img = img.convert("RGBA")
            img = _to_srgb(img, icc)
            if img.mode == "RGBA":
                background = Image.new("RGBA", img.size, (255, 255, 255, 255))
                img = Image.alpha_composite(background, img)
            return img.convert("RGB")
    except Exception as exc:  # PIL raises many types (UnidentifiedImageError, OSError, DecompressionBombError...)
        raise InputError(f"{field}: image {image_id} could not be decoded ({type(exc).__name__})") from exc


def center_square(img: Image.Image, size: int) -> Image.Image:
    """Resize the short side to `size`, then center-crop, as diffusers' training examples do."""
    return ImageOps.fit(img, (size, size), method=Image.Resampling.BICUBIC, centering=(0.5, 0.5))
