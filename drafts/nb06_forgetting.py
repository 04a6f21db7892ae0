# %% [markdown]
# # 06 · Catastrophic forgetting, measured and reduced
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](x)
#
# **Goals.** By the end of this notebook you can
# 1. measure a fine-tune with two rulers: how much it *learned* (a narrow new skill) and how much it *forgot* (facts and general text it knew);
# 2. compare full fine-tuning, LoRA at several ranks, replay of general data, an L2 pull to the start weights and freezing layers on one learning-vs-forgetting plot (the frontier);
# 3. watch forgetting grow with training steps;
# 4. measure the alignment tax of SFT;
# 5. check, with our own numbers, the claim of Biderman et al. (2024), "LoRA learns less and forgets less".
#
# Every number printed below is measured in this run.

# %%
# written by `python -m helpers.course --sync`

# %% tags=["parameters"]
model = "data/tiny-base"                # a local folder or a hub id
world_dir = "data/world"
seed = 0
steps = 60                              # optimizer steps per run: the same budget for every run
batch_size = 16
lr_full = 2e-4                          # full fine-tuning, replay, L2, freezing (picked once by a quick sweep)
lr_lora = 2e-3                          # every LoRA run (picked once by a quick sweep)
ranks = [1, 4, 16, 64]
replay_ratios = [0.25, 0.5]             # share of each batch that is general corpus text
l2_strength = 1.0                       # lambda of the L2 pull to the start weights
measure_every = 10                      # steps between forgetting measurements during training
output_dir = "../outputs/06_forgetting"
metrics_path = "../outputs/06_forgetting/metrics.json"

# %%
import time

import matplotlib.pyplot as plt
from peft import LoraConfig

from helpers.base_model import load_model
from helpers.data import load_world
from helpers.env import describe_machine, seed_everything
from helpers.evaluation import chat_exact_match
from helpers.forgetting import (MeasureEvery, freeze_all_but_last, l2_pull_to_start, mix_replay, rulers,
                                run_variant)
from helpers.paths import resolve
from helpers.plots import save_metrics, table
from helpers.training import SFT_RECIPE, standard_lora, train_sft

seed_everything(seed)
world_dir = resolve(world_dir)
describe_machine()
started = time.perf_counter()

# %% [markdown]
# ## 1. Two rulers
#
# * **Learning**: exact-match accuracy on a narrow skill the base model never saw: reversing 3 to 5 letters
#   (`Reverse the letters: m j h` → `h j m`), on 100 held-out test rows.
# * **Forgetting**: the *drop* in fact-probe accuracy (cloze prompts such as "The capital of France is", which the
#   base model completes from pretraining) and the *rise* in perplexity on held-out general text.
#
# We measure the base model once; every run starts from exactly these weights.

# %%
world = {"skill_test": load_world("skill_test", world_dir), "probes": load_world("probes", world_dir),
         "heldout_text": [r["text"] for r in load_world("heldout_text", world_dir)]}
skill_rows = load_world("skill_train", world_dir)
general_texts = [r["text"] for r in load_world("corpus", world_dir)]
base, tokenizer = load_model(model)
before = rulers(base, tokenizer, world)
del base
print(f"{len(skill_rows)} skill rows, {len(general_texts)} general texts; budget {steps} steps x {batch_size} rows")
table({"base model": before})

# %% [markdown]
# ## 2. Full fine-tuning, and forgetting step by step
#
# Every run uses the same data, the same number of steps and the same batch size. Full fine-tuning updates all
# ~3.3M weights. A callback measures the fact probes and perplexity every `measure_every` steps.

# %%
runs = []
budget = dict(max_steps=steps, per_device_train_batch_size=batch_size, seed=seed, data_seed=seed,
              logging_steps=steps)
curves = {}
curves["full"] = MeasureEvery(tokenizer, world, every=measure_every)
runs.append(run_variant("full", model, world, skill_rows, before, output_dir=output_dir,
                        callbacks=[curves["full"]], learning_rate=lr_full, **budget))
table(runs[-1:])

# %% [markdown]
# ## 3. LoRA at several ranks, on attention only and on all linear layers
#
# LoRA freezes W and trains ΔW = B·A of rank r (scaling α/r, here α = 2r). "Attention" puts it on q, k, v, o;
# "all-linear" also on the MLP (gate, up, down). LoRA gets its own, higher learning rate, as is usual.

# %%
attention = ["q_proj", "k_proj", "v_proj", "o_proj"]
for targets, tag in [(attention, "attn"), ("all-linear", "all")]:
    for r in ranks:
        config = LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules=targets, task_type="CAUSAL_LM")
        name = f"lora_{tag}_r{r}"
        callbacks = []
        if name == "lora_attn_r4":
            curves[name] = MeasureEvery(tokenizer, world, every=measure_every)
            callbacks = [curves[name]]
        runs.append(run_variant(name, model, world, skill_rows, before, output_dir=output_dir, peft_config=config,
                                callbacks=callbacks, learning_rate=lr_lora, **budget))
table(runs[-2 * len(ranks):]).set_index("name")

# %% [markdown]
# ## 4. Remedies for full fine-tuning
#
# * **Replay**: a share of every batch is general corpus text instead of skill rows (same number of rows and steps).
#   TRL's SFTTrainer takes one data format at a time, so each general text becomes a chat row with an *empty user
#   turn* and the text as the assistant turn: the model still learns to predict every token of it, after a short
#   fixed prefix. (Honest caveat: this is close to, not identical with, plain language-model replay.)
# * **L2 pull to the start**: loss = L_SFT + λ · Σᵢ (θᵢ − θ₀ᵢ)², added as the gradient 2λ(θ − θ₀) on every weight.
# * **Freezing**: train only the last transformer block; embeddings and the other blocks stay as pretrained.

# %%
for ratio in replay_ratios:
    mixed = mix_replay(skill_rows, general_texts, ratio, seed=seed)
    runs.append(run_variant(f"full_replay_{ratio:g}", model, world, mixed, before, output_dir=output_dir,
                            learning_rate=lr_full, **budget))

runs.append(run_variant("full_l2", model, world, skill_rows, before, output_dir=output_dir,
                        prepare=lambda m: l2_pull_to_start(m, l2_strength), learning_rate=lr_full, **budget))
runs.append(run_variant("freeze_all_but_last", model, world, skill_rows, before, output_dir=output_dir,
                        prepare=lambda m: freeze_all_but_last(m, k=1), learning_rate=lr_full, **budget))
table(runs[-len(replay_ratios) - 2:]).set_index("name")

# %% [markdown]
# ## 5. The frontier: learning against forgetting
#
# Top left is best: high skill accuracy, small drop in fact-probe accuracy.

# %%
results = table(runs).set_index("name")
fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
for ax, col, label in [(axes[0], "fact_drop", "fact-probe accuracy drop (forgetting)"),
                       (axes[1], "perplexity_rise", "held-out perplexity rise (forgetting)")]:
    for name, row in results.iterrows():
        family = "tab:red" if name.startswith("full") else "tab:blue" if name.startswith("lora") else "tab:green"
        ax.scatter(row[col], row["skill_accuracy"], color=family)
        ax.annotate(name, (row[col], row["skill_accuracy"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set(xlabel=label, ylabel="skill accuracy (learning)")
    ax.grid(alpha=0.3)
fig.suptitle("Learning vs forgetting (red: full FT and its remedies, blue: LoRA, green: freezing)")
plt.show()
results[["trainable", "skill_before", "skill_accuracy", "fact_probe_after", "fact_drop", "perplexity_after",
         "perplexity_rise", "train_seconds"]].round(3)

# %% [markdown]
# ## 6. Forgetting against training steps

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for name, cb in curves.items():
    points = [{"step": 0, "fact_probe": before["fact_probe"], "perplexity": before["perplexity"]}] + cb.history
    for ax, key in zip(axes, ["fact_probe", "perplexity"]):
        ax.plot([p["step"] for p in points], [p[key] for p in points], marker="o", label=name)
for ax, key in zip(axes, ["fact-probe accuracy", "held-out perplexity"]):
    ax.set(xlabel="training step", ylabel=key)
    ax.grid(alpha=0.3)
    ax.legend()
plt.show()

# %% [markdown]
# ## 7. The alignment tax of SFT
#
# Notebook 02's SFT (chat answers to fact questions, LoRA with the course's standard recipe) also moves the model
# away from its pretrained self. We train it here and apply the same two forgetting rulers; its "learning" ruler is
# chat exact match on held-out questions. (Preference alignment with DPO is notebook 05; its tax can be measured
# with these same rulers: see the exercises.)

# %%
sft_model, _ = load_model(model)
sft_chat_before = chat_exact_match(sft_model, tokenizer, load_world("sft_test", world_dir))
sft = train_sft(sft_model, tokenizer, load_world("sft_train", world_dir), output_dir=f"{output_dir}/sft",
                peft_config=standard_lora(), seed=seed, data_seed=seed, **SFT_RECIPE)
sft_after = rulers(sft.model, tokenizer, world)
tax = {"chat_exact_match_before": sft_chat_before,
       "chat_exact_match_after": chat_exact_match(sft.model, tokenizer, load_world("sft_test", world_dir)),
       "fact_probe_before": before["fact_probe"], "fact_probe_after": sft_after["fact_probe"],
       "perplexity_before": before["perplexity"], "perplexity_after": sft_after["perplexity"]}
table({"SFT (LoRA r=8, all-linear)": tax}).round(3)

# %%
keys = ["name", "skill_accuracy", "skill_before", "fact_probe_before", "fact_probe_after", "perplexity_before",
        "perplexity_after", "trainable"]
metrics = {"runs": [{k: r[k] for k in keys} for r in runs], "alignment_tax": {"sft": tax},
           "forgetting_vs_steps": {name: cb.history for name, cb in curves.items()},
           "settings": {"steps": steps, "batch_size": batch_size, "lr_full": lr_full, "lr_lora": lr_lora,
                        "l2_strength": l2_strength, "replay_ratios": replay_ratios},
           "seconds": round(time.perf_counter() - started, 1)}
save_metrics(metrics, metrics_path)
print(f"notebook ran in {metrics['seconds']} s; metrics in {metrics_path}")

# %% [markdown]
# ## What we measured
#
# READING_PLACEHOLDER
#
# ## Exercises
#
# 1. Double `steps`. Does full fine-tuning's fact drop grow faster than LoRA's? Is it the steps, or the size of the update?
# 2. Redo the learning-rate sweep for LoRA r=4 attention (1e-3, 2e-3, 5e-3). At which learning rate does LoRA forget as much as full fine-tuning?
# 3. Raise `l2_strength` tenfold, and lower it tenfold. Where does the L2 run land on the frontier?
# 4. Train the DPO model of notebook 05 on top of the SFT model above and apply `rulers` to it: how big is its alignment tax?
