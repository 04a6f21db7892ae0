"""One precision rule for every training path of the course (SFT, DPO, GRPO, full fine-tuning, scripts).

    CPU                        fp32 weights, no autocast. Many CPUs have no native bf16 (no AVX512-BF16
                               or AMX): there a bf16 matmul is emulated, ~30x slower than fp32 (measured:
                               98 ms against 1.3 ms for 512x512), and TRL's configs switch bf16 on by
                               themselves unless told otherwise. So the flags are always explicit.
    CUDA, capability >= 8.0    bf16 autocast (Ampere and newer compute it natively). A frozen base may be
                               stored in bf16; weights that train stay fp32 (master weights).
    CUDA, older (T4, V100)     fp16 autocast with a GradScaler, fp32 master weights. A frozen base may be
                               stored in fp16 (LoRA's adapters stay fp32); full fine-tuning loads fp32,
                               because a GradScaler cannot unscale fp16 gradients.

`torch.cuda.is_bf16_supported()` says True on a T4 (bf16 through emulation), so the rule reads the
compute capability instead. Gradient checkpointing is off unless asked for: the course's models fit in
memory many times over, and recomputing every forward pass only costs time.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Precision:
    device: str                 # "cpu" or "cuda"
    dtype: torch.dtype          # what to load the weights in
    bf16: bool                  # bf16 autocast in the trainer
    fp16: bool                  # fp16 autocast + GradScaler in the trainer
    reason: str

    def trainer_args(self, gradient_checkpointing: bool = False) -> dict:
        """The flags every TRL/transformers training config of the course gets, explicitly.

        TRL's configs default to bf16=True and gradient checkpointing on; transformers 5 calls the
        latter `activation_checkpointing` (`gradient_checkpointing` is its deprecated alias).
        """
        return {"bf16": self.bf16, "fp16": self.fp16, "use_cpu": self.device == "cpu",
                "activation_checkpointing": gradient_checkpointing}

    def __str__(self) -> str:
        mode = "bf16 autocast" if self.bf16 else "fp16 autocast + GradScaler" if self.fp16 else "no autocast"
        return f"{str(self.dtype).replace('torch.', '')} weights, {mode}"


def cuda_capability() -> tuple[int, int] | None:
    return torch.cuda.get_device_capability() if torch.cuda.is_available() else None


def choose_precision(device: str | None = None, *, trains_base_weights: bool = False,
                     capability: tuple[int, int] | None = None) -> Precision:
    """The course's precision for this machine.

    trains_base_weights: True for full fine-tuning (every weight trains: keep fp32 master weights).
    capability: the CUDA compute capability, read from the GPU when not given (tests pass one).
    """
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return Precision("cpu", torch.float32, False, False, "CPUs without native bf16 emulate it ~30x slower")
    if device != "cuda":
        raise ValueError(f"device {device!r} unknown: the course runs on 'cpu' or 'cuda'.")
    major, minor = capability or cuda_capability() or (0, 0)
    if major >= 8:
        dtype = torch.float32 if trains_base_weights else torch.bfloat16
        return Precision("cuda", dtype, True, False, f"compute capability {major}.{minor} has native bf16")
    dtype = torch.float32 if trains_base_weights else torch.float16
    return Precision("cuda", dtype, False, True,
                     f"compute capability {major}.{minor} has no native bf16; fp32 master weights")
