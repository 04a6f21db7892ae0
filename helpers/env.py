"""The machine the notebook runs on: Colab or not, device, dtype, seeds."""
from __future__ import annotations

import os
import random
import sys

import numpy as np
import torch


def in_colab() -> bool:
    return "google.colab" in sys.modules


def seed_everything(seed: int) -> None:
    """Same seed, same numbers: Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def pick_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(device: str | None = None) -> torch.dtype:
    """bf16 where the GPU supports it (Ampere and newer), fp16 on older GPUs such as the T4, fp32 on CPU."""
    device = device or pick_device()
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def describe_machine() -> dict:
    """A small record of where a measurement was taken, for metrics files."""
    info = {"device": pick_device(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "colab": in_colab()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def require_cuda(what: str) -> None:
    """Stop with a clear message when a step needs a CUDA GPU."""
    if not torch.cuda.is_available():
        raise RuntimeError(f"{what} needs a CUDA GPU and none is visible. On Colab: Runtime > "
                           "Change runtime type > T4 GPU. Locally the notebook falls back where it can.")
