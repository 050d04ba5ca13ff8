"""Decoding and squaring the downloaded images. A file PIL cannot read is the caller's fault."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps

from errors import InputError


def open_rgb(path: Path, image_id: str, field: str) -> Image.Image:
    """Decode fully (not lazily), honour EXIF rotation, flatten alpha onto white."""
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "LA", "P"):
                img = img.convert("RGBA")
                background = Image.new("RGBA", img.size, (255, 255, 255, 255))
                img = Image.alpha_composite(background, img)
            return img.convert("RGB")
    except Exception as exc:  # PIL raises many types (UnidentifiedImageError, OSError, DecompressionBombError...)
        raise InputError(f"{field}: image {image_id} could not be decoded ({type(exc).__name__})") from exc


def center_square(img: Image.Image, size: int) -> Image.Image:
    """Resize the short side to `size`, then center-crop, as diffusers' training examples do."""
    return ImageOps.fit(img, (size, size), method=Image.Resampling.BICUBIC, centering=(0.5, 0.5))
