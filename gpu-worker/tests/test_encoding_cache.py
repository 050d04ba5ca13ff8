"""The S3 cache of encodings: a job stores what it encodes, the next job on the same images reads
it instead of downloading and encoding them (and never loads the text encoders or the VAE), and
trains exactly as it would have from the pixels. A bad or foreign entry is only a miss."""

from __future__ import annotations

import pytest

import handler
from conftest import train_job


def with_cache(job: dict, store, *, read: bool) -> dict:
    for i, img in enumerate(job["input"]["images"]):
        img["encoding"] = {"readUrl": store.url(f"enc/{i}")} if read else {"url": store.url(f"enc/{i}")}
    return job


def image_gets(store) -> int:
    return sum(1 for method, key, _ in store.requests if method == "GET" and key.startswith("img/"))


@pytest.mark.parametrize("base", ["tiny-sdxl", "tiny-flux"])
def test_a_later_job_trains_from_the_cached_encodings(worker_env, store, progress_log, base, monkeypatch) -> None:
    import families.flux
    import families.sd

    params = dict(steps=2, captionDropout=0.5, flipHorizontal=True, aspectBuckets=True)
    first = handler.run_job(with_cache(train_job(store, base=base, out="out/a.safetensors", **params), store, read=False))
    assert "error" not in first, first
    assert first["metrics"]["encodings"] == {"hits": 0, "encoded": 3, "stored": 3}
    assert all(f"enc/{i}" in store.objects for i in range(3))

    # A fresh worker: nothing frozen in memory. Serving every image from the cache loads none of it.
    frozen = families.flux._frozen if base == "tiny-flux" else families.sd._frozen
    frozen.cache_clear()
    gets = image_gets(store)
    second = handler.run_job(with_cache(train_job(store, base=base, out="out/b.safetensors", **params), store, read=True))
    assert "error" not in second, second
    assert second["metrics"]["encodings"] == {"hits": 3, "encoded": 0, "stored": 0}
    assert image_gets(store) == gets, "no image downloaded"
    assert frozen.cache_info().currsize == 0, "text encoders and VAE never loaded"
    assert second["lora"]["sha256"] == first["lora"]["sha256"], "same training as from the pixels"


def test_a_corrupt_or_missing_entry_is_encoded_from_the_image(worker_env, store, progress_log) -> None:
    first = handler.run_job(with_cache(train_job(store, steps=2, out="out/a.safetensors"), store, read=False))
    store.objects["enc/0"] = b"not a safetensors file"
    del store.objects["enc/1"]
    second = handler.run_job(with_cache(train_job(store, steps=2, out="out/b.safetensors"), store, read=True))
    assert "error" not in second, second
    assert second["metrics"]["encodings"] == {"hits": 1, "encoded": 2, "stored": 0}
    assert second["lora"]["sha256"] == first["lora"]["sha256"]


def test_an_entry_made_in_another_precision_is_not_used(worker_env, store, progress_log) -> None:
    assert "error" not in handler.run_job(with_cache(train_job(store, steps=1, mixedPrecision="bf16"), store, read=False))
    out = handler.run_job(with_cache(train_job(store, steps=1, out="out/fp32.safetensors"), store, read=True))
    assert out["metrics"]["encodings"]["hits"] == 0, "bf16 encodings would change an fp32 training"
