# %% [markdown]
# # 07 · Many adapters on one base model: swap, combine, stack, merge
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](x)
#
# **Goals.** By the end of this notebook you can
# 1. train one small LoRA adapter (低秩适配) per task and keep them as files of a few hundred kB beside one base model;
# 2. load several adapters onto one base model, route each request to its adapter, and switch them off to get the base model back;
# 3. measure the memory of one base plus N adapters against N merged models;
# 4. combine adapters with `add_weighted_adapter` (linear, cat, svd, ties, dare) and read, from the numbers, where adding adapters works and where it interferes;
# 5. stack adapters like a tree (language → domain → task → user), and merge one adapter for deployment with identical generations.
#
# Every number printed below is measured in this run.

# %%
# written by `python -m helpers.course --sync`

# %% tags=["parameters"]
model = "data/tiny-base"                # a local folder or a hub id
world_dir = "data/world"
seed = 0
rank = 8                                # LoRA rank of every adapter
steps = {"facts": 150, "skill": 120, "persona": 120}   # optimiser steps per adapter (kept small: CPU)
learning_rate = 3e-3
density = 0.5                           # ties / dare: share of each adapter's entries kept
output_dir = "../outputs/07_many_adapters"
metrics_path = "../outputs/07_many_adapters/metrics.json"

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from peft import PeftModel

from helpers.adapters import (TASK_FILES, adapter_bytes, max_logit_difference, merged_copy,
                              prompt_logits, routed_replies, task_scores, train_adapter)
from helpers.memory import module_bytes
from helpers.base_model import folder_bytes, load_model
from helpers.data import load_world
from helpers.env import describe_machine, seed_everything
from helpers.evaluation import generate_replies
from helpers.paths import resolve
from helpers.plots import bar, plot_loss_curves, save_metrics, table
from helpers.training import SFT_RECIPE, loss_curves, standard_lora

seed_everything(seed)
world_dir = resolve(world_dir)
adapters_dir = Path(output_dir) / "adapters"
describe_machine()

# %% [markdown]
# ## 1. Three tasks, three adapters
#
# | adapter | trained on | measured on | score |
# |---|---|---|---|
# | `facts` | chat questions about the world (`sft_train`) | held-out questions (`sft_test`) | exact match of the whole reply |
# | `skill` | reverse 3–5 letters (`skill_train`) | `skill_test` | exact match |
# | `persona` | the same questions, answered like a pirate (`persona_train`) | `persona_test` | reply starts with "Arr matey!" **and** contains the right answer |
#
# One LoRA configuration for all three (same rank, so that every combination method of section 3 applies):

# %%
train = {task: load_world(files[0], world_dir) for task, files in TASK_FILES.items()}
tests = {task: load_world(files[1], world_dir) for task, files in TASK_FILES.items()}
facts_by_id = {f["id"]: f for f in load_world("facts", world_dir)}
for task, rows in tests.items():
    print(f"{task:8s} {len(train[task]):5d} train / {len(rows):3d} test   e.g. {rows[0]['messages']}")

lora_config = standard_lora(r=rank)     # LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM")
lora_config

# %% [markdown]
# Each adapter is an SFT run with TRL's `SFTTrainer` on a fresh copy of the base model (`train_adapter` wraps
# `helpers.training.train_sft` and saves the adapter). The course's SFT recipe, with a fixed number of steps so that this runs on a CPU in a minute:

# %%
trainers = {}
for task in TASK_FILES:
    trainers[task] = train_adapter(model, train[task], adapters_dir / task, lora_config, seed=seed,
                                   **{**SFT_RECIPE, "learning_rate": learning_rate, "max_steps": steps[task]})
    print(f"{task:8s} {steps[task]} steps in {trainers[task].train_seconds:5.1f} s, "
          f"adapter folder {folder_bytes(adapters_dir / task) / 1024:.0f} kB: {sorted(p.name for p in (adapters_dir / task).iterdir())}")
print(f"base model folder: {folder_bytes(resolve(model)) / 1024:.0f} kB")
fig, ax = plt.subplots(figsize=(6, 3.5))
for task, trainer in trainers.items():
    plot_loss_curves({task: loss_curves(trainer)["train"]}, title="training loss of each adapter", ax=ax)
plt.show()

# %% [markdown]
# ## 2. One base model, three adapters
#
# `PeftModel.from_pretrained` puts the first adapter on the base model; `load_adapter` adds more under their own
# names; `set_adapter` picks the one that answers. The base weights are in memory once.

# %%
base, tokenizer = load_model(model)
multi = PeftModel.from_pretrained(base, adapters_dir / "facts", adapter_name="facts")
multi.load_adapter(adapters_dir / "skill", adapter_name="skill")
multi.load_adapter(adapters_dir / "persona", adapter_name="persona")
print("adapters loaded:", list(multi.peft_config))

multi.set_adapter("skill")
print("active:", multi.active_adapter, "->", generate_replies(multi, tokenizer, tests["skill"][:1]))

# %% [markdown]
# **Routing.** A server gets requests for different tasks at once. peft can answer a *mixed batch*, each row with its
# own adapter (`adapter_names=[...]`, `"__base__"` for none): one forward pass, no swapping.

# %%
requests = [tests["facts"][0], tests["skill"][0], tests["persona"][0], tests["facts"][1]]
route = ["facts", "skill", "persona", "__base__"]
answers = routed_replies(multi, tokenizer, requests, route)
table([{"request": r["messages"][0]["content"], "adapter": a, "reply": ans[:60]}
       for r, a, ans in zip(requests, route, answers)])

# %% [markdown]
# Every adapter on every task, and the base model (`with multi.disable_adapter():` switches all adapters off):

# %%
per_task_accuracy = {}
with multi.disable_adapter():
    per_task_accuracy["base"] = task_scores(multi, tokenizer, tests, facts_by_id)
for name in TASK_FILES:
    multi.set_adapter(name)
    per_task_accuracy[name] = task_scores(multi, tokenizer, tests, facts_by_id)
table(per_task_accuracy)

# %% [markdown]
# Is `disable_adapter()` really the base model? Compare with a fresh copy loaded from disk:

# %%
reference, _ = load_model(model)
all_tests = [row for rows in tests.values() for row in rows]
with multi.disable_adapter():
    disabled_replies = generate_replies(multi, tokenizer, all_tests)
    disabled_diff = max_logit_difference(multi, reference, tokenizer, all_tests)
disabled_equals_base = disabled_replies == generate_replies(reference, tokenizer, all_tests)
print(f"same replies on all {len(all_tests)} test prompts: {disabled_equals_base}; "
      f"largest logit difference: {disabled_diff:.1e}")

# %% [markdown]
# **Memory.** We count the bytes of every tensor the models hold (parameters and buffers, tied weights once):
# one base with three adapters loaded, against three merged models (each adapter merged into its own copy).

# %%
base_plus_adapters = module_bytes(multi)
merged = {name: merged_copy(multi, name) for name in TASK_FILES}
merged_models = sum(module_bytes(m) for m in merged.values())
sizes = {"base model": module_bytes(reference), **{f"adapter {n}": adapter_bytes(multi, n) for n in TASK_FILES}}
print({k: f"{v / 2**20:.2f} MiB" for k, v in sizes.items()})
memory_bytes = {"base_plus_adapters": base_plus_adapters, "merged_models": merged_models}
bar({"1 base + 3 adapters": base_plus_adapters / 2**20, "3 merged models": merged_models / 2**20},
    title="memory of the weights", ylabel="MiB"); plt.show()
print(f"one base + 3 adapters is {base_plus_adapters / merged_models:.1%} of three merged models")

# %% [markdown]
# ## 3. Combining adapters: `add_weighted_adapter`
#
# `multi.add_weighted_adapter(adapters, weights, adapter_name, combination_type=...)` builds a new adapter from
# loaded ones. What peft 0.21's source (`peft/tuners/lora/model.py`) does with each type:
#
# | type | how | rank of the result | constraint |
# |---|---|---|---|
# | `linear` | A's summed with √(w·scaling), B's likewise, then B·A | r | all ranks equal; B·A has cross terms Bᵢ·Aⱼ: **not** the sum of the ΔW |
# | `cat` | A's and B's concatenated: B·A = Σ wᵢ·scalingᵢ·Bᵢ·Aᵢ | Σ rᵢ | none; **exact** sum of the ΔW, but grows |
# | `svd` (the default) | Σ wᵢ·ΔWᵢ, then truncated SVD | `svd_rank` (default max rᵢ) | slow on big layers |
# | `ties`, `dare_ties`, `dare_linear`, `magnitude_prune` | A's and B's pruned to `density`, signs elected (ties) or random drop-and-rescale (dare), then summed | r | equal ranks; needs `density` |
# | `*_svd` variants | the same on ΔW, then SVD | `svd_rank` | needs `density` |
#
# The new adapter gets `lora_alpha = r` (scaling 1), the old scalings folded into its weights. **Caveat:** that is
# not exact for **rsLoRA** adapters (the copied config keeps `use_rslora`, so the result is scaled by α/√r = √r
# instead of 1) nor for **DoRA** adapters (their magnitude vectors are not combined). Our adapters are plain LoRA.
#
# We combine all three adapters (weights 1, i.e. add them up), and the two that never see the same prompts:

# %%
everything = ["facts", "skill", "persona"]
combinations = {
    "linear": dict(adapters=everything, combination_type="linear"),
    "cat": dict(adapters=everything, combination_type="cat"),
    "svd": dict(adapters=everything, combination_type="svd"),
    "ties": dict(adapters=everything, combination_type="ties", density=density),
    "dare_ties": dict(adapters=everything, combination_type="dare_ties", density=density),
    "facts+skill cat": dict(adapters=["facts", "skill"], combination_type="cat"),
}
seed_everything(seed)  # dare drops entries at random
for name, kwargs in combinations.items():
    multi.add_weighted_adapter(weights=[1.0] * len(kwargs["adapters"]), adapter_name=name, **kwargs)
    multi.set_adapter(name)
    per_task_accuracy[name] = task_scores(multi, tokenizer, tests, facts_by_id)
table(per_task_accuracy)

# %%
fig, ax = plt.subplots(figsize=(7, 4))
names = list(per_task_accuracy)
grid = [[per_task_accuracy[n][t] for t in TASK_FILES] for n in names]
im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis")
ax.set(xticks=range(3), xticklabels=list(TASK_FILES), yticks=range(len(names)), yticklabels=names,
       title="accuracy of each adapter and combination on each task")
for i, row in enumerate(grid):
    for j, v in enumerate(row):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="w" if v < 0.6 else "k")
plt.colorbar(im); plt.show()

# %% [markdown]
# **Are LoRA modules additive?** In the weights, yes: activating several adapters at once (`set_adapter` with a
# list) adds their ΔW in every layer, which is exactly what `cat` builds. Checked:

# %%
multi.base_model.set_adapter(everything)   # all three active together
stacked_replies, stacked_logits = generate_replies(multi, tokenizer, all_tests), prompt_logits(multi, tokenizer, all_tests)
multi.set_adapter("cat")
cat_replies, cat_logits = generate_replies(multi, tokenizer, all_tests), prompt_logits(multi, tokenizer, all_tests)
stack_vs_cat = (stacked_logits - cat_logits).abs().max().item()
print(f"stacked == cat on all {len(all_tests)} test prompts: {stacked_replies == cat_replies}; "
      f"largest logit difference {stack_vs_cat:.1e}")

# %% [markdown]
# ## 4. A tree of adapters
#
# A deployment with many users can organise adapters as a tree: each request walks from the root to a leaf and
# stacks the adapters on its path.
#
# ```
# base model
# └── language: English                    (here: the base model itself; the tiny world speaks one language)
#     ├── domain: world knowledge
#     │   └── task: answer questions       -> adapter "facts"
#     │       └── user: likes pirates      -> adapter "persona"
#     └── domain: letter games
#         └── task: reverse letters        -> adapter "skill"
# ```
#
# The request of the pirate fan is answered by base + `facts` + `persona`, stacked (both active). Our `persona`
# adapter was trained on the base model alone (it learned the answer format *and* the accent), so the stack adds
# two answer formats. We measure the stack, and the persona with a smaller weight (`cat` with weights 1 and w):

# %%
multi.base_model.set_adapter(["facts", "persona"])
per_task_accuracy["facts+persona stacked"] = task_scores(multi, tokenizer, tests, facts_by_id)
multi.add_weighted_adapter(["facts", "persona"], [1.0, 0.5], "facts+half_persona", combination_type="cat")
multi.set_adapter("facts+half_persona")
per_task_accuracy["facts+0.5 persona"] = task_scores(multi, tokenizer, tests, facts_by_id)
multi.base_model.set_adapter(["facts", "persona"])
print("pirate fan asks:", tests["persona"][2]["messages"][0]["content"], "->",
      generate_replies(multi, tokenizer, tests["persona"][2:3])[0])
table({k: per_task_accuracy[k] for k in ["facts", "persona", "facts+persona stacked", "facts+0.5 persona"]})

# %% [markdown]
# ## 5. Merge one adapter for deployment
#
# With one task per server, merge the adapter into the weights (W ← W + scaling·B·A, `merge_and_unload` on a copy):
# no extra matrix products at inference, a plain transformers model. Does it answer exactly as the adapter did?

# %%
merge_checks = []
for name in TASK_FILES:
    multi.set_adapter(name)
    merge_checks.append({"adapter": name, "test prompts": len(tests[name]),
                         "same generations": generate_replies(multi, tokenizer, tests[name]) == generate_replies(merged[name], tokenizer, tests[name]),
                         "largest logit difference": max_logit_difference(multi, merged[name], tokenizer, tests[name])})
merged_generations_equal = all(c["same generations"] for c in merge_checks)
merged["facts"].save_pretrained(Path(output_dir) / "merged_facts")
print(f"merged model folder {folder_bytes(Path(output_dir) / 'merged_facts') / 1024:.0f} kB vs adapter folder "
      f"{folder_bytes(adapters_dir / 'facts') / 1024:.0f} kB")
table(merge_checks, "adapter")

# %%
metrics = {"per_task_accuracy": per_task_accuracy, "merged_generations_equal": merged_generations_equal,
           "memory_bytes": memory_bytes, "adapter_bytes": {n: adapter_bytes(multi, n) for n in TASK_FILES},
           "disabled_equals_base": disabled_equals_base, "disabled_max_logit_difference": disabled_diff,
           "stacked_equals_cat": stacked_replies == cat_replies, "stacked_vs_cat_max_logit_difference": stack_vs_cat,
           "train_seconds": {t: tr.train_seconds for t, tr in trainers.items()}, "steps": steps}
save_metrics(metrics, metrics_path)
{k: v for k, v in metrics.items() if k != "per_task_accuracy"}

# %% [markdown]
# ## What we measured
#
# Reading the numbers of this run (the cell below computes the reading, so it follows the numbers):
#
# * **Swapping** works by construction: `disable_adapter()` gave the base model back bit for bit, a mixed batch was
#   answered by three adapters in one pass, and one base + 3 adapters held far less memory than three merged models
#   (each adapter is `r·(d_in + d_out)` numbers per targeted layer: a small fraction of the base, printed above).
# * **Stacking is additive in the weights**: all adapters active at once gave the same logits as the `cat` combination
#   (difference at float rounding). Whether the *behaviours* add is another question, answered by the table below:
#   each combination's accuracy minus the accuracy of the task's own adapter (0 = no loss; negative = interference).
# * **Merging** for deployment gave the same greedy generations on every test prompt, with logit differences at
#   float32 rounding.

# %%
combos = [n for n in per_task_accuracy if n not in ("base", *TASK_FILES)]
change = {n: {t: per_task_accuracy[n][t] - per_task_accuracy[t][t] for t in TASK_FILES} for n in combos}
beats_base = {t: per_task_accuracy[t][t] > per_task_accuracy["base"][t] for t in TASK_FILES}
print("each adapter beats the base model on its own task:", beats_base)
print("combinations that keep every task within 0.05 of its own adapter:",
      [n for n, c in change.items() if min(c.values()) >= -0.05] or "none")
table(change).round(3)

# %% [markdown]
# Things to keep in mind when reading it:
# * `facts` and `persona` **conflict by design**: the same question should be answered plainly by one and with
#   "Arr matey!" by the other, so no combination can score well on both exact-match measures. `skill` shares no
#   prompts with the other two, so it is where addition has its best chance.
# * `linear` is not the sum of the adapters (cross terms Bᵢ·Aⱼ), `svd` truncates the sum back to rank r, `ties`/`dare`
#   drop entries: only `cat` (or stacking) is the exact sum, and the exact sum can still interfere, because every
#   adapter was trained assuming it alone moved the base model.
# * The adapters here are deliberately short runs on a tiny model; when an adapter barely beats the base model
#   on its own task, combinations have little to keep. Our numbers, not the slogan "LoRA modules are additive",
#   decide; here they say: additive in the weights, not automatically in the behaviour.
#
# ## Exercises
# 1. Give `steps` twice the values and rerun: do the single adapters improve, and do the combinations follow?
# 2. Combine `facts` and `skill` with weights 0.5/0.5 instead of 1/1 (`add_weighted_adapter`). Better or worse, and why?
# 3. Train the `persona` adapter **on top of** the merged `facts` model (`train_adapter(merged["facts"], ..., tokenizer=tokenizer)`)
#    and stack it on `facts`: a real tree branch. Does it beat the independently trained `persona` in the stack?
# 4. Retrain one adapter with `standard_lora(r=rank, use_rslora=True)`, combine it with `linear`, and compare with
#    stacking: measure the inexactness of weighted combination for rsLoRA that section 3 warned about.
# 5. Count, for a 7B model (4096 hidden, 32 layers, all-linear r=16), the bytes of one adapter and of one merged
#    model in bf16: how many adapters fit in the memory of one extra merged model?
