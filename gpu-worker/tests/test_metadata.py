"""The LoRA file's header tags it for A1111, Forge and ComfyUI, and is the same bytes every time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import safe_open

import handler
from conftest import train_job

WORKER_DIR = Path(__file__).resolve().parent.parent


def header(path: Path) -> dict[str, str]:
    with safe_open(str(path), "pt") as f:
        return f.metadata()


@pytest.mark.parametrize(("base", "fmt", "arch", "version"), [
    ("tiny-sdxl", "kohya", "stable-diffusion-xl-v1-base/lora", "sdxl_base_v1-0"),
    ("tiny-flux", "diffusers", "flux-1-schnell/lora", "flux1"),
])
def test_the_lora_header_names_base_model_trigger_rank_steps_and_dataset(base, fmt, arch, version, worker_env, store,
                                                                         progress_log, tmp_path) -> None:
    job = train_job(store, base=base, steps=2, rank=4)
    job["input"]["format"] = fmt
    assert "error" not in (result := handler.run_job(job)), result
    path = tmp_path / "lora.safetensors"
    path.write_bytes(store.objects["out/lora.safetensors"])
    meta = header(path)
    assert meta["modelspec.architecture"] == arch and meta["ss_base_model_version"] == version
    assert meta["ss_sd_model_name"] == base and meta["modelspec.trigger_phrase"] == "zxq"
    assert (meta["ss_network_dim"], meta["ss_steps"], meta["ss_num_train_images"]) == ("4", "2", "3")
    assert len(meta["ss_dataset_sha256"]) == 64
    assert not [k for k in meta if "date" in k or "time" in k or "started" in k]


def test_the_header_is_written_in_the_same_order_in_every_process(tmp_path) -> None:
    """Python's string hashing (and safetensors' own hash map) differ per process; the bytes must not."""
    script = (
        "import sys, torch; sys.path.insert(0, sys.argv[2]); from pathlib import Path;"
        "from safetensors.torch import save_file; import lora_metadata as m;"
        "p = Path(sys.argv[1]); save_file({'b': torch.ones(3), 'a': torch.zeros(2)}, p);"
        "m.write(p, {f'ss_k{i}': str(i) for i in range(30)})"
    )
    outs = []
    for seed in ("1", "2", "3"):
        path = tmp_path / f"{seed}.safetensors"
        subprocess.run([sys.executable, "-c", script, str(path), str(WORKER_DIR)], check=True,
                       env={"PYTHONHASHSEED": seed, "PATH": ""})
        outs.append(path.read_bytes())
    assert outs[0] == outs[1] == outs[2]
    assert header(tmp_path / "1.safetensors")["ss_k29"] == "29"
