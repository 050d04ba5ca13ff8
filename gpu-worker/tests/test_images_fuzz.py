"""Mutated images never crash the worker: decoding ends in an RGB image or an InputError naming
the field and image (CPU only; a seeded mutation loop, so every run checks the same cases)."""

from __future__ import annotations

import io
import random
from pathlib import Path

from PIL import Image

from errors import InputError
from images import open_rgb

RUNS = 1500


def seeds() -> list[bytes]:
    img = Image.new("RGB", (24, 16), (200, 30, 90))
    out = []
    for fmt in ("PNG", "JPEG", "WEBP", "GIF", "TIFF"):
        buf = io.BytesIO()
        img.save(buf, format=fmt)
        out.append(buf.getvalue())
    return out


def mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(0, 12)):
        if out:
            out[rng.randrange(len(out))] = rng.randrange(256)
    if rng.random() < 0.3:
        at = rng.randrange(len(out) + 1)
        out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    if rng.random() < 0.3 and out:
        del out[rng.randrange(len(out)) :]
    return bytes(out)


def test_mutated_images_decode_or_fail_with_an_input_error(tmp_path: Path):
    rng = random.Random(18)
    originals = seeds()
    decoded = failed = 0
    for i in range(RUNS):
        path = tmp_path / f"{i}"
        path.write_bytes(mutate(originals[i % len(originals)], rng))
        try:
            image = open_rgb(path, f"id{i}", f"images.{i}")
        except InputError as exc:
            assert f"images.{i}: image id{i} could not be decoded" in str(exc)
            failed += 1
        else:
            assert image.mode == "RGB" and image.size[0] > 0
            decoded += 1
    assert decoded and failed  # both outcomes were exercised
