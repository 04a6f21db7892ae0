# %% [markdown]
# # 03 · Three families side by side: full fine-tuning, LoRA, prompt tuning
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](x)
#
# **Goals.** By the end of this notebook you can
# 1. run the same SFT task three ways: **full fine-tuning** (全参数微调, every weight trains), **LoRA** (a low-rank
#    update on the linear layers) and **prompt tuning** (only a few "virtual token" embeddings in front of the input train);
# 2. measure for each what it costs (trainable parameters, memory, wall time, checkpoint size) and what it buys (exact match);
# 3. read the trade-offs off one table.
#
# Every number printed below is measured in this run.

# %%
# written by `python -m helpers.course --sync`

# %% tags=["parameters"]
model = "data/tiny-base"                     # a local folder or a hub id of any causal LM
dataset = "data/world/sft_train.jsonl"       # a local JSON/JSONL file or a hub id
world_dir = "data/world"
epochs = None                                # None: the course recipe (helpers.training.SFT_RECIPE), same for all three
full_learning_rate = 2e-4                    # full fine-tuning moves every weight: a small step
lora_learning_rate = None                    # None: the course recipe
prompt_learning_rate = 3e-2                  # prompt tuning trains only 16 embeddings: a large step
num_virtual_tokens = 16
seed = 0
output_dir = "../outputs/03_three_families"
metrics_path = "../outputs/03_three_families/metrics.json"

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from peft import PromptTuningConfig, PromptTuningInit

from helpers.base_model import folder_bytes, load_model
from helpers.data import load_world
from helpers.env import describe_machine, seed_everything
from helpers.evaluation import chat_exact_match
from helpers.formats import load_rows
from helpers.memory import measured_training_bytes
from helpers.paths import resolve
from helpers.plots import bar, save_metrics, table
from helpers.training import SFT_RECIPE, standard_lora, train_sft, trainable_parameters

seed_everything(seed)
epochs = epochs or SFT_RECIPE["num_train_epochs"]
lora_learning_rate = lora_learning_rate or SFT_RECIPE["learning_rate"]
out = Path(output_dir); out.mkdir(parents=True, exist_ok=True)
train_rows = load_rows(dataset)
heldout_rows = load_world("sft_test", resolve(world_dir))
describe_machine()
print(f"{len(train_rows)} training rows, {len(heldout_rows)} held-out questions, {epochs} epochs for every method")

# %% [markdown]
# ## 1. The three configurations
#
# Same data, same epochs, same batch size; each family gets a learning rate that suits it (the fewer the
# trainable parameters, the larger the step they need). `peft_config=None` means full fine-tuning.

# %%
_, tok = load_model(model)
methods = {
    "full": dict(peft_config=None, learning_rate=full_learning_rate),
    "lora": dict(peft_config=standard_lora(r=8), learning_rate=lora_learning_rate),
    "prompt_tuning": dict(peft_config=PromptTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=num_virtual_tokens,
        prompt_tuning_init=PromptTuningInit.TEXT,         # start from the embeddings of a real instruction
        prompt_tuning_init_text="Answer the question in one full sentence.",
        tokenizer_name_or_path=str(resolve(model))), learning_rate=prompt_learning_rate),
}
for name, m in methods.items():
    print(f"{name:14s} lr={m['learning_rate']:<8g} {m['peft_config']!r:.110}")

# %% [markdown]
# ## 2. Train and measure each
#
# **Memory.** On a GPU we report `torch.cuda.max_memory_allocated` (the true peak, activations included). On a
# CPU there is no such counter, so we report what we can count exactly: the bytes of the weights, the
# gradients (one per trainable parameter) and the optimizer state (AdamW keeps two tensors per trainable
# parameter) held after training. Activations are not in that count.

# %%
def peak_memory_bytes(trainer) -> int:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated()
    counted = measured_training_bytes(trainer.model, trainer.optimizer)
    gradients = sum(p.numel() * p.element_size() for p in trainer.model.parameters() if p.requires_grad)
    return counted["weights"] + gradients + counted["optimizer_states"]


results = {}
for name, m in methods.items():
    seed_everything(seed)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    base, _ = load_model(model)
    trainer = train_sft(base, tok, train_rows, output_dir=str(out / name), num_train_epochs=epochs,
                        per_device_train_batch_size=SFT_RECIPE["per_device_train_batch_size"], seed=seed, **m)
    trainer.model.save_pretrained(out / name / "checkpoint")   # full: the whole model; peft: the adapter only
    results[name] = {"trainable_params": trainable_parameters(trainer.model)[0],
                     "peak_memory_bytes": peak_memory_bytes(trainer),
                     "seconds": trainer.train_seconds,
                     "exact_match": chat_exact_match(trainer.model, tok, heldout_rows),
                     "checkpoint_bytes": folder_bytes(out / name / "checkpoint")}
    print(f"{name:14s} {results[name]}")
memory_label = "peak CUDA memory" if torch.cuda.is_available() else "weights + gradients + optimizer state (CPU, counted)"

# %% [markdown]
# ## 3. The table and the charts

# %%
table(results)

# %%
fig, axes = plt.subplots(1, 5, figsize=(20, 3.5))
bar({k: v["trainable_params"] for k, v in results.items()}, "trainable parameters", "count", log=True, ax=axes[0])
bar({k: v["peak_memory_bytes"] / 2**20 for k, v in results.items()}, memory_label, "MiB", ax=axes[1])
bar({k: v["seconds"] for k, v in results.items()}, "training time", "seconds", ax=axes[2])
bar({k: v["exact_match"] for k, v in results.items()}, "held-out exact match", "share", ax=axes[3])
bar({k: v["checkpoint_bytes"] / 2**20 for k, v in results.items()}, "checkpoint on disk", "MiB", log=True, ax=axes[4])
axes[3].set_ylim(0, 1)
plt.tight_layout(); plt.show()

# %%
save_metrics({"methods": results, "memory_measure": memory_label, "epochs": epochs}, metrics_path)
