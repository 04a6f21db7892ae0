"""How much memory fine-tuning needs: an estimator, a "will it fit?" table, and the measurements that check it.

Bytes, not GB, everywhere inside; `gib(x)` for display. The estimator counts, for a Llama/Qwen2-shaped
decoder (embeddings, L x [RMSNorm, q/k/v/o, RMSNorm, gate/up/down], final norm, lm_head):

    weights     every parameter at its storage dtype (QLoRA: block linear layers in NF4 + absmax)
    gradients   one per trainable parameter, in its dtype
    optimizer   torch AdamW: exp_avg + exp_avg_sq in the parameter's dtype + a 4-byte `step` per tensor;
                bitsandbytes 8-bit AdamW: two uint8 moments + fp32 absmax per 256 (tensors < 4096 stay fp32);
                SGD without momentum: nothing
    activations what autograd saves for backward, per token (see `layer_activation_bytes`), plus the
                loss on the logits (12 bytes x vocab per token at the start of backward)

Parameter and optimizer-state bytes are exact (tests check them against a real model and optimizer).
Activations and the peak are a model of what PyTorch keeps (flash SDPA, no dropout, no padding mask);
`training_peak` measures them (live tensor bytes on a CPU, torch.cuda.max_memory_allocated on a GPU).
"""
from __future__ import annotations

import time
import weakref
from dataclasses import dataclass

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from helpers.arch import LLAMA_LINEARS as LINEARS
from helpers.arch import llama_block_shapes

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
OPTIMIZERS = ("adamw", "adamw_8bit", "sgd")
METHODS = ("full", "lora", "qlora")


@dataclass
class ModelShape:
    """The numbers of a decoder-only transformer's config that decide its memory."""
    hidden_size: int
    num_layers: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    vocab_size: int
    tie_embeddings: bool
    head_dim: int | None = None
    qkv_bias: bool = False  # Qwen2 has biases on q, k, v

    @property
    def hd(self) -> int:
        return self.head_dim or self.hidden_size // self.num_heads


# Published config.json numbers (no download): class name -> config.
PUBLISHED = {
    "0.5B (Qwen2.5-0.5B)": ModelShape(896, 24, 4864, 14, 2, 151936, True, qkv_bias=True),
    "1.5B (Qwen2.5-1.5B)": ModelShape(1536, 28, 8960, 12, 2, 151936, True, qkv_bias=True),
    "3B (Qwen2.5-3B)": ModelShape(2048, 36, 11008, 16, 2, 151936, True, qkv_bias=True),
    "7B (Qwen2.5-7B)": ModelShape(3584, 28, 18944, 28, 4, 152064, False, qkv_bias=True),
    "13B (Llama-2-13B)": ModelShape(5120, 40, 13824, 40, 40, 32000, False),
    "70B (Llama-3.1-70B)": ModelShape(8192, 80, 28672, 64, 8, 128256, False),
}
# Usable memory of common cards, bytes (nvidia-smi's totals).
GPUS = {"16 GB (Colab T4)": 15 * 2**30, "24 GB (RTX 4090 / L4 / A10)": 24 * 2**30, "80 GB (A100 / H100)": 80 * 2**30}


def gib(n_bytes: float) -> float:
    return round(n_bytes / 2**30, 2)


def model_shape(config) -> ModelShape:
    """A ModelShape from a transformers config, a dict of the same names, or a ModelShape."""
    if isinstance(config, ModelShape):
        return config
    get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
    model_type = get("model_type", "")
    return ModelShape(hidden_size=get("hidden_size"), num_layers=get("num_hidden_layers", get("num_layers")),
                      intermediate_size=get("intermediate_size"), num_heads=get("num_attention_heads", get("num_heads")),
                      num_kv_heads=get("num_key_value_heads", get("num_kv_heads")) or get("num_attention_heads"),
                      vocab_size=get("vocab_size"), tie_embeddings=bool(get("tie_word_embeddings", get("tie_embeddings", False))),
                      head_dim=get("head_dim"), qkv_bias=bool(get("qkv_bias", model_type == "qwen2" or get("attention_bias", False))))


def linear_shapes(shape: ModelShape) -> dict[str, tuple[int, int]]:
    """(n_out, n_in) of each linear layer of one block."""
    return llama_block_shapes(shape.hidden_size, shape.intermediate_size, shape.num_heads, shape.num_kv_heads, shape.hd)


def parameter_tensors(shape: ModelShape) -> dict[str, list[int]]:
    """Element counts of every parameter tensor, grouped: 'linear' (block weights), 'other' (the rest)."""
    linear, other = [], [shape.vocab_size * shape.hidden_size]  # embed_tokens
    for _ in range(shape.num_layers):
        for name, (n_out, n_in) in linear_shapes(shape).items():
            linear.append(n_in * n_out)
            if shape.qkv_bias and name in ("q_proj", "k_proj", "v_proj"):
                other.append(n_out)
        other += [shape.hidden_size, shape.hidden_size]  # the two RMSNorm weights
    other.append(shape.hidden_size)  # final norm
    if not shape.tie_embeddings:
        other.append(shape.vocab_size * shape.hidden_size)  # lm_head
    return {"linear": linear, "other": other}


def parameter_count(config) -> int:
    tensors = parameter_tensors(model_shape(config))
    return sum(tensors["linear"]) + sum(tensors["other"])


def lora_tensors(config, r: int = 16, target_modules="all-linear") -> list[int]:
    """Element counts of the LoRA tensors (lora_A: r x in, lora_B: out x r) for every targeted layer."""
    shape = model_shape(config)
    targets = LINEARS if target_modules == "all-linear" else target_modules
    return [n for _ in range(shape.num_layers) for name, (n_out, n_in) in linear_shapes(shape).items()
            if name in targets for n in (r * n_in, n_out * r)]


def nf4_bytes(numel: int, double_quant: bool = True, blocksize: int = 64) -> float:
    """Bytes of one NF4 weight as bitsandbytes stores it: 4 bits each, an absmax per block (fp32, or with
    double quantization uint8 + an fp32 scale per 256 blocks) and the constants (the 16-level code; with
    double quantization also the 256-entry code of the absmaxes and their fp32 mean)."""
    blocks = -(-numel // blocksize)
    if double_quant:
        return numel / 2 + blocks + 4 * -(-blocks // 256) + 16 * 4 + 256 * 4 + 4
    return numel / 2 + 4 * blocks + 16 * 4


def optimizer_state_bytes(tensors: list[int], param_bytes: int, optimizer: str = "adamw") -> int:
    """State bytes after the first step for parameter tensors of the given element counts."""
    if optimizer == "adamw":  # exp_avg, exp_avg_sq like the parameter, step: a float32 scalar tensor
        return sum(2 * n * param_bytes + 4 for n in tensors)
    if optimizer == "adamw_8bit":
        return sum(2 * n + 8 * -(-n // 256) if n >= 4096 else 8 * n for n in tensors)
    if optimizer == "sgd":
        return 0
    raise ValueError(f"optimizer {optimizer!r} unknown; pick one of {OPTIMIZERS}")


def layer_activation_bytes(shape: ModelShape, a: int, method: str, targets=LINEARS, r: int = 16,
                           adapter_bytes: int = 4) -> float:
    """Bytes autograd keeps per token for one decoder block; a = bytes of the compute dtype."""
    h, i = shape.hidden_size, shape.intermediate_size
    q, kv = shape.num_heads * shape.hd, shape.num_kv_heads * shape.hd
    total = (2 * (4 * h + 4)              # two RMSNorms: fp32 input + fp32 1/rms per token
             + a * (2 * q + 2 * kv)       # SDPA: q, k, v and its output (never the s x s scores)
             + 4 * shape.num_heads        # SDPA: fp32 logsumexp per head
             + 3 * a * i)                 # SiLU-gated MLP: gate, up, silu(gate)
    if method == "full":                  # every weight trains: each linear layer's input is kept
        return total + 2 * a * h + 2 * a * h + a * i   # normed copies, norm outputs, MLP product
    inputs = {"q_proj": ("norm1", h), "k_proj": ("norm1", h), "v_proj": ("norm1", h),
              "o_proj": ("attn", q), "gate_proj": ("norm2", h), "up_proj": ("norm2", h),
              "down_proj": ("product", i)}
    kept = set()
    for name in targets:                  # LoRA: B needs A's r-wide output, A needs the input
        source, width = inputs[name]
        total += adapter_bytes * r
        if a != adapter_bytes:            # input cast to the adapter's dtype: a copy per layer
            total += adapter_bytes * width
        elif source not in kept and source != "attn":   # shared by the layers reading it;
            kept.add(source)                             # SDPA's output is already counted
            total += a * width
    return total


def estimate_memory(config, method: str = "lora", dtype: str = "bfloat16", batch_size: int = 1, seq_len: int = 512,
                    optimizer: str = "adamw", gradient_checkpointing: bool = False, lora_r: int = 16,
                    target_modules="all-linear", foreach: bool = True) -> dict[str, float]:
    """Bytes of each part of a training step and the peak, for method 'full', 'lora' or 'qlora'.

    dtype: how the model is stored and computed ('float32', 'bfloat16', 'float16'); LoRA adapters are fp32
    (peft's default). foreach: torch AdamW's multi-tensor step on CUDA needs one extra copy of the states.
    """
    if method not in METHODS:
        raise ValueError(f"method {method!r} unknown; pick one of {METHODS}")
    shape, a = model_shape(config), DTYPE_BYTES[dtype]
    tensors = parameter_tensors(shape)
    n_linear, n_other = sum(tensors["linear"]), sum(tensors["other"])
    targets = LINEARS if target_modules == "all-linear" else tuple(target_modules)
    if method == "full":
        trainable, train_bytes = tensors["linear"] + tensors["other"], a
        weights = (n_linear + n_other) * a
    else:
        trainable, train_bytes = lora_tensors(shape, lora_r, targets), 4
        base_linear = sum(nf4_bytes(n) for n in tensors["linear"]) if method == "qlora" else n_linear * a
        # prepare_model_for_kbit_training (which QLoRA needs) casts the unquantized rest to fp32
        weights = base_linear + n_other * (4 if method == "qlora" else a) + sum(trainable) * 4
    states = optimizer_state_bytes(trainable, train_bytes, optimizer)
    tokens = batch_size * seq_len
    per_layer = layer_activation_bytes(shape, a, "full" if method == "full" else "lora", targets, lora_r)
    final_norm = tokens * (4 * shape.hidden_size + (2 * a * shape.hidden_size if method == "full" else 0))
    # loss: log_softmax output (fp32) kept; at the start of backward also its gradient and nll's (12 V per token)
    logits = tokens * 12 * shape.vocab_size
    if method == "full":  # then lm_head's weight gradient arrives while every activation is still alive
        logits = max(logits, tokens * a * shape.vocab_size + shape.vocab_size * shape.hidden_size * a)
    gradients = sum(trainable) * train_bytes
    if gradient_checkpointing:
        # Each block's input is kept; backward first frees the loss's tensors, then recomputes one block
        # at a time, with the gradient flowing in and out of it (2 a h per token), while the gradients of
        # the blocks above already exist (all of them, at worst).
        kept = tokens * shape.num_layers * a * shape.hidden_size
        block = tokens * (per_layer + 2 * a * shape.hidden_size)
        activations = kept + max(final_norm + logits, block)
        forward_backward = weights + states + kept + max(final_norm + logits, block + gradients)
    else:
        activations = tokens * shape.num_layers * per_layer + final_norm + logits
        forward_backward = weights + states + activations
    # AdamW's update needs temporaries: the multi-tensor (foreach) step one copy of all the states' size, the
    # single-tensor step two of the largest tensor (sqrt(exp_avg_sq), then its quotient)
    step_extra = (sum(trainable) if foreach else 2 * max(trainable)) * train_bytes if optimizer == "adamw" else 0
    optimizer_step = weights + states + gradients + step_extra
    return {"weights": weights, "gradients": gradients, "optimizer_states": states, "activations": activations,
            "peak": max(forward_backward, optimizer_step), "trainable_parameters": sum(trainable),
            "peak_phase": "backward" if forward_backward >= optimizer_step else "optimizer step",
            "parameters": n_linear + n_other + (sum(trainable) if method != "full" else 0)}


def will_it_fit(models: dict | None = None, gpus: dict | None = None, batch_size: int = 4, seq_len: int = 512,
                gradient_checkpointing: bool = True, headroom: float = 0.9) -> list[dict]:
    """Rows (model, method, estimated GiB, and for each card 'yes'/'no'): fits when peak <= headroom x card.

    Methods: full fine-tuning with fp32 weights and AdamW (16 bytes per parameter before activations),
    LoRA r=16 on a bf16 base, QLoRA r=16 on an NF4 base; both adapters with AdamW.
    """
    settings = {"full (fp32, AdamW)": dict(method="full", dtype="float32"),
                "LoRA (bf16 base)": dict(method="lora", dtype="bfloat16"),
                "QLoRA (NF4 base)": dict(method="qlora", dtype="bfloat16")}
    rows = []
    for model_name, shape in (models or PUBLISHED).items():
        for method, kw in settings.items():
            est = estimate_memory(shape, batch_size=batch_size, seq_len=seq_len,
                                  gradient_checkpointing=gradient_checkpointing, **kw)
            row = {"model": model_name, "method": method, "params (B)": round(est["parameters"] / 1e9, 2),
                   "peak GiB": gib(est["peak"])}
            row.update({gpu: "yes" if est["peak"] <= headroom * cap else "no" for gpu, cap in (gpus or GPUS).items()})
            rows.append(row)
    return rows


# ---- measurements -------------------------------------------------------------------------------

def tensor_bytes(tensors) -> int:
    """Bytes of the tensors' elements (numel x element size), each storage counted once (tied weights)."""
    seen, total = set(), 0
    for t in tensors:
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), t.numel())
        if key not in seen:
            seen.add(key)
            total += t.numel() * t.element_size()
    return total


def module_bytes(module: torch.nn.Module) -> int:
    """Bytes of all parameters and buffers of a model (what it holds in memory, activations aside)."""
    return tensor_bytes(list(module.parameters()) + list(module.buffers()))


def quant_state_tensors(model) -> list[torch.Tensor]:
    """The tensors a bitsandbytes 4-bit weight keeps beside its packed data (absmax, codes, offset): not
    parameters or buffers, so `model.parameters()` misses them. Empty for an unquantized model."""
    out = []
    for module in model.modules():
        state = getattr(getattr(module, "weight", None), "quant_state", None)
        for s in (state, getattr(state, "state2", None)):
            if s is not None:
                out += [t for t in (s.absmax, s.code, getattr(s, "offset", None)) if torch.is_tensor(t)]
    return out


def measured_training_bytes(model, optimizer) -> dict[str, int]:
    """Exact bytes held by the weights (parameters, each shared tensor once, and 4-bit quantization state),
    the gradients and the optimizer's state tensors."""
    params = {p.data_ptr(): p for p in model.parameters()}.values()
    states = [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    return {"weights": tensor_bytes(params) + tensor_bytes(quant_state_tensors(model)),
            "gradients": tensor_bytes(p.grad for p in params if p.grad is not None),
            "optimizer_states": tensor_bytes(states),
            "optimizer_tensors": len(states)}


class PeakTensorBytes(TorchDispatchMode):
    """The peak of the bytes held by live tensors during a block, on any device (a CPU has no memory counter).

        with PeakTensorBytes(model, optimizer) as peak:
            one_training_step(model, optimizer)
        peak.peak_bytes

    Counts every tensor storage that exists when the block starts (the model's parameters and buffers, the
    gradients, the optimizer's state) and every storage an operation creates inside it, each once, until
    it is freed. That is what an allocator must hold, without its caching and fragmentation: the quantity
    the estimator predicts (torch.cuda.max_memory_allocated is the same count on a GPU, plus its rounding).
    """

    def __init__(self, model=None, optimizer=None):
        super().__init__()
        self.current = self.peak_bytes = 0
        self._refs = {}
        self._start = []
        if model is not None:
            self._start = [*model.parameters(), *model.buffers(), *quant_state_tensors(model)]
        if optimizer is not None:
            self._start += [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            self._start += [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)]

    def _track(self, t: torch.Tensor) -> None:
        if t.is_meta or not t.untyped_storage().nbytes():
            return
        storage = t.untyped_storage()
        key = (storage.data_ptr(), t.device)
        if key in self._refs:
            return
        nbytes = storage.nbytes()
        self.current += nbytes
        self.peak_bytes = max(self.peak_bytes, self.current)
        self._refs[key] = weakref.ref(storage, lambda _, key=key, n=nbytes: self._free(key, n))

    def _free(self, key, nbytes: int) -> None:
        if self._refs.pop(key, None) is not None:
            self.current -= nbytes

    def __enter__(self):
        for t in self._start:
            self._track(t.data if isinstance(t, torch.nn.Parameter) else t)
        return super().__enter__()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._track(t)
        return out


def one_training_step(model, optimizer, batch_size: int = 2, seq_len: int = 32, seed: int = 0) -> float:
    """A forward/backward/step on random token ids (memory does not depend on their values); returns the loss."""
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    ids = torch.randint(0, model.config.vocab_size, (batch_size, seq_len), generator=g).to(device)
    model.train()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    optimizer.step()
    return loss.item()


def train_tokens_per_second(model, optimizer, batch_size: int = 8, seq_len: int = 128, steps: int = 5) -> float:
    """Training throughput (tokens through forward+backward+step per second), after one warm-up step."""
    one_training_step(model, optimizer, batch_size, seq_len)
    sync = torch.cuda.synchronize if next(model.parameters()).is_cuda else (lambda: None)
    sync()
    start = time.perf_counter()
    for step in range(steps):
        optimizer.zero_grad(set_to_none=True)
        one_training_step(model, optimizer, batch_size, seq_len, seed=step + 1)
    sync()
    return batch_size * seq_len * steps / (time.perf_counter() - start)


@torch.no_grad()
def generate_tokens_per_second(model, tokenizer, prompts: list[str], max_new_tokens: int = 32) -> float:
    """Greedy generation throughput: new tokens per second for one batch of prompts (min_new_tokens = max)."""
    model.eval()
    device = next(model.parameters()).device
    enc = tokenizer(prompts, return_tensors="pt", padding=True).to(device)
    model.generate(**enc, max_new_tokens=2, min_new_tokens=2, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    start = time.perf_counter()
    out = model.generate(**enc, max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (out.shape[1] - enc["input_ids"].shape[1]) * len(prompts) / (time.perf_counter() - start)


def training_peak(model, optimizer, batch_size: int = 2, seq_len: int = 32, seed: int = 0) -> dict:
    """Peak bytes of one training step after a first one (so the optimizer state exists), as the estimator
    counts them: on a GPU torch.cuda.max_memory_allocated, elsewhere `PeakTensorBytes`."""
    one_training_step(model, optimizer, batch_size, seq_len, seed=seed)
    optimizer.zero_grad(set_to_none=True)
    device = next(model.parameters()).device
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        one_training_step(model, optimizer, batch_size, seq_len, seed=seed + 1)
        return {"peak": torch.cuda.max_memory_allocated(), "counter": "torch.cuda.max_memory_allocated"}
    with PeakTensorBytes(model, optimizer) as peak:
        one_training_step(model, optimizer, batch_size, seq_len, seed=seed + 1)
    return {"peak": peak.peak_bytes, "counter": "PeakTensorBytes (live tensor storage)"}
