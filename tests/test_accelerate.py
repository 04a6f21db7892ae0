"""The SFT script under `accelerate launch` with two CPU processes: data-parallel replicas stay in sync.

accelerate 1.15's `--cpu --num_processes 2` starts ONE process unless an MPI hostfile is given, so the test
uses the torchrun-based launcher (`--multi_gpu`) with no GPU visible: the Trainer then runs on CPU (gloo).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent


def test_two_processes_train_the_same_adapter(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "29517",
           "-m", "helpers.sft_script", "--output-dir", str(out), "--max-steps", "3", "--rows", "64", "--batch-size", "4"]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-8000:]  # the ranks' own errors come before the launcher's
    logs = [json.loads((out / f"log_rank{r}.json").read_text()) for r in (0, 1)]
    assert [log["rank"] for log in logs] == [0, 1]
    assert all(log["world_size"] == 2 and log["steps"] == 3 for log in logs), logs
    init0, init1 = (load_file(out / f"adapter_init_rank{r}.safetensors") for r in (0, 1))
    final0, final1 = (load_file(out / f"adapter_rank{r}.safetensors") for r in (0, 1))
    assert init0.keys() == final0.keys() == final1.keys() and len(final0) > 0
    for name in final0:
        assert torch.equal(init0[name], init1[name]), f"{name}: ranks started from different adapters"
        assert torch.equal(final0[name], final1[name]), f"{name}: replicas diverged"
    changed = [n for n in final0 if not torch.equal(final0[n], init0[n])]
    # lora_B starts at zero and every B moves; lora_A moves too once B is non-zero
    assert len(changed) == len(final0), f"tensors that did not train: {set(final0) - set(changed)}"
    assert (out / "adapter" / "adapter_model.safetensors").exists()
