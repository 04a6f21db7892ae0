"""The machine the notebook runs on: Colab or not, device, seeds, what the CPU can do, and quiet batch runs."""
from __future__ import annotations

import logging
import os
import platform
import random
import sys
import time
import warnings

import numpy as np
import torch

# Set by helpers.course for papermill runs (the course command, the tests): progress bars stay out of the
# stored outputs. In Jupyter or Colab it is unset and the bars show.
BATCH_ENV = "FINE_TUNING_COURSE_BATCH"
# No hub is ever reached by the tests, the course command or CI: everything the course needs is local.
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false"}
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def in_colab() -> bool:
    return "google.colab" in sys.modules


def batch_run() -> bool:
    """True under the course command and the tests (papermill): no live progress bars."""
    return os.environ.get(BATCH_ENV) == "1"


_QUIETED = False


def quiet_known_warnings() -> None:
    """Silence, at their source, library messages that are harmless here and would fill every notebook.

    - bitsandbytes, on CPUs with AVX512-BF16, tries to fetch an optional 4-bit CPU kernel from the hub at
      import and logs a warning when it cannot (offline); it then uses its own kernels.
    - peft 0.21 reads transformers' `is_gradient_checkpointing`, which transformers 5 renamed: a FutureWarning
      about the library's own code, at every adapter.
    - In batch runs, the progress bars of datasets (tokenizing) and transformers (loading weights) would be
      stored frozen in the notebook; they are switched off there and kept in Jupyter/Colab.
    - peft's prompt tuning ignores the position ids TRL passes (it shifts positions for its virtual tokens
      itself) and says so at every forward pass.
    - transformers, rotating checkpoints on a filesystem with coarse file times (containers, Colab's Drive),
      says it falls back to ordering them by step number: which is what the course wants anyway.
    - transformers, resuming full fine-tuning, says `lm_head.weight` is missing from the checkpoint: the
      models here tie it to the embeddings, so safetensors stores it once, and loading the embeddings
      restores both (a model with its own head has it in the checkpoint, and is not missing it).
    """
    global _QUIETED
    if _QUIETED:
        return
    _QUIETED = True
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    logging.getLogger("transformers.trainer_utils").addFilter(
        lambda record: "mtime may not be reliable" not in record.getMessage())
    logging.getLogger("transformers.trainer").addFilter(
        lambda record: "missing keys in the checkpoint model loaded: ['lm_head.weight']" not in record.getMessage())
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    warnings.filterwarnings("ignore", message="Position ids are not supported for parameter efficient tuning")
    if batch_run():
        import datasets
        import transformers

        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()


def seed_everything(seed: int) -> None:
    """Same seed, same numbers: Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def pick_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def cpu_model_and_flags() -> tuple[str, list[str]]:
    """The CPU's model name and which of the flags that decide speed here it has (Linux /proc/cpuinfo)."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:  # not Linux
        pass
    model = fields.get("model name") or platform.processor() or platform.machine()
    flags = set(fields.get("flags", "").split())
    return model, [f for f in CPU_FLAGS if f in flags]


def bf16_matmul_slowdown(n: int = 256, repeats: int = 10) -> float:
    """Time of a bf16 matmul over an fp32 one on this CPU: about 0.3 with native bf16, 30+ without."""
    times = {}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        times[dtype] = time.perf_counter() - start
    return times[torch.bfloat16] / times[torch.float32]


def describe_machine(measure_bf16: bool = False) -> dict:
    """Where a measurement was taken: device, CPU model and flags, cores, torch threads, GPU."""
    model, flags = cpu_model_and_flags()
    info = {"device": pick_device(), "torch": torch.__version__, "cpu_model": model, "cpu_flags": flags,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads(), "colab": in_colab()}
    if measure_bf16:
        info["bf16_matmul_slowdown"] = f"{bf16_matmul_slowdown():.1f}x"
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
    return info


def start(seed: int, output_dir: str | None = None):
    """The first lines of every notebook: quiet the known harmless warnings, seed everything, make the output
    folder, and say in one line where
    and how this run computes (device, CPU or GPU, threads, precision). Returns the output folder as a Path."""
    from pathlib import Path

    from helpers.precision import choose_precision

    quiet_known_warnings()
    seed_everything(seed)
    m = describe_machine()
    where = m.get("gpu") or f"{m['cpu_model']}, {m['threads']} threads"
    precision = choose_precision()
    print(f"{m['device']} ({where}), seed {seed}\nprecision: {precision} ({precision.reason})")
    if output_dir is None:
        return None
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    return out
