"""Shared code for the fine-tuning course; notebooks import from here. Importing it changes nothing (unless the
environment variable COURSE_PROFILE is set: then `helpers.profiling` times the course's calls): a notebook's
first call, `helpers.env.start`, quiets the known harmless warnings.

The modules, by layer (each imports only from the layers above it in this list):
- where things are, the machine: paths, env, precision, arch
- the tiny world: world (facts, corpus, chat, skill, preferences), facts, data (reading and checking rows),
  world_measures (its rulers), base_model (pretraining the tiny model)
- models and data of any kind: models, formats, chat, export
- measuring: evaluation (any model, any data), verdict (the one rule for comparisons over seeds), plots,
  memory, quant, lora, cost (what a cell is about to cost), ruler (a public multiple-choice benchmark)
- training: recipes (every recipe and budget), runs (the one training routine, checkpoints), training (SFT),
  dpo, grpo, forgetting, adapters, sweeps (learning rates by measurement), sft_script and fsdp_script
  (multi-process runs)
- the course's own machinery: course (run notebooks, budgets, -p), bench, profiling (where the time goes), colab,
  claims (every claim the course tests, and its judge) and ledger (CLAIMS.md rendered from the committed runs)
"""

import os as _os

if _os.environ.get("COURSE_PROFILE"):   # a developer's profile (python -m helpers.bench --profile): off otherwise
    from helpers import profiling as _profiling
    _profiling.install()
