"""The recipe home: every training recipe and every named budget of the course, in one place.

A **recipe** is the set of knobs of one kind of training (SFT, DPO, GRPO, the forgetting notebook's skill) for
one model scale: "tiny" (the course's 3.3M-parameter tiny-base) or "real" (100M-8B models). A **budget** is a
named preset of a notebook's parameters: how much data, how many steps, which model.

    "tiny"       the default: the embedded tiny world, what the committed notebooks show
    "smoke"      the CI run on the real model (SmolLM2-135M-Instruct): a few steps, a few dozen rows
    "benchmark"  the recorded real-model run on 2 CPU cores (BENCHMARKS.md)
    "colab_t4"   sized for a free Colab T4; an estimate until it is run on one

A notebook's parameters cell leaves the budget's parameters at None; its first code cell calls
`apply_budget(prefix, budget, globals())`, which fills each None from the budget and prints the effective
settings; `pick_recipe(kind, model, ...)` then fills the recipe's knobs the same way. Precedence, one rule:
a value you set > the budget's > the recipe's. The course command, the tests' runner and the benchmark read
the same tables (`budget_parameters`), and `check_parameters` refuses an unknown or mistyped parameter
where it enters.
"""
from __future__ import annotations

import ast

from helpers.models import count_parameters

TINY_MAX_PARAMETERS = 20_000_000  # below this a model gets the "tiny" recipes (printed by pick_recipe)

# ------------------------------------------------------------------------------------------ recipes
# learning_rate is LoRA's; full_learning_rate is full fine-tuning's (every weight moves: a smaller step).
RECIPES: dict[str, dict[str, dict]] = {
    # "tiny": tuned by measurement in notebook 02; 3 epochs, not 6 (measured, 2 seeds, LoRA r=8 on every linear
    # layer: held-out exact match 0.63 against 0.66, inside the seeds' spread of 0.05-0.07, held-out loss 0.515
    # against 0.49, for half the steps; BENCHMARKS.md). "real": by `python -m helpers.sweeps` on
    # SmolLM2-135M-Instruct (2026-12-02; letter reversal, 48 steps of 8 rows, 32 held-out rows, one seed a
    # point), held-out loss (exact match): LoRA r=8 on every linear layer at 2e-4, 6e-4, 2e-3, 6e-3: 0.198
    # (0.50), 0.064 (0.75), 0.015 (1.00), 0.049 (0.91); full fine-tuning at 2e-5, 6e-5, 2e-4, 6e-4, 2e-3: 0.074
    # (0.72), 0.050 (0.88), 0.023 (0.91), 0.021 (0.94), 0.051 (0.84). LoRA's best is 2e-3, ten times the 2e-4
    # peers use (which learned half the task); full fine-tuning's is flat from 2e-4 to 6e-4 (5% apart, one
    # seed): the lower, gentler of the two. Measured on a short, learnable task, not on Alpaca.
    "sft": {
        "tiny": {"learning_rate": 3e-3, "full_learning_rate": 2e-4, "epochs": 3, "batch_size": 16,
                 "max_length": 128, "lora_r": 8, "warmup_steps": 0},
        "real": {"learning_rate": 2e-3, "full_learning_rate": 2e-4, "epochs": 1, "batch_size": 8,
                 "max_length": 256, "lora_r": 8, "warmup_steps": 0.05},
    },
    # sft_weight > 0 adds the NLL term on the chosen answers (DPO + NLL). "tiny": tuned in notebook 05; its β by
    # notebook 05's β sweep of DPO + NLL (2026-12-02, one seed, 48 held-out pairs: preferred rate 0.56, 0.69,
    # 0.81, 0.65 and habit rate 0.25, 0.15, 0.00, 0.17 at β = 0.02, 0.1, 0.5, 2; below 0.5 the NLL term, which
    # imitates chosen answers half of which carry the habit, outweighs the contrast).
    # "real": by measurement on SmolLM2-135M-Instruct (2026-12-02; the world's habit pairs after 48 steps of SFT
    # on the sloppy set, which ends 48% of 48 held-out replies with the sign-off; plain DPO, LoRA r=8, batch 8,
    # β 0.1, one seed a point; `results/rate_sweep/smollm2_135m_dpo.json`), habit rate / preferred rate /
    # held-out log π(chosen) change: 24 steps at 5e-5 0.10 / 0.77 / -0.08 nats; 12 steps at 1.5e-4 0.00 / 0.85
    # / -0.24; 24 at 5e-4 0.00 / 0.52 / -12.7 ("The capital of Angola is Angola."); 24 at 2e-3 0.00 / 0.00 /
    # -136 (replies a single word), each with implicit reward accuracy 0.94-0.96: the curves cannot tell these
    # runs apart, the replies can. 1.5e-4 for tens of steps; peers' 5e-6 to 5e-5 suit hundreds.
    "dpo": {
        "tiny": {"learning_rate": 3e-3, "epochs": 3, "batch_size": 16, "max_length": 128, "beta": 0.5,
                 "sft_weight": 1.0, "lora_r": 8},
        "real": {"learning_rate": 1.5e-4, "epochs": 1, "batch_size": 8, "max_length": 384, "beta": 0.1,
                 "sft_weight": 0.0, "lora_r": 8},
    },
    # warmup_sft_steps: SFT steps before RL, so that the policy sometimes succeeds (a group whose answers all
    # score 0 teaches nothing). Tiny, measured in notebook 09: 2e-3 degraded exact accuracy, 1e-3 raised it.
    # "real": by measurement on SmolLM2-135M-Instruct (2026-12-02; 12 SFT warm-up steps on letter reversal, which
    # leave it partly solving the task: greedy exact 0.56 on 32 held-out prompts, 4 sampled replies each 0.45;
    # then 12 GRPO steps of 4 prompts x 8 completions on reversal_partial, LoRA r=8, one seed a point;
    # results/rate_sweep/smollm2_135m_grpo.json), greedy / sampled exact: 5e-5 0.59 / 0.48, 2e-4 0.62 / 0.54,
    # 6e-4 0.72 / 0.61, 2e-3 0.44 / 0.34. Peers' ~1e-5 (LoRA) over hundreds of steps moves nothing in tens.
    "grpo": {
        "tiny": {"learning_rate": 1e-3, "max_steps": 60, "prompts_per_step": 8, "num_generations": 8,
                 "temperature": 1.0, "beta": 0.04, "max_completion_length": 16, "lora_r": 8,
                 "warmup_sft_steps": 80},
        "real": {"learning_rate": 6e-4, "max_steps": 30, "prompts_per_step": 4, "num_generations": 8,
                 "temperature": 1.0, "beta": 0.04, "max_completion_length": 24, "lora_r": 8,
                 "warmup_sft_steps": 60},
    },
    # Learning the narrow skill of notebook 06. "tiny": measured in notebook 06 (the full learning rate is
    # matched to LoRA r=4's skill accuracy).
    "skill": {
        # tiny: full fine-tuning's rate matched to LoRA r=4 (attention) at 3e-3, skill 0.84-0.90 over 3 seeds:
        # full at 1e-4, 1.5e-4, 2e-4, 3e-4 reached 0.03, 0.47, 0.87, 0.92-1.00 (2026-12-01, seed 0; 3e-4: 3 seeds).
        "tiny": {"learning_rate": 3e-3, "full_learning_rate": 2e-4, "freeze_learning_rate": 1e-3,
                 "max_steps": 200, "batch_size": 16, "max_length": 128, "lora_r": 4},
        # real: the "sft" sweep above was run on this very skill (LoRA 2e-3, full 2e-4); freezing's rate is
        # not measured
        "real": {"learning_rate": 2e-3, "full_learning_rate": 2e-4, "freeze_learning_rate": 1e-4,
                 "max_steps": 100, "batch_size": 8, "max_length": 128, "lora_r": 4},
    },
}


def model_scale(model) -> str:
    """'tiny' for a model under TINY_MAX_PARAMETERS parameters (the course's tiny-base), 'real' otherwise."""
    return "tiny" if count_parameters(model) < TINY_MAX_PARAMETERS else "real"


def recipe_of(kind: str, scale: str) -> dict:
    """A copy of one recipe; an unknown kind or scale is refused with the names that exist."""
    if kind not in RECIPES:
        raise KeyError(f"no recipe {kind!r}; the recipes are {sorted(RECIPES)}")
    if scale not in RECIPES[kind]:
        raise KeyError(f"no {kind} recipe for scale {scale!r}; the scales are {sorted(RECIPES[kind])}")
    return dict(RECIPES[kind][scale])


def pick_recipe(kind: str, model, verbose: bool = True, **overrides) -> dict:
    """The `kind` recipe for this model's scale, each override that is not None applied, printed.

    An override the recipe does not know is refused (a misspelt knob would otherwise do nothing).
    """
    scale = model_scale(model)
    recipe = recipe_of(kind, scale)
    unknown = sorted(k for k in overrides if k not in recipe)
    if unknown:
        raise KeyError(f"unknown {kind} recipe knob(s) {unknown}; the recipe has {sorted(recipe)}")
    changed = {k: v for k, v in overrides.items() if v is not None}
    recipe.update(changed)
    if verbose:
        n = count_parameters(model)
        knobs = ", ".join(f"{k}={v}{' (set)' if k in changed else ''}" for k, v in recipe.items())
        print(f"{kind} recipe {scale!r} ({n / 1e6:.1f}M parameters, {'under' if scale == 'tiny' else 'over'} "
              f"{TINY_MAX_PARAMETERS / 1e6:.0f}M): {knobs}")
    return recipe


def knobs(recipe: dict, *names: str) -> dict:
    """The named knobs of a recipe, for a builder that takes exactly those (a missing one is an error)."""
    return {n: recipe[n] for n in names}


# ------------------------------------------------------------------------------------------ budgets
TINY_MODEL = "data/tiny-base"
REAL_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
REAL_CHAT_DATA = "data/real/alpaca_5000.json"
REAL_PREFERENCE_DATA = "data/real/hh_rlhf_harmless_test.jsonl.gz"

# "tiny": per notebook, the value of every parameter a budget sets (None: the recipe's). The other budgets
# list what differs from it.
TINY_BUDGET: dict[str, dict] = {
    "00": {"model": TINY_MODEL},
    "01": {"model": TINY_MODEL, "max_steps": 30, "batch_size": None, "max_train_rows": None,
           "timing_repeats": 30},
    "02": {"model": TINY_MODEL, "dataset": "data/world/sft_train.jsonl", "max_train_rows": None,
           "max_eval_rows": None, "max_steps": -1, "batch_size": None, "max_length": None, "sweep_steps": 40,
           "overfit_epochs": 16, "ruler_items": 0},
    "03": {"model": TINY_MODEL, "dataset": "data/world/sft_train.jsonl", "max_train_rows": None,
           "max_eval_rows": None, "max_steps": -1, "batch_size": None, "max_length": None, "seeds": [0, 1, 2],
           "lr_sweep_steps": 40},
    "04": {"model": TINY_MODEL, "dataset": "data/world/sft_train.jsonl", "max_train_rows": None,
           "max_eval_rows": None, "max_steps": -1, "batch_size": None, "max_length": None, "seeds": [0, 1, 2],
           "max_probes": None, "max_texts": None},
    "05": {"model": TINY_MODEL, "dataset": "", "seeds": [0, 1, 2],
           "max_train_rows": None, "max_eval_rows": None, "max_steps": -1,
           "batch_size": None, "max_length": None, "sweep_betas": [0.02, 0.1, 0.5, 2.0], "max_probes": None,
           "check_pairs": 16, "ruler_items": 0},
    "06": {"model": TINY_MODEL, "seeds": [0, 1, 2], "max_steps": None, "batch_size": None, "lr_scales": [0.33, 0.67],
           "ranks": [1, 64],
           "replay_ratios": [0.25, 0.5], "max_probes": None, "max_skill_rows": None, "put_back": True,
           "alignment_tax": True, "measure_every": 50, "ruler_items": 0},
    "07": {"model": TINY_MODEL, "steps": {"facts": 150, "skill": 200, "persona": 120}, "seeds": [0, 1, 2],
           "batch_size": None,
           "max_eval_rows": None, "timing_repeats": 20,
           "combination_types": ["linear", "cat", "svd", "ties", "dare_ties"]},
    "08": {"model": TINY_MODEL, "dataset": "data/world/sft_train.jsonl", "batch_size": 8, "seq_len": 128,
           "timed_steps": 5, "gen_tokens": 32, "launch_steps": 3},
    "09": {"model": TINY_MODEL, "reward": "reversal_exact", "warmup_sft_steps": None, "max_steps": None,
           "prompts_per_step": None, "num_generations": None, "seeds": [0, 1, 2], "hack_steps": 30,
           "generations_sweep": [2, 4, 8], "control_steps": 15, "max_eval_rows": None, "max_probes": None,
           "control_arms": ["real reward", "placebo reward", 'loss_type="grpo"', 'loss_type="dr_grpo"'],
           "clip_steps": 16},
}

BUDGETS: dict[str, dict[str, dict]] = {
    "tiny": {},
    # The CI run on the real model: what must hold on any model, at the smallest size that shows it.
    "smoke": {
        "00": {"model": REAL_MODEL},
        "01": {"model": REAL_MODEL, "max_steps": 4, "batch_size": 4, "max_train_rows": 64, "timing_repeats": 5},
        "02": {"model": REAL_MODEL, "dataset": REAL_CHAT_DATA, "max_train_rows": 32, "max_eval_rows": 6,
               "max_steps": 4, "batch_size": 4, "max_length": 192, "sweep_steps": 0, "overfit_epochs": 0,
               "ruler_items": 4},
        "03": {"model": REAL_MODEL, "dataset": REAL_CHAT_DATA, "max_train_rows": 24, "max_eval_rows": 6,
               "max_steps": 3, "batch_size": 4, "max_length": 192, "seeds": [0], "lr_sweep_steps": 0},
        "04": {"model": REAL_MODEL, "dataset": REAL_CHAT_DATA, "max_train_rows": 24, "max_eval_rows": 6,
               "max_steps": 3, "batch_size": 4, "max_length": 192, "seeds": [0], "max_probes": 48, "max_texts": 16},
        "05": {"model": REAL_MODEL, "dataset": REAL_PREFERENCE_DATA, "seeds": [0],
               "max_train_rows": 32, "max_eval_rows": 12,
               "max_steps": 2, "batch_size": 2, "max_length": 128, "sweep_betas": [], "max_probes": 32,
               "check_pairs": 4, "ruler_items": 4},
        "06": {"model": REAL_MODEL, "seeds": [0], "max_steps": 3, "batch_size": 4, "lr_scales": [], "ranks": [],
               "replay_ratios": [0.25], "max_probes": 32, "max_skill_rows": 8, "put_back": False,
               "alignment_tax": False, "measure_every": 3, "ruler_items": 8},
        "07": {"model": REAL_MODEL, "steps": {"facts": 3, "skill": 3, "persona": 3}, "seeds": [0], "batch_size": 4,
               "max_eval_rows": 2, "timing_repeats": 3, "combination_types": ["cat"]},
        "08": {"model": REAL_MODEL, "dataset": REAL_CHAT_DATA, "batch_size": 2, "seq_len": 64, "timed_steps": 1,
               "gen_tokens": 8, "launch_steps": 3},
        # 4 warm-up steps give the check batch groups with spread under the partial reward (2 of 2; greedy
        # accuracy 0.00 -> 0.12, sampled reward 0.03 -> 0.32, 2026-12-03); 16 cost 40 s more of a CI worker
        "09": {"model": REAL_MODEL, "reward": "reversal_partial", "warmup_sft_steps": 4, "max_steps": 2,
               "prompts_per_step": 2, "num_generations": 4, "seeds": [0], "hack_steps": 0,
               "generations_sweep": [], "control_steps": 0, "max_eval_rows": 8, "max_probes": 16,
               "clip_steps": 0},
    },
    # A realistic budget on 2 CPU cores (python -m helpers.bench --budget benchmark); BENCHMARKS.md records
    # what ran where: 46 minutes for the course at 12-24 steps a notebook (2026-11-24); at today's budgets, with
    # the measured rates and 3 seeds, about 2 hours 20 (helpers.course.RECORDED_SECONDS, notebook by notebook).
    "benchmark": {
        "00": {"model": REAL_MODEL},
        # 48 steps: long enough for the full fine-tune's ΔW spectrum to say something (16 were too few)
        "01": {"model": REAL_MODEL, "max_steps": 48, "batch_size": 8, "max_train_rows": 256, "timing_repeats": 5},
        # the world's chat questions (real facts, one-sentence answers): a behaviour the data teaches (the answer
        # sentence, replies that stop) in 48 steps; Alpaca moved the held-out loss 0.1 nat in 24 and nothing else
        "02": {"model": REAL_MODEL, "dataset": "data/world/sft_train.jsonl", "max_train_rows": 256,
               "max_eval_rows": 64, "max_steps": 48, "batch_size": 8, "max_length": 256, "sweep_steps": 0,
               "overfit_epochs": 0, "ruler_items": 200},
        # 02's behaviour (the world's chat questions): each family's rate by a 12-step sweep, then 24 steps at
        # it over 3 seeds (Alpaca at 12 steps and one seed moved every family's loss by under 0.1 nat)
        "03": {"model": REAL_MODEL, "dataset": "data/world/sft_train.jsonl", "max_train_rows": 256,
               "max_eval_rows": 64, "max_steps": 24, "batch_size": 8, "max_length": 256, "seeds": [0, 1, 2],
               "lr_sweep_steps": 12},
        # 02's behaviour (the world's chat questions, 48 steps at the measured rate): does QLoRA learn it as LoRA
        # does, and make up 4 bits' loss? Alpaca at 12 steps moved the loss 0.05 nat in either arm (2026-11-24)
        "04": {"model": REAL_MODEL, "dataset": "data/world/sft_train.jsonl", "max_train_rows": 256,
               "max_eval_rows": 64, "max_steps": 48, "batch_size": 8, "max_length": 256, "seeds": [0, 1, 2],
               "max_probes": 96, "max_texts": 64},
        # the world's preference pairs (SFT on the sloppy set first: the habit to remove); 12 steps at
        # the measured rate remove the habit (the recipe's comment)
        "05": {"model": REAL_MODEL, "dataset": "", "seeds": [0, 1, 2],
               "max_train_rows": None, "max_eval_rows": None,
               "max_steps": 12, "batch_size": 8, "max_length": 128, "sweep_betas": [], "max_probes": 96,
               "check_pairs": 8, "ruler_items": 200},
        # 48 steps: the learning-rate sweep's length, where LoRA (2e-3) and full fine-tuning (2e-4) learn the skill
        "06": {"model": REAL_MODEL, "seeds": [0, 1, 2], "max_steps": 48, "batch_size": 8, "lr_scales": [], "ranks": [],
               "replay_ratios": [0.25], "max_probes": 96, "max_skill_rows": 32, "put_back": False,
               "alignment_tax": False, "measure_every": 12, "ruler_items": 200},
        # 48 steps an adapter at the sweep's rate: each learns its task (12 at the old rate learned none)
        "07": {"model": REAL_MODEL, "steps": {"facts": 48, "skill": 48, "persona": 48}, "seeds": [0, 1, 2],
               "batch_size": 8,
               "max_eval_rows": 16, "timing_repeats": 3, "combination_types": ["cat"]},
        "08": {"model": REAL_MODEL, "dataset": REAL_CHAT_DATA, "batch_size": 4, "seq_len": 256,
               "launch_steps": 3},
        # 12 warm-up steps leave the task partly solved (greedy 0.56); 12 GRPO steps at the measured rate, and
        # the placebo at the same budget (the real reward's control runs are the seeds' GRPO runs, reused)
        "09": {"model": REAL_MODEL, "reward": "reversal_partial", "warmup_sft_steps": 12, "max_steps": 12,
               "prompts_per_step": 4, "num_generations": 8, "seeds": [0, 1, 2], "hack_steps": 0,
               "generations_sweep": [], "control_steps": 12, "max_eval_rows": 32, "max_probes": 48,
               "control_arms": ["real reward", "placebo reward"], "clip_steps": 0},
    },
    # A free Colab T4, about 10 minutes a notebook. AN ESTIMATE, not yet run on a T4: the benchmark's rows
    # and steps scaled by a T4's throughput over 2 CPU cores (notebook 08 measures both).
    "colab_t4": {
        "00": {"model": REAL_MODEL},
        "01": {"model": REAL_MODEL, "max_steps": 64, "batch_size": 8, "max_train_rows": 512, "timing_repeats": 10},
        "02": {"model": REAL_MODEL, "dataset": REAL_CHAT_DATA, "max_train_rows": 1024, "max_eval_rows": 64,
               "max_steps": 120, "batch_size": 8, "max_length": 256, "sweep_steps": 30, "overfit_epochs": 0,
               "ruler_items": 300},
        "03": {"model": REAL_MODEL, "dataset": REAL_CHAT_DATA, "max_train_rows": 512, "max_eval_rows": 48,
               "max_steps": 60, "batch_size": 8, "max_length": 256, "seeds": [0, 1, 2],
               "lr_sweep_steps": 30},
        "04": {"model": REAL_MODEL, "dataset": REAL_CHAT_DATA, "max_train_rows": 512, "max_eval_rows": 48,
               "max_steps": 60, "batch_size": 8, "max_length": 256, "seeds": [0, 1, 2], "max_probes": 200,
               "max_texts": None},
        "05": {"model": REAL_MODEL, "dataset": REAL_PREFERENCE_DATA, "seeds": [0, 1, 2],
               "max_train_rows": 512, "max_eval_rows": 96,
               "max_steps": 60, "batch_size": 8, "max_length": 256, "sweep_betas": [0.1, 0.5], "max_probes": 200,
               "check_pairs": 8, "ruler_items": 300},
        "06": {"model": REAL_MODEL, "seeds": [0, 1, 2], "max_steps": 60, "batch_size": 8, "lr_scales": [],
               "ranks": [64],
               "replay_ratios": [0.25], "max_probes": 200, "max_skill_rows": 64, "put_back": False,
               "alignment_tax": False, "measure_every": 10, "ruler_items": 300},
        "07": {"model": REAL_MODEL, "steps": {"facts": 60, "skill": 60, "persona": 60}, "seeds": [0, 1, 2],
               "batch_size": 8,
               "max_eval_rows": 32, "timing_repeats": 5, "combination_types": ["linear", "cat"]},
        "08": {"model": REAL_MODEL, "dataset": REAL_CHAT_DATA, "batch_size": 8, "seq_len": 512,
               "launch_steps": 3},
        "09": {"model": REAL_MODEL, "reward": "reversal_partial", "warmup_sft_steps": 60, "max_steps": 60,
               "prompts_per_step": 4, "num_generations": 8, "seeds": [0, 1, 2], "hack_steps": 0,
               "generations_sweep": [], "max_eval_rows": 48, "max_probes": 96},
    },
}


def budget_parameters(notebook: str, budget: str) -> dict:
    """Every parameter that budget `budget` sets for notebook `notebook` ("02"), the tiny values included."""
    if budget not in BUDGETS:
        raise KeyError(f"no budget {budget!r}; the budgets are {sorted(BUDGETS)}")
    if notebook not in TINY_BUDGET:
        raise KeyError(f"no notebook {notebook!r} in the budgets; the notebooks are {sorted(TINY_BUDGET)}")
    return {**TINY_BUDGET[notebook], **BUDGETS[budget].get(notebook, {})}


def _same_kind(value, example) -> bool:
    """Is `value` of the kind `example` is (int and float are interchangeable numbers; None fits anything)?"""
    if value is None or example is None:
        return True
    number = (int, float)
    if isinstance(example, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(example, bool)
    if isinstance(example, number):
        return isinstance(value, number)
    return isinstance(value, type(example))


def _kind_error(name: str, value, example) -> TypeError:
    hint = (" Pass a list or a dict as YAML: `-y '{name}: [...]'` (papermill and the course command), or "
            "in the parameters cell as Python." if isinstance(example, (list, dict)) and isinstance(value, str)
            else "")
    return TypeError(f"parameter {name!r} must be a {type(example).__name__} like {example!r}, not the "
                     f"{type(value).__name__} {value!r}.{hint.format(name=name)}")


def apply_budget(notebook: str, budget: str, namespace: dict) -> dict:
    """Fill every parameter that is None in `namespace` (a notebook's globals()) from the budget, check the
    kind of every budget parameter, print the effective settings and return them. A value the budget leaves
    at None keeps the notebook's meaning of None (the recipe's value, or all rows: its parameters cell says).

    A value set by hand (not None) is kept; a value of the wrong kind (a string where a list belongs) is
    refused here, before anything runs.
    """
    values = budget_parameters(notebook, budget)
    missing = sorted(k for k in values if k not in namespace)
    if missing:
        raise KeyError(f"budget {budget!r} sets {missing}, which notebook {notebook} has no parameter for")
    effective, lines = {}, []
    for name, value in values.items():
        given = namespace[name]
        if given is None:
            namespace[name] = value
        elif not _same_kind(given, value) or not _same_kind(given, TINY_BUDGET[notebook].get(name)):
            raise _kind_error(name, given, value if value is not None else TINY_BUDGET[notebook].get(name))
        effective[name] = namespace[name]
        source = f"budget {budget!r}" if given is None else "set"
        lines.append(f"  {name} = {namespace[name]!r}  ({source})")
    print(f"budget {budget!r} for notebook {notebook}:\n" + "\n".join(lines))
    budget_model = values.get("model")
    if budget_model is not None and namespace.get("model") != budget_model:
        others = ", ".join(repr(b) for b in BUDGETS if b != budget)
        print(f"NOTE: budget {budget!r} sizes its steps, seeds and sweeps for {budget_model}, and `model` is "
              f"{namespace['model']!r}. The cells that train say what they will cost before they start; for a "
              f"model of another size pick the budget made for it ({others}).")
    return effective


# ------------------------------------------------------------------- parameters, where they enter
def notebook_parameters(path) -> dict[str, object]:
    """A notebook's parameters (its cell tagged "parameters") and their default values (None when a default
    is not a plain literal)."""
    import papermill as pm

    out = {}
    for name, info in pm.inspect_notebook(str(path)).items():
        try:
            out[name] = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            out[name] = None
    return out


def check_parameters(path, parameters: dict) -> None:
    """Refuse, before a notebook runs, a parameter it does not have (with the names it has) or a value of
    the wrong kind (a string where its default or its tiny budget has a list, ...)."""
    from pathlib import Path

    known = notebook_parameters(path)
    unknown = sorted(k for k in parameters if k not in known)
    if unknown:
        raise KeyError(f"{Path(path).name} has no parameter {', '.join(map(repr, unknown))}; its parameters "
                       f"are: {', '.join(known)}")
    tiny = TINY_BUDGET.get(Path(path).name[:2], {})
    for name, value in parameters.items():
        example = known[name] if known[name] is not None else tiny.get(name)
        if not _same_kind(value, example):
            raise _kind_error(name, value, example)
