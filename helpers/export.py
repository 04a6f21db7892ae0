"""Taking a fine-tuned model elsewhere: a merged safetensors folder, and GGUF for llama.cpp-style runtimes.

    export_merged(peft_model, tokenizer, "outputs/02/merged")         # plain transformers folder
    save_gguf(merged_model, tokenizer, "outputs/02/model-f16.gguf")  # llama.cpp, Ollama, LM Studio
    save_gguf(merged_model, tokenizer, "outputs/02/model-q8_0.gguf", "Q8_0")

GGUF is written with the `gguf` package (the library llama.cpp's own converter uses), for Llama-architecture
models (Llama, SmolLM2, the course's tiny model; not Qwen2, whose q/k/v biases this writer does not map).
What llama.cpp's converter does and this one does too: tensor names in GGUF's scheme, the rotary halves of
q and k permuted into GGUF's interleaved layout, 1-D tensors kept in F32, the tokenizer's vocabulary and merges
and chat template in the metadata. transformers reads the file back with `from_pretrained(folder,
gguf_file=...)`, which is how tests/test_export.py checks a round trip.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from unittest import mock

import numpy as np
import torch

QUANT_TYPES = ("F16", "Q8_0")


def _refuse_overwrite(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it (nothing is overwritten unasked).")


def export_merged(model, tokenizer, out_dir: str | Path, overwrite: bool = False):
    """A plain transformers folder (safetensors) with every LoRA adapter merged into the weights.

    Works on a copy, so a peft model stays as it was. Returns the merged model.
    """
    import copy

    out_dir = Path(out_dir)
    _refuse_overwrite(out_dir, overwrite)
    merged = copy.deepcopy(model).merge_and_unload() if hasattr(model, "merge_and_unload") else model
    merged.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return merged


def _permute_for_gguf(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """HF's rotary layout (the two halves of each head) to GGUF's (interleaved pairs): the inverse of
    transformers' `_reverse_permute_weights`."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


GGUF_NAMES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
              "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
              "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}


def _check_llama(cfg) -> None:
    if cfg.model_type != "llama" or getattr(cfg, "attention_bias", False) or getattr(cfg, "mlp_bias", False):
        raise ValueError(f"save_gguf writes Llama-architecture models without biases; this is {cfg.model_type!r}. "
                         "For other architectures use llama.cpp's convert_hf_to_gguf.py on the merged folder.")


def gguf_tensors(model) -> dict[str, torch.Tensor]:
    """The model's weights under GGUF's names (q and k permuted), fp32 on CPU."""
    cfg = model.config
    _check_llama(cfg)
    out = {}
    for name, w in model.state_dict().items():
        w = w.detach().float().cpu()
        if name == "model.embed_tokens.weight":
            out["token_embd.weight"] = w
        elif name == "model.norm.weight":
            out["output_norm.weight"] = w
        elif name == "lm_head.weight":
            if not cfg.tie_word_embeddings:
                out["output.weight"] = w
        else:
            _, _, layer, rest = name.split(".", 3)           # model.layers.<i>.<module>.weight
            key = GGUF_NAMES[rest.rsplit(".", 1)[0]]
            if key == "attn_q":
                w = _permute_for_gguf(w, cfg.num_attention_heads)
            elif key == "attn_k":
                w = _permute_for_gguf(w, cfg.num_key_value_heads)
            out[f"blk.{layer}.{key}.weight"] = w
    return out


def _tokenizer_metadata(writer, tokenizer, pre: str) -> None:
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    if state["model"]["type"] != "BPE":
        raise ValueError("save_gguf writes byte-level BPE tokenizers (GPT-2 style); this one is "
                         f"{state['model']['type']}.")
    vocab = tokenizer.get_vocab()
    tokens = [None] * len(vocab)
    for token, i in vocab.items():
        tokens[i] = token
    special = set(tokenizer.all_special_ids)
    merges = [" ".join(m) if isinstance(m, list) else m for m in state["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types([3 if i in special else 1 for i in range(len(tokens))])  # 3: control, 1: normal
    writer.add_token_merges(merges)
    for kind in ("bos", "eos", "pad", "unk"):
        token_id = getattr(tokenizer, f"{kind}_token_id")
        if token_id is not None:
            getattr(writer, {"pad": "add_pad_token_id", "unk": "add_unk_token_id"}.get(
                kind, f"add_{kind}_token_id"))(token_id)
    writer.add_add_bos_token(False)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def save_gguf(model, tokenizer, path: str | Path, quant_type: str = "F16", name: str = "fine-tuned",
              pre: str | None = None, overwrite: bool = False) -> Path:
    """Write a (merged) Llama-architecture model and its tokenizer as one GGUF file; returns its path.

    quant_type: "F16" (half the bytes of fp32) or "Q8_0" (8-bit blocks of 32 with one fp16 scale: about
    a quarter). 1-D tensors stay F32; a matrix whose rows are not a multiple of 32 stays F16 in Q8_0.
    pre: llama.cpp's pre-tokenizer name; by default "smollm" for SmolLM2 tokenizers, else "gpt2" (the tiny model's).
    The file is written to a temporary name and renamed, so a half-written file never has the final name.
    """
    import gguf

    if quant_type not in QUANT_TYPES:
        raise ValueError(f"quant_type {quant_type!r} is not supported here; choose one of {QUANT_TYPES}.")
    if hasattr(model, "merge_and_unload"):
        raise ValueError("merge the adapter first (export_merged or merge_and_unload): GGUF holds plain weights.")
    path = Path(path)
    _refuse_overwrite(path, overwrite)
    cfg = model.config
    _check_llama(cfg)
    pre = pre or ("smollm" if "smollm" in str(tokenizer.name_or_path).lower() else "gpt2")
    tmp = path.with_name(path.name + ".partial")
    writer = gguf.GGUFWriter(str(tmp), "llama")
    writer.add_name(name)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_dimension_count(getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)
    writer.add_rope_freq_base(cfg.rope_parameters["rope_theta"] if getattr(cfg, "rope_parameters", None)
                              else cfg.rope_theta)
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(cfg.vocab_size)
    file_type = {"F16": gguf.LlamaFileType.MOSTLY_F16, "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[quant_type]
    writer.add_file_type(file_type)
    _tokenizer_metadata(writer, tokenizer, pre)
    for tname, w in gguf_tensors(model).items():
        data = w.numpy()
        if data.ndim == 1:
            writer.add_tensor(tname, data.astype(np.float32))
        elif quant_type == "Q8_0" and data.shape[-1] % 32 == 0:
            qtype = gguf.GGMLQuantizationType.Q8_0
            writer.add_tensor(tname, gguf.quants.quantize(data, qtype), raw_dtype=qtype)  # shape from the bytes
        else:
            writer.add_tensor(tname, data.astype(np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, path)
    return path


def load_gguf(path: str | Path):
    """(model, tokenizer) read back by transformers from a GGUF file (dequantized to fp32)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    path = Path(path)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    # transformers draws a per-tensor progress bar that a notebook would store as "0/38": not shown
    with mock.patch.object(gguf_utils, "tqdm", lambda tensors, **_: tensors):
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    return model.eval(), tokenizer
