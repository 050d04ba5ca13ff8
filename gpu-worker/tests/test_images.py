"""open_rgb reads every format ingest stores (JPEG, PNG, WebP kept in their own encoding, PNG when
re-encoded) to an RGB image of the stored size, and applies a kept ICC profile as ingest's
decoder (libvips) does: a Display P3 pixel comes out as the sRGB value sharp gives for it."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from images import open_rgb

P3 = (Path(__file__).parent / "fixtures" / "display-p3.icc").read_bytes()
"""sharp's built-in Display P3 profile (`withIccProfile('p3')`)."""
SHARP_SRGB_OF_P3 = (215, 93, 32)
"""What sharp decodes P3 (200, 100, 50) to, with that profile (measured with sharp 0.35)."""


def _save(tmp_path: Path, img: Image.Image, fmt: str, **kwargs) -> Path:
    path = tmp_path / "00000"  # transfer.download_images names files without an extension
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    path.write_bytes(buf.getvalue())
    return path


@pytest.mark.parametrize(
    ("mode", "fmt", "kwargs"),
    [
        ("RGB", "JPEG", {"quality": 90}),
        ("L", "JPEG", {}),
        ("RGB", "JPEG", {"progressive": True}),
        ("RGB", "PNG", {}),
        ("RGBA", "PNG", {}),
        ("LA", "PNG", {}),
        ("P", "PNG", {"transparency": 0}),
        ("RGB", "WEBP", {"quality": 80}),
        ("RGBA", "WEBP", {"lossless": True}),
    ],
)
def test_reads_every_stored_format(tmp_path: Path, mode: str, fmt: str, kwargs: dict) -> None:
    img = Image.new("RGB", (37, 21), (10, 200, 30)).convert(mode)
    out = open_rgb(_save(tmp_path, img, fmt, **kwargs), "id", "images.0")
    assert out.mode == "RGB" and out.size == (37, 21)


@pytest.mark.parametrize(("fmt", "kwargs"), [("PNG", {}), ("JPEG", {"quality": 100, "subsampling": 0}), ("WEBP", {"lossless": True})])
def test_applies_a_kept_icc_profile_as_ingest_did(tmp_path: Path, fmt: str, kwargs: dict) -> None:
    img = Image.new("RGB", (8, 8), (200, 100, 50))
    got = open_rgb(_save(tmp_path, img, fmt, icc_profile=P3, **kwargs), "id", "images.0").getpixel((4, 4))
    assert all(abs(a - b) <= 2 for a, b in zip(got, SHARP_SRGB_OF_P3)), got
    plain = open_rgb(_save(tmp_path, img, fmt, **kwargs), "id", "images.0").getpixel((4, 4))
    assert all(abs(a - b) <= 1 for a, b in zip(plain, (200, 100, 50))), plain


def test_a_profile_that_does_not_fit_is_ignored(tmp_path: Path) -> None:
    grey = Image.new("L", (8, 8), 120)  # an RGB profile on grey pixels
    assert open_rgb(_save(tmp_path, grey, "PNG", icc_profile=P3), "id", "images.0").getpixel((0, 0)) == (120, 120, 120)
    assert open_rgb(_save(tmp_path, grey, "PNG", icc_profile=b"not a profile"), "id", "images.0").getpixel((0, 0)) == (120, 120, 120)
