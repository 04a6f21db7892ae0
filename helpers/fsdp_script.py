"""LoRA training sharded with PyTorch FSDP2 (`fully_shard`), on CPU processes (gloo) or GPUs (NCCL).

    torchrun --nproc_per_node 2 -m helpers.fsdp_script --output-dir outputs/fsdp2     # two processes
    torchrun --nproc_per_node 1 -m helpers.fsdp_script --output-dir outputs/fsdp1     # the same, one

Why not `accelerate launch` with an FSDP config, as on GPUs (see helpers/sft_script.py's docstring)? In
accelerate 1.15 FSDP is an option of the accelerator types only: with no GPU, `distributed_type: FSDP` runs
as plain data parallel (MULTI_CPU) and nothing is sharded (checked: every rank held whole tensors). PyTorch
itself shards on CPU, so this script calls torch's `fully_shard` directly: each decoder block is one FSDP
unit, its parameters split in equal parts across the processes and gathered only while the block computes.

The data are fixed-length blocks of tokens (the dataset's chats, templated, concatenated and cut), so every
process sees the same number of tokens and the averaged gradient equals the one-process gradient of the
whole batch: the final adapter must equal a one-process run's, up to the order of float additions.
Rank 0 writes the gathered adapter (adapter.safetensors) and a log with the bytes each rank held.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist


def token_blocks(rows: list[dict], tokenizer, seq_len: int, n_blocks: int) -> torch.Tensor:
    """The first n_blocks blocks of seq_len tokens of the chats, templated and concatenated."""
    ids = []
    for row in rows:
        ids += tokenizer.apply_chat_template(row["messages"], tokenize=True, return_dict=True)["input_ids"]
        if len(ids) >= seq_len * n_blocks:
            return torch.tensor(ids[: seq_len * n_blocks]).view(n_blocks, seq_len)
    raise ValueError(f"the dataset has {len(ids)} tokens; {n_blocks} blocks of {seq_len} need more "
                     f"(lower --steps, --batch-size or --seq-len)")


def main(argv: list[str] | None = None) -> None:
    from peft import get_peft_model
    from safetensors.torch import save_file
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    from helpers.arch import decoder_layers
    from helpers.env import seed_everything
    from helpers.formats import load_rows
    from helpers.memory import tensor_bytes
    from helpers.models import load_model
    from helpers.training import standard_lora

    parser = argparse.ArgumentParser(description="LoRA training sharded with FSDP2 (torchrun).")
    parser.add_argument("--output-dir", required=True, type=Path)
    parser.add_argument("--model", default="data/tiny-base", help="a folder or a hub id")
    parser.add_argument("--dataset", default="data/world/sft_train.jsonl", help="chat rows in any layout")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8, help="global: split equally across processes")
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--lora-r", type=int, default=8, help="LoRA's rank")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if args.batch_size % world:
        raise SystemExit(f"--batch-size {args.batch_size} does not split into {world} equal parts")
    device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu"
    if cuda:
        torch.cuda.set_device(device)
    seed_everything(args.seed)  # same seed on every rank: the same initial adapter everywhere
    model, tokenizer = load_model(args.model, device=device, dtype=torch.float32)
    model = get_peft_model(model, standard_lora(r=args.lora_r))
    full_bytes = tensor_bytes(model.parameters())
    mesh = init_device_mesh(device.split(":")[0], (world,))
    for block in decoder_layers(model):
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)  # the rest (embeddings, final norm, head) as the root unit
    local_bytes = tensor_bytes(p.to_local() if hasattr(p, "to_local") else p for p in model.parameters())

    rows = load_rows(args.dataset)
    data = token_blocks(rows, tokenizer, args.seq_len, args.steps * args.batch_size)
    per_rank = args.batch_size // world
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.learning_rate)
    model.train()
    losses, step_seconds = [], []
    for step in range(args.steps):
        start = time.perf_counter()
        batch = data[step * args.batch_size:(step + 1) * args.batch_size]
        mine = batch[rank * per_rank:(rank + 1) * per_rank].to(device)
        loss = model(input_ids=mine, labels=mine).loss
        loss.backward()  # FSDP reduce-scatters the gradients: each rank keeps the average of its shard
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        whole = loss.detach().clone()
        dist.all_reduce(whole)
        losses.append(whole.item() / world)
        step_seconds.append(time.perf_counter() - start)
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    state = get_model_state_dict(model, options=options)  # gathers every shard (onto rank 0's CPU)
    local = torch.tensor([local_bytes])
    gathered = [torch.zeros_like(local) for _ in range(world)]
    dist.all_gather(gathered, local)
    if rank == 0:
        args.output_dir.mkdir(parents=True, exist_ok=True)
        adapter = {k: v.contiguous() for k, v in state.items() if "lora_" in k}
        save_file(adapter, str(args.output_dir / "adapter.safetensors"))
        (args.output_dir / "log.json").write_text(json.dumps(
            {"world_size": world, "steps": args.steps, "losses": losses, "step_seconds": step_seconds,
             "parameter_bytes": full_bytes,
             "bytes_per_rank": [int(t.item()) for t in gathered]}))
    dist.barrier()
    dist.destroy_process_group()
    # gloo's threads can abort the interpreter's shutdown ("terminate called without an active exception",
    # exit code -6: seen 2 runs in 3 on CPU with torch 2.13); everything is written, so leave at once.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
