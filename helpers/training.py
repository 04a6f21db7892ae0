"""Training plumbing shared by the notebooks: target modules by name, TRL SFT with sane defaults, loss curves.

The notebooks show the teaching lines (the LoraConfig, the SFTConfig values that
matter, the trainer call); this module holds what every notebook would repeat.
"""
from __future__ import annotations

import time

import torch
from datasets import Dataset
from transformers import TrainerCallback

# Linear layer classes by name, so that GPT-2's Conv1D and bitsandbytes' 4/8-bit layers count too
# without importing optional packages.
LINEAR_CLASSES = {"Linear", "Conv1D", "Linear4bit", "Linear8bitLt", "QuantLinear"}


def linear_module_names(model, include_lm_head: bool = False) -> list[str]:
    """Short names of the linear layers inside the transformer blocks (q_proj, c_attn, ...), sorted.

    These are the names peft's `target_modules` matches against.
    """
    names = set()
    for full_name, module in model.named_modules():
        if type(module).__name__ in LINEAR_CLASSES:
            short = full_name.split(".")[-1]
            if include_lm_head or short not in ("lm_head", "embed_out", "output"):
                names.add(short)
    return sorted(names)


def check_target_modules(model, target_modules: list[str] | str) -> list[str] | str:
    """Fail early, with the names that do exist, when a target module is not in the model."""
    if target_modules == "all-linear":
        return target_modules
    if isinstance(target_modules, str):
        target_modules = [target_modules]
    available = linear_module_names(model)
    missing = [t for t in target_modules if t not in available]
    if missing:
        raise ValueError(f"target module {', '.join(repr(m) for m in missing)} not found; this model's linear "
                         f"layers are: {', '.join(available)}. Pick from these (or use 'all-linear').")
    return list(target_modules)


# The attention and MLP projections under the names different architectures use.
ATTENTION_NAMES = {
    "query": ["q_proj", "query", "q", "Wqkv", "c_attn", "qkv_proj", "query_key_value"],
    "key": ["k_proj", "key", "k"],
    "value": ["v_proj", "value", "v"],
    "output": ["o_proj", "dense", "out_proj", "c_proj", "o"],
}


def attention_targets(model) -> list[str]:
    """The query and value projections (the LoRA paper's default), or the fused qkv layer, by this model's names."""
    available = linear_module_names(model)
    picked = []
    for role in ("query", "value"):
        found = next((n for n in ATTENTION_NAMES[role] if n in available), None)
        if found and found not in picked:
            picked.append(found)
    if not picked:
        raise ValueError(f"no attention projection recognised among {available}; pass target_modules by name.")
    return picked


def chat_dataset(rows: list[dict]) -> Dataset:
    """A datasets.Dataset with only the `messages` column, as TRL's conversational format expects."""
    return Dataset.from_list([{"messages": r["messages"]} for r in rows])


def default_precision() -> dict:
    """Trainer precision flags for this machine: bf16 or fp16 on CUDA, fp32 on CPU."""
    if not torch.cuda.is_available():
        return {"use_cpu": True}
    return {"bf16": True} if torch.cuda.is_bf16_supported() else {"fp16": True}


def sft_config(output_dir: str, **overrides):
    """An SFTConfig for short runs: loss on assistant tokens only, no checkpoints, no hub, no external loggers."""
    from trl import SFTConfig

    args = dict(output_dir=str(output_dir), assistant_only_loss=True, max_length=128, packing=False,
                per_device_train_batch_size=16, per_device_eval_batch_size=32, learning_rate=1e-3,
                num_train_epochs=1, lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0,
                logging_steps=5, save_strategy="no", report_to="none", seed=0, data_seed=0,
                dataloader_num_workers=0, disable_tqdm=True, **default_precision())
    args.update(overrides)
    return SFTConfig(**args)


class Stopwatch(TrainerCallback):
    """Wall time of training only (not of dataset preparation)."""
    def on_train_begin(self, args, state, control, **kw):
        self.start = time.perf_counter()

    def on_train_end(self, args, state, control, **kw):
        self.seconds = time.perf_counter() - self.start


def train_sft(model, tokenizer, train_rows: list[dict], eval_rows: list[dict] | None = None, *,
              output_dir: str, peft_config=None, callbacks: list | None = None, **config_overrides):
    """Supervised fine-tuning with TRL's SFTTrainer; returns the trained trainer (model at `trainer.model`).

    callbacks: extra transformers TrainerCallbacks (e.g. one that measures the model every few steps).
    """
    from trl import SFTTrainer

    if eval_rows is not None:
        config_overrides.setdefault("eval_strategy", "steps")
        config_overrides.setdefault("eval_steps", config_overrides.get("logging_steps", 5))
    stopwatch = Stopwatch()
    trainer = SFTTrainer(model=model, args=sft_config(output_dir, **config_overrides),
                         train_dataset=chat_dataset(train_rows),
                         eval_dataset=chat_dataset(eval_rows) if eval_rows is not None else None,
                         processing_class=tokenizer, peft_config=peft_config,
                         callbacks=[stopwatch, *(callbacks or [])])
    trainer.train()
    trainer.train_seconds = stopwatch.seconds
    trainer.model.eval()
    drop_trl_forward_patch(trainer.model)
    return trainer


def drop_trl_forward_patch(model) -> None:
    """Give a model back its own `forward` after a TRL trainer is done with it.

    TRL 1.x trainers replace `forward` on the model *instance* by a closure over the original bound
    method (its fused LM head). The closure survives training: a `copy.deepcopy` of the model then
    still runs the ORIGINAL model's forward (generation included), so the copy's new adapter has no
    effect. Measured in notebook 05 before this fix: a DPO-trained copy generated exactly like the SFT model.
    Deleting the instance attribute restores the class's forward; TRL adds its patch again when a new
    trainer is built.
    """
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    for m in (model, inner):
        m.__dict__.pop("forward", None)


def loss_curves(trainer) -> dict[str, list[tuple[int, float]]]:
    """(step, loss) pairs for training and validation from the trainer's log."""
    history = trainer.state.log_history
    return {"train": [(h["step"], h["loss"]) for h in history if "loss" in h],
            "eval": [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]}


def trainable_parameters(model) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total


# The course's standard SFT-with-LoRA recipe on the tiny world (tuned by measurement in notebook 02):
# train_sft(model, tok, rows, output_dir=..., peft_config=standard_lora(), **SFT_RECIPE)
SFT_RECIPE = {"learning_rate": 3e-3, "num_train_epochs": 6, "per_device_train_batch_size": 16}


def standard_lora(r: int = 8, target_modules="all-linear", lora_alpha: int | None = None, **kwargs):
    """A LoraConfig for a causal LM: rank r, alpha = 2r unless given, no dropout (short runs)."""
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=lora_alpha or 2 * r, lora_dropout=kwargs.pop("lora_dropout", 0.0),
                      target_modules=target_modules, task_type="CAUSAL_LM", **kwargs)
