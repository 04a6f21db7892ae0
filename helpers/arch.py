"""What the course knows about model architectures, in one place: layer names by role, the decoder blocks,
the shapes of a block's linear layers.

Architectures name the same projections differently (Llama/Qwen `q_proj`, GPT-2 `c_attn`, GPT-NeoX
`query_key_value`, ...). LoRA's `target_modules` matches these short names, so the course finds them by
role. Shapes are always (n_out, n_in), the orientation of nn.Linear's weight.
"""
from __future__ import annotations

import torch

# Linear layer classes by name, so that GPT-2's Conv1D and bitsandbytes' 4/8-bit layers count too
# without importing optional packages.
LINEAR_CLASSES = {"Linear", "Conv1D", "Linear4bit", "Linear8bitLt", "QuantLinear"}
OUTPUT_HEADS = ("lm_head", "embed_out", "output")
LLAMA_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")  # also Qwen2, Mistral

# Short names of the projections by role, across architectures (first match wins).
ROLES = {
    "query": ["q_proj", "query", "q", "Wqkv", "c_attn", "qkv_proj", "query_key_value"],
    "key": ["k_proj", "key", "k"],
    "value": ["v_proj", "value", "v"],
    "attention output": ["o_proj", "out_proj", "dense", "o"],
    "MLP": ["gate_proj", "up_proj", "down_proj", "fc1", "fc2", "c_fc", "dense_h_to_4h", "dense_4h_to_h",
            "w1", "w2", "w3"],
    "embeddings": ["embed_tokens", "wte", "embed_in", "lm_head", "embed_out"],
}


def _unwrap(model):
    """The transformers model inside a peft wrapper (PeftModel -> LoraModel -> the model)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def linear_module_names(model, include_lm_head: bool = False) -> list[str]:
    """Short names of the linear layers (q_proj, c_attn, ...), sorted: what peft's `target_modules` matches."""
    names = set()
    for full_name, module in model.named_modules():
        if type(module).__name__ in LINEAR_CLASSES:
            short = full_name.split(".")[-1]
            if include_lm_head or short not in OUTPUT_HEADS:
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


def role_targets(model, roles: list[str]) -> list[str]:
    """This model's names for the given roles, e.g. ["query", "value"] -> ["q_proj", "v_proj"]."""
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise ValueError(f"unknown role {unknown}; roles are {list(ROLES)}")
    available = set(linear_module_names(model, include_lm_head=True))
    picked = []
    for role in roles:
        found = [n for n in ROLES[role] if n in available] if role in ("MLP", "embeddings") else \
            [next((n for n in ROLES[role] if n in available), None)]
        picked += [n for n in found if n and n not in picked]
    if not picked:
        raise ValueError(f"no layer for {roles} among {sorted(available)}; pass target_modules by name.")
    return picked


def attention_targets(model) -> list[str]:
    """The query and value projections (the LoRA paper's default), or the fused qkv layer, by this model's names."""
    return role_targets(model, ["query", "value"])


def decoder_layers(model) -> torch.nn.ModuleList:
    """The list of transformer blocks, whatever the architecture (and through a peft wrapper)."""
    inner = _unwrap(model)
    for path in ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers", "layers"):
        obj = inner
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, torch.nn.ModuleList):
            return obj
    n = getattr(inner.config, "num_hidden_layers", None)
    for module in inner.modules():  # any ModuleList as long as the model is deep
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise ValueError(f"no list of decoder blocks found in {type(inner).__name__}")


def block_linear_shapes(model) -> dict[str, tuple[int, int]]:
    """(n_out, n_in) of each linear layer of the first decoder block, by short name (a peft-wrapped layer once,
    not its base layer and adapter matrices)."""
    shapes = {}
    for name, module in decoder_layers(model)[0].named_modules():
        if name.endswith("base_layer") or ".lora_" in name:   # inside a peft layer: the layer itself counts
            continue
        kind = type(module).__name__
        if kind == "Conv1D":  # GPT-2 stores its weight as (n_in, n_out)
            shapes.setdefault(name.split(".")[-1], (module.nf, module.weight.shape[0]))
        elif kind in LINEAR_CLASSES:
            shapes.setdefault(name.split(".")[-1], (module.out_features, module.in_features))
    return shapes


def llama_block_shapes(hidden: int, intermediate: int, heads: int, kv_heads: int | None = None,
                       head_dim: int | None = None) -> dict[str, tuple[int, int]]:
    """(n_out, n_in) of each linear layer in one Llama/Qwen2 block, from a config's numbers alone."""
    head_dim = head_dim or hidden // heads
    q, kv = heads * head_dim, (kv_heads or heads) * head_dim
    return {"q_proj": (q, hidden), "k_proj": (kv, hidden), "v_proj": (kv, hidden), "o_proj": (hidden, q),
            "gate_proj": (intermediate, hidden), "up_proj": (intermediate, hidden), "down_proj": (hidden, intermediate)}
