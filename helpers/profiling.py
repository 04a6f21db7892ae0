"""Where a notebook's time goes: training steps, generation, evaluation passes, model loads, tokenisation,
trainer start-up, the 4-bit path. A developer's tool (`python -m helpers.bench --profile`), off unless the
environment variable COURSE_PROFILE names a JSON file: then importing `helpers` wraps the functions below with
timers and keeps that file up to date with the seconds per category.

Each category counts its own time only: generation inside GRPO's training is "generation", not "training
steps"; a model load inside a trainer's start-up is "model loads". What no category claims is "other"
(Python, figures, small tensors, the kernel itself).
"""
from __future__ import annotations

import functools
import importlib
import json
import os
import sys
import time

ENV = "COURSE_PROFILE"

# (category, module, attribute) — an attribute "Class.method" patches the class; a function is also replaced
# wherever a loaded helpers module imported it by name.
TARGETS = [
    ("training steps", "helpers.runs", "train"),
    ("trainer start-up", "transformers.trainer", "Trainer.__init__"),
    ("trainer start-up", "trl.trainer.sft_trainer", "SFTTrainer.__init__"),
    ("trainer start-up", "trl.trainer.dpo_trainer", "DPOTrainer.__init__"),
    ("trainer start-up", "trl.trainer.grpo_trainer", "GRPOTrainer.__init__"),
    ("generation", "transformers.generation.utils", "GenerationMixin.generate"),
    ("model loads", "helpers.models", "load_model"),
    ("model loads", "peft.mapping_func", "get_peft_model"),
    ("4-bit path", "bitsandbytes.nn.modules", "Linear4bit.forward"),
    ("4-bit path", "bitsandbytes.functional", "quantize_4bit"),
    ("tokenisation", "transformers.tokenization_utils_base", "PreTrainedTokenizerBase.__call__"),
    ("tokenisation", "transformers.tokenization_utils_base", "PreTrainedTokenizerBase.apply_chat_template"),
    ("subprocesses", "subprocess", "run"),    # notebook 08's multi-process runs: a process per rank
]
# forward passes that no other category holds: evaluation (held-out loss, logits, probes)
FORWARD = ("evaluation passes", "transformers.models.llama.modeling_llama", "LlamaForCausalLM.forward")

_stack: list[list] = []          # [category, start, time claimed by nested categories]
_seconds: dict[str, float] = {}
_calls: dict[str, int] = {}
_started = time.perf_counter()


def _write() -> None:
    total = time.perf_counter() - _started
    seconds = {k: round(v, 2) for k, v in sorted(_seconds.items(), key=lambda kv: -kv[1])}
    report = {"total": round(total, 2), "seconds": seconds, "calls": _calls,
              "other": round(total - sum(_seconds.values()), 2)}
    with open(os.environ[ENV], "w") as f:
        json.dump(report, f, indent=1)


def _timed(category: str, fn, only_outside: bool = False):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if only_outside and _stack:   # a forward inside training or generation belongs to them
            return fn(*args, **kwargs)
        _stack.append([category, time.perf_counter(), 0.0])
        try:
            return fn(*args, **kwargs)
        finally:
            cat, start, nested = _stack.pop()
            spent = time.perf_counter() - start
            _seconds[cat] = _seconds.get(cat, 0.0) + spent - nested
            _calls[cat] = _calls.get(cat, 0) + 1
            if _stack:
                _stack[-1][2] += spent
            else:
                _write()
    wrapper.__profiled__ = True
    return wrapper


def install() -> None:
    """Wrap every target that can be imported here (a missing optional library is skipped); the report is
    written after every outermost timed call and when the process exits."""
    import atexit

    from helpers.env import quiet_known_warnings

    quiet_known_warnings()   # importing the targets below (bitsandbytes) would otherwise log into the first cell
    atexit.register(_write)
    try:   # in a notebook kernel (stopped without exit handlers): also after every cell
        from IPython import get_ipython

        if get_ipython() is not None:
            get_ipython().events.register("post_run_cell", lambda *_: _write())
    except ImportError:
        pass
    replaced = {}
    for category, module_name, attribute in TARGETS + [FORWARD]:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        owner, name = module, attribute
        if "." in attribute:
            cls, name = attribute.split(".")
            owner = getattr(module, cls, None)
        fn = getattr(owner, name, None)
        if fn is None or getattr(fn, "__profiled__", False):
            continue
        wrapped = _timed(category, fn, only_outside=(category, module_name, attribute) == FORWARD)
        setattr(owner, name, wrapped)
        if owner is module:
            replaced[id(fn)] = wrapped
    for mod_name, mod in list(sys.modules.items()):   # `from helpers.runs import train` made earlier
        if mod_name.startswith("helpers") and mod is not None and mod_name != __name__:
            for key, value in list(vars(mod).items()):
                if id(value) in replaced:
                    setattr(mod, key, replaced[id(value)])
