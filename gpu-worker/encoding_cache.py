"""The S3 cache of each image's encodings: its VAE latent posterior (plain and mirrored) and its
caption's text conditioning, so that segment 2..n of a training and a retrain on mostly the same
images skip downloading those images, loading the text encoders and the VAE, and encoding.

The orchestrator names each entry by what it depends on (image, base model, caption, resolution,
buckets, flips, dropout, precision) and hands the job a presigned GET for entries that exist
(`images[i].encoding.readUrl`) and a presigned PUT for those that do not (`.url`). An entry says
what produced it in its safetensors header; one that does not match this job (another dtype on
another GPU, a corrupt file) is a miss: the image is encoded from its pixels, as without a cache.
The cache only saves time: a failure to read or write it never fails a job.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

import transfer
from errors import error_message

log = logging.getLogger("loraflow.encoding_cache")

FORMAT = "loraflow-encoding-1"
MAX_ENTRY_BYTES = 256 << 20  # FLUX at 2048 px: 16 MB of latents and 4 MB of T5 states


@dataclass
class Entry:
    size: tuple[int, int]  # the bucket (width, height) the image was fitted to
    mean: list[torch.Tensor]  # [plain, mirrored when flips are on]
    std: list[torch.Tensor]
    cond: dict[str, torch.Tensor]
    empty: dict[str, torch.Tensor] | None  # the empty caption's conditioning, with caption dropout
    truncated: bool  # the caption was longer than a text encoder's window


def identity(base_model: str, dtype: torch.dtype, *, flip: bool, caption_dropout: bool) -> dict[str, str]:
    """What an entry must have been made with to serve this job (the orchestrator's key covers the
    rest; the dtype it cannot know: `auto` precision is bf16 or fp16 by GPU, fp32 on CPU)."""
    return {"format": FORMAT, "baseModel": base_model, "dtype": str(dtype).removeprefix("torch."),
            "flip": str(int(flip)), "dropout": str(int(caption_dropout))}


def to_file(entry: Entry, ident: dict[str, str], path: Path) -> None:
    from safetensors.torch import save_file

    tensors = {f"mean.{k}": t for k, t in enumerate(entry.mean)} | {f"std.{k}": t for k, t in enumerate(entry.std)}
    tensors |= {f"cond.{k}": t for k, t in entry.cond.items()}
    tensors |= {f"empty.{k}": t for k, t in (entry.empty or {}).items()}
    meta = {**ident, "size": f"{entry.size[0]}x{entry.size[1]}", "truncated": str(int(entry.truncated))}
    save_file({k: t.contiguous().clone() for k, t in tensors.items()}, path, metadata=meta)


def from_file(path: Path, ident: dict[str, str]) -> Entry | None:
    """The entry, or None when it was made for another kind of job."""
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
        if any(meta.get(k) != v for k, v in ident.items()):
            return None
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    views = 2 if ident["flip"] == "1" else 1
    width, height = (int(x) for x in meta["size"].split("x"))
    group = lambda prefix: {k.removeprefix(prefix): t for k, t in tensors.items() if k.startswith(prefix)}  # noqa: E731
    return Entry(
        size=(width, height), mean=[tensors[f"mean.{k}"] for k in range(views)], std=[tensors[f"std.{k}"] for k in range(views)],
        cond=group("cond."), empty=group("empty.") if ident["dropout"] == "1" else None, truncated=meta.get("truncated") == "1",
    )


def fetch(images: Sequence[dict[str, Any]], directory: Path, ident: dict[str, str]) -> dict[int, Entry]:
    """The entries this job was given a readUrl for and can use, by image index."""
    wanted = [i for i, img in enumerate(images) if (img.get("encoding") or {}).get("readUrl")]
    if not wanted:
        return {}
    directory.mkdir(parents=True, exist_ok=True)

    def one(i: int) -> Entry | None:
        path = directory / f"{i:05d}.safetensors"
        try:
            if not transfer.download(images[i]["encoding"]["readUrl"], path, f"images.{i}.encoding.readUrl download",
                                     MAX_ENTRY_BYTES, transfer.BINARY_TYPES, missing_ok=True):
                return None
            return from_file(path, ident)
        except Exception as exc:  # noqa: BLE001 - a cache miss, never a failed job
            log.warning("image %d: cached encoding not used (%s)", i, error_message(exc))
            return None
        finally:
            path.unlink(missing_ok=True)

    with ThreadPoolExecutor(max_workers=min(transfer.DOWNLOAD_THREADS, len(wanted))) as pool:
        found = dict(zip(wanted, pool.map(one, wanted)))
    hits = {i: e for i, e in found.items() if e is not None}
    if len(hits) < len(wanted):
        log.info("%d of %d cached encodings missing or made for another kind of job: encoding those images", len(wanted) - len(hits), len(wanted))
    return hits


def store(images: Sequence[dict[str, Any]], entries: dict[int, Entry], directory: Path, ident: dict[str, str]) -> int:
    """PUT each new entry this job has a url for; -> how many were stored."""
    todo = [i for i in entries if (images[i].get("encoding") or {}).get("url")]
    if not todo:
        return 0
    directory.mkdir(parents=True, exist_ok=True)

    def one(i: int) -> bool:
        path = directory / f"put-{i:05d}.safetensors"
        try:
            to_file(entries[i], ident, path)
            transfer.upload(images[i]["encoding"]["url"], path, f"images.{i}.encoding.url upload")
            return True
        except Exception as exc:  # noqa: BLE001 - the next job encodes this image again
            log.warning("image %d: encoding not cached (%s)", i, error_message(exc))
            return False
        finally:
            path.unlink(missing_ok=True)

    with ThreadPoolExecutor(max_workers=min(transfer.DOWNLOAD_THREADS, len(todo))) as pool:
        return sum(pool.map(one, todo))
