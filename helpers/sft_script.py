"""Notebook 02's SFT step as a script that runs unchanged on one process or many (data parallel), and resumes.

    python -m helpers.sft_script --output-dir outputs/sft_script                  # one process
    CUDA_VISIBLE_DEVICES= accelerate launch --multi_gpu --num_processes 2 -m helpers.sft_script \
        --output-dir outputs/ddp --max-steps 4                                     # two CPU processes (gloo)
    accelerate launch --num_processes 8 -m helpers.sft_script --output-dir ...    # 8 GPUs, one node

(accelerate 1.15's `--cpu --num_processes 2` starts a single process unless an MPI hostfile is given;
its torchrun launcher, `--multi_gpu`, with no GPU visible starts N CPU processes on the gloo backend.)

Each process holds a full replica (base + LoRA adapter), reads a different slice of every batch, and the
gradients are averaged across processes before each optimizer step, so all replicas stay identical.
Every rank writes its own copy of the trained adapter (adapter_rank{R}.safetensors) and of the initial one,
so a test can check that the replicas stayed in sync; rank 0 also saves the usual adapter folder.

Past one GPU's memory, shard instead of replicating: FSDP splits parameters, gradients and optimizer states
across the processes. The same script runs under an accelerate config such as (fsdp.yaml):

    compute_environment: LOCAL_MACHINE
    distributed_type: FSDP
    num_processes: 8
    mixed_precision: bf16
    fsdp_config:
      fsdp_version: 2
      fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
      fsdp_transformer_layer_cls_to_wrap: LlamaDecoderLayer   # Qwen2DecoderLayer for Qwen2.5
      fsdp_state_dict_type: SHARDED_STATE_DICT
      fsdp_cpu_ram_efficient_loading: true
      fsdp_reshard_after_forward: true

    accelerate launch --config_file fsdp.yaml -m helpers.sft_script --model <hub id> --output-dir ...

(With FSDP each rank holds a shard, so the per-rank adapter copies below are gathered by the Trainer on save.)
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from transformers import TrainerCallback


class StepTimes(TrainerCallback):
    """Wall seconds of every optimizer step (forward, backward, the gradients' all-reduce, AdamW)."""

    def __init__(self):
        self.seconds, self._start = [], None

    def on_step_begin(self, args, state, control, **kwargs):
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds.append(time.perf_counter() - self._start)


def adapter_state(model) -> dict[str, torch.Tensor]:
    """The LoRA tensors of a peft model, detached copies on CPU."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().cpu().clone().contiguous() for k, v in get_peft_model_state_dict(model).items()}


def main(argv: list[str] | None = None) -> None:
    from peft import get_peft_model
    from safetensors.torch import save_file

    from helpers.env import seed_everything
    from helpers.formats import load_rows
    from helpers.models import load_model
    from helpers.recipes import pick_recipe
    from helpers.runs import CheckpointPlan
    from helpers.training import fit_to_length, sft_knobs, standard_lora, train_sft

    parser = argparse.ArgumentParser(description="LoRA SFT (runs under accelerate launch too).")
    parser.add_argument("--output-dir", required=True, type=Path)
    parser.add_argument("--model", default="data/tiny-base", help="a folder or a hub id")
    parser.add_argument("--dataset", default="data/world/sft_train.jsonl", help="chat rows in any layout")
    parser.add_argument("--max-steps", type=int, default=-1, help="-1: the recipe's epochs")
    parser.add_argument("--rows", type=int, default=0, help="use only the first N training rows (0: all)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="per process (default: the recipe's); the global batch is this times the processes")
    parser.add_argument("--lora-r", type=int, default=None, help="LoRA's rank (default: the recipe's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-dir", default=None, help="save a checkpoint every --save-steps steps here")
    parser.add_argument("--save-steps", type=int, default=2)
    parser.add_argument("--resume", action="store_true", help="continue from the last complete checkpoint")
    args = parser.parse_args(argv)

    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    seed_everything(args.seed)  # same seed on every rank: identical initial adapters
    model, tokenizer = load_model(args.model)
    recipe = pick_recipe("sft", model, verbose=rank == 0, batch_size=args.batch_size, lora_r=args.lora_r)
    model = get_peft_model(model, standard_lora(r=recipe["lora_r"]))
    args.output_dir.mkdir(parents=True, exist_ok=True)
    save_file(adapter_state(model), str(args.output_dir / f"adapter_init_rank{rank}.safetensors"))
    rows = load_rows(args.dataset)
    rows, _ = fit_to_length(rows[: args.rows] if args.rows else rows, tokenizer, recipe["max_length"])
    plan = CheckpointPlan(args.checkpoint_dir, args.save_steps, args.resume)
    step_times = StepTimes()
    run = train_sft(model, tokenizer, rows, output_dir=str(args.output_dir), run_name="run", plan=plan,
                    callbacks=[step_times],
                    **sft_knobs(recipe, max_steps=args.max_steps), seed=args.seed, logging_steps=1,
                    ddp_find_unused_parameters=False)
    # Trainer.save_model writes on the main process only; each rank saves its own replica explicitly.
    save_file(adapter_state(run.model), str(args.output_dir / f"adapter_rank{rank}.safetensors"))
    losses = [h["loss"] for h in run.log if "loss" in h]
    (args.output_dir / f"log_rank{rank}.json").write_text(json.dumps(
        {"rank": rank, "world_size": world, "steps": run.steps, "losses": losses,
         "train_seconds": run.seconds, "step_seconds": step_times.seconds, "resumed_from": run.resumed_from}))
    run.trainer.save_model(str(args.output_dir / "adapter"))
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        # Tear the gloo/NCCL process group down while Python is alive: left to interpreter shutdown, gloo's
        # worker threads can abort the process (SIGABRT, exit code -6), which we saw once in CI on 2 cores.
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
