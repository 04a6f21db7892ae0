"""4-bit quantization next to bitsandbytes: the FP4 and int4 codebooks, bitsandbytes' own round trip, and the bytes
it stores, counted. NF4 and blockwise quantization themselves are written in notebook 04, where they are taught.

Blockwise absmax quantization (QLoRA, Dettmers et al. 2023): cut the flattened weight into blocks of
64 values, divide each block by its absolute maximum (the block's *absmax*, stored in fp32), round
each scaled value in [-1, 1] to the nearest of 16 levels (the *codebook*), store the 4-bit index.
Dequantization is codebook[index] * absmax. Double quantization stores the absmaxes themselves in
8 bits (blocks of 256 absmaxes, minus their mean, with one fp32 scale per 256).
"""
from __future__ import annotations

import torch


def require_bitsandbytes():
    """bitsandbytes, or a clear error saying how to install it."""
    try:
        import bitsandbytes
    except ImportError as err:
        raise ImportError("This step needs bitsandbytes (4-bit layers and the reference NF4 kernels): "
                          "pip install 'bitsandbytes>=0.46' (on Colab too; it runs on CPU and CUDA).") from err
    return bitsandbytes


def fp4_codebook() -> torch.Tensor:
    """bitsandbytes' FP4 (1 sign, 2 exponent, 1 mantissa bit) levels, sorted, in [-1, 1].

    Magnitudes 2^e * (1 + m/2) for exponent e = 1..3 and mantissa m = 0, 1 (2, 3, 4, 6, 8, 12),
    the subnormals 0 and 0.0625, divided by 12. +0 and -0 are one level, so 15 distinct values.
    """
    mags = [0.0, 0.0625] + [2.0 ** e * (1 + m / 2) for e in (1, 2, 3) for m in (0, 1)]
    levels = torch.tensor(sorted({s * v for v in mags for s in (1, -1)}))
    return (levels / levels.abs().max()).float()


def int4_codebook() -> torch.Tensor:
    """Symmetric absmax int4: the integers -7..7 divided by 7 (15 evenly spaced levels, 0 exact)."""
    return torch.arange(-7, 8, dtype=torch.float32) / 7


def pack_nibbles(indices: torch.Tensor) -> torch.Tensor:
    """Two 4-bit indices per byte, the first in the high nibble (bitsandbytes' layout). Shape (ceil(n/2), 1)."""
    idx = torch.nn.functional.pad(indices.reshape(-1), (0, indices.numel() % 2))
    return ((idx[0::2] << 4) | idx[1::2]).to(torch.uint8).unsqueeze(1)


def bnb_roundtrip(x: torch.Tensor, quant_type: str = "nf4", double_quant: bool = False, blocksize: int = 64):
    """(packed uint8, quant_state, dequantized) by bitsandbytes.functional on the same tensor."""
    F = require_bitsandbytes().functional
    packed, state = F.quantize_4bit(x.float().contiguous(), blocksize=blocksize, quant_type=quant_type,
                                    compress_statistics=double_quant)
    return packed, state, F.dequantize_4bit(packed, state)


def quant_error(x: torch.Tensor, x_hat: torch.Tensor) -> dict[str, float]:
    """Mean squared and mean absolute error of a reconstruction."""
    diff = (x.float() - x_hat.float()).reshape(-1)
    return {"mse": diff.pow(2).mean().item(), "mae": diff.abs().mean().item()}


def bits_per_param_formula(bits: int = 4, blocksize: int = 64, double_quant: bool = True,
                           nested_blocksize: int = 256) -> float:
    """The QLoRA paper's count: 4 + 32/64 = 4.5 without double quantization,
    4 + 8/64 + 32/(64*256) ≈ 4.127 with it (8-bit absmax, one fp32 scale per 256 absmaxes)."""
    if not double_quant:
        return bits + 32 / blocksize
    return bits + 8 / blocksize + 32 / (blocksize * nested_blocksize)


def stored_bytes(packed: torch.Tensor, quant_state) -> dict[str, int]:
    """Bytes bitsandbytes keeps for one 4-bit weight, by part.

    per-parameter parts: packed_weight (n/2 uint8), absmax (fp32 per block, or uint8 with double quant),
    nested_absmax (fp32 per 256 absmaxes). constants: the 16-level code (fp32), with double quant also the
    256-entry 8-bit code used for the absmaxes (fp32) and the fp32 offset (the absmaxes' mean).
    """
    if getattr(quant_state, "packing_format_for_cpu", False):
        raise RuntimeError("This layer was repacked for CPU inference (bitsandbytes does that on the first "
                           "forward pass on CPUs with AVX512-BF16, and drops double quantization). Measure "
                           "right after loading, or call keep_bnb_layout(model) before running it.")
    nbytes = lambda t: t.numel() * t.element_size()  # noqa: E731
    out = {"params": int(torch.Size(quant_state.shape).numel()), "packed_weight": nbytes(packed),
           "absmax": nbytes(quant_state.absmax), "nested_absmax": 0, "constants": nbytes(quant_state.code)}
    if quant_state.nested:
        out["nested_absmax"] = nbytes(quant_state.state2.absmax)
        out["constants"] += nbytes(quant_state.state2.code) + nbytes(quant_state.offset)
    return out


def bits_per_param(record: dict[str, int], include_constants: bool = False) -> float:
    """8 * stored bytes / parameters for a `stored_bytes` record (or a sum of them)."""
    stored = record["packed_weight"] + record["absmax"] + record["nested_absmax"]
    return 8 * (stored + (record["constants"] if include_constants else 0)) / record["params"]


def quantized_layers(model) -> dict[str, torch.nn.Module]:
    """Full name -> bitsandbytes Linear4bit layer."""
    bnb = require_bitsandbytes()
    return {name: m for name, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)}


def layer_bytes(model) -> dict[str, dict[str, int]]:
    """`stored_bytes` of every 4-bit layer of a model."""
    return {name: stored_bytes(m.weight.data, m.weight.quant_state) for name, m in quantized_layers(model).items()}


def total_bytes(records: dict[str, dict[str, int]]) -> dict[str, int]:
    """Sum of `stored_bytes` records, part by part."""
    keys = next(iter(records.values())).keys()
    return {k: sum(r[k] for r in records.values()) for k in keys}


def keep_bnb_layout(model) -> None:
    """Keep bitsandbytes' standard 4-bit layout during CPU inference.

    On CPUs with AVX512-BF16, Linear4bit repacks its weight on the first no-grad forward for a bf16
    kernel: it undoes double quantization and, in bitsandbytes 0.50, fails on layers whose output size
    is not a multiple of 32 (688 here). The standard path dequantizes and multiplies exactly.
    """
    for module in quantized_layers(model).values():
        module.support_avx512bf16_for_cpu = False


def model_bytes(model) -> int:
    """Parameters and buffers (tied tensors once) plus 4-bit quantization state: a model's weight memory."""
    from helpers.memory import module_bytes

    total = module_bytes(model)
    try:
        records = layer_bytes(model)
    except ImportError:
        records = {}
    return total + sum(r["absmax"] + r["nested_absmax"] + r["constants"] for r in records.values())


def _dequantize_4bit_reference(A, absmax, blocksize, quant_type, shape, dtype):
    """bitsandbytes' dequantize_4bit op, in plain torch: unpack nibbles, look up the code, scale by block."""
    A = A.view(torch.uint8).reshape(-1)
    indices = torch.stack([A >> 4, A & 0xF], dim=1).reshape(-1)
    code = require_bitsandbytes().functional.get_4bit_type(quant_type, device=A.device)
    n = torch.Size(shape).numel()
    out = code[indices.long()][:n] * absmax.float().repeat_interleave(blocksize)[:n]
    return out.reshape(shape).to(dtype)


def patch_cpu_dequantize() -> None:
    """Route bitsandbytes' CPU dequantize_4bit through the plain-torch reference above.

    bitsandbytes 0.50's native CPU kernel restarts the blocks at every row, which is wrong when a row's
    length is not a multiple of the block size (down_proj here: rows of 688 = 10.75 blocks of 64), while
    quantize_4bit blocks the flattened tensor. CUDA is not affected. Measured in tests/test_quant.py.
    """
    import warnings

    require_bitsandbytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.library.register_kernel("bitsandbytes::dequantize_4bit", "cpu", _dequantize_4bit_reference)
