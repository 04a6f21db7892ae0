"""What a cell is about to cost, said before it runs: an estimate for this model, data, budget and device.

Before a run has been timed, a step's seconds are predicted from the arithmetic it needs and this machine's
measured matmul speed (`matmul_flops`, a few milliseconds to measure):

    step seconds ≈ overhead + work / (matmul speed × EFFICIENCY)

work counts the multiply-adds of the weights a step runs through (2 × parameters per token for a forward;
a backward doubles it for the activations' gradients and once more for trainable weights' gradients: LoRA
~4, full fine-tuning 6 per token); DPO runs chosen and rejected through the policy and a frozen reference;
GRPO generates `num_generations` completions of `max_completion_length` tokens per prompt one token at a time,
then trains on them. The two constants were fitted to the course's measured runs (BENCHMARKS.md, profile):
within a factor of about 1.5 on the tiny model and the real one, on AVX-512 and AVX2-only CPUs.
Once a notebook has timed a run, `measured_step_seconds` replaces the prediction.

`say_cost(...)` prints the estimate and, past `LONG_SECONDS`, a clear warning with what to lower.
"""
from __future__ import annotations

import functools
import math
import time

import torch

from helpers.evaluation import chat_ids
from helpers.models import count_parameters

EFFICIENCY = 0.5          # share of the measured matmul speed a training step reaches (small matrices, backward)
OVERHEAD_SECONDS = {"cpu": 0.045, "cuda": 0.03}   # a trainer's own work per step: data, optimizer, logging
DECODE_OVERHEAD_SECONDS = {"cpu": 0.004, "cuda": 0.01}   # per generated token of a batch (one forward call)
LONG_SECONDS = 30 * 60    # past this a cell's estimate comes with a warning


def _best_product_seconds(a: torch.Tensor, b: torch.Tensor, repeats: int, sync=lambda: None) -> float:
    """The shortest of `repeats` timings of `a @ b` (each followed by `sync`), after one untimed warm-up."""
    a @ b
    sync()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - start)
    return best


@functools.lru_cache(maxsize=None)
def matmul_flops(device: str = "cpu") -> float:
    """This machine's fp32 (CPU) or bf16 (GPU) matmul speed, in floating-point operations per second, measured
    on a 1024 × 1024 × 1024 product (the best of five)."""
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    a = torch.randn(1024, 1024, dtype=dtype, device=device)
    b = torch.randn(1024, 1024, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    return 2 * 1024 ** 3 / _best_product_seconds(a, b, 5, sync)


@functools.lru_cache(maxsize=None)
def one_thread_flops() -> float:
    """One CPU thread's fp32 matmul speed, in floating-point operations per second, on the tiny model's MLP
    product (384 × 256 by 256 × 688: 16 rows of 24 tokens into its 688 inner features; the best of 50, a
    tenth of a second): the speed a notebook runs at in a lane of the course command or a CI worker, where
    the tiny world's products, too small to spread over cores, get a thread each."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        seconds = _best_product_seconds(torch.randn(384, 256), torch.randn(256, 688), 50)
    finally:
        torch.set_num_threads(threads)
    return 2 * 384 * 256 * 688 / seconds


def _device(model) -> str:
    if isinstance(model, int):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if next(model.parameters()).is_cuda else "cpu"


def predict_step_seconds(model, kind: str = "sft", *, batch_size: int, seq_len: int, lora: bool = True,
                         num_generations: int = 1, max_completion_length: int = 0) -> float:
    """Predicted seconds of one training step of `kind` ("sft", "dpo", "grpo") on this machine. model: the
    model, or its parameter count (then on the GPU when there is one).

    sft: batch_size rows of seq_len tokens. dpo: batch_size pairs (chosen and rejected), a frozen reference
    forward each. grpo: batch_size prompts of seq_len tokens, num_generations completions each, generated one
    token at a time up to max_completion_length, then trained on with a reference forward.
    """
    if kind not in ("sft", "dpo", "grpo"):
        raise ValueError(f"kind {kind!r}: one of 'sft', 'dpo', 'grpo'")
    device = _device(model)
    n = model if isinstance(model, int) else count_parameters(model)   # every weight is run through
    speed = matmul_flops(device) * EFFICIENCY
    train_per_token = 2 * n * (3 if not lora else 2)   # forward + backward (weights' gradients only when full)
    if kind == "sft":
        work, extra = batch_size * seq_len * train_per_token, 0.0
    elif kind == "dpo":
        work, extra = 2 * batch_size * seq_len * (train_per_token + 2 * n), 0.0
    else:
        sequences = batch_size * num_generations
        tokens = sequences * (seq_len + max_completion_length)
        work = tokens * (train_per_token + 2 * n) + sequences * max_completion_length * 2 * n
        extra = max_completion_length * DECODE_OVERHEAD_SECONDS[device]
    return OVERHEAD_SECONDS[device] + extra + work / speed


def typical_length(tokenizer, rows: list[dict], sample: int = 64) -> int:
    """Mean tokens of chat rows ({"messages": ...}) or text rows ({"text": ...}), from evenly spaced rows."""
    picked = rows[:: max(1, len(rows) // sample)][:sample]
    if not picked:
        return 0
    lengths = [len(chat_ids(tokenizer, r["messages"])) if "messages" in r else len(tokenizer(r["text"])["input_ids"])
               for r in picked]
    return round(sum(lengths) / len(lengths))


def measured_step_seconds(run) -> float:
    """Seconds per step of a run this notebook has timed (a helpers.runs.TrainedRun)."""
    return run.seconds / max(run.steps, 1)


def duration(seconds: float) -> str:
    """12 s, 3.5 min, 2.1 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def say_cost(what: str, *, runs: int, steps: int, step_seconds: float, basis: str,
             lower: str = "the steps, the seeds or the sweep, or pick a smaller budget") -> float:
    """Print what a cell is about to cost (`runs` runs of `steps` steps at `step_seconds` a step) and return
    the seconds. basis: where step_seconds came from ("predicted", "measured above"). Past LONG_SECONDS the
    line becomes a warning that names what to lower; nothing is stopped."""
    total = runs * max(steps, 0) * step_seconds
    line = (f"{what}: {runs} run{'s' if runs != 1 else ''} x {steps} steps at ~{step_seconds:.2f} s a step "
            f"({basis}): about {duration(total)} on this machine")
    if total > LONG_SECONDS:
        line = (f"WARNING, a long cell. {line}. To finish sooner, lower {lower}; on a CPU, a GPU runtime is "
                "10-100x faster.")
    print(line)
    return total


def planned_steps(rows: int, batch_size: int, epochs: float, max_steps: int = -1) -> int:
    """The optimizer steps a run will take: max_steps when > 0, else epochs over rows in batches."""
    return max_steps if max_steps and max_steps > 0 else math.ceil(math.ceil(rows / batch_size) * epochs)
