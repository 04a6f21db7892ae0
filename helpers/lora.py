"""LoRA by the numbers: rank checks, parameter counts, low-rank approximation, effective rank, drawings.

LoRA (Hu et al. 2021) freezes a pretrained weight W (n_out x n_in) and learns its update as a product
of two thin matrices:

    W' = W + ΔW,    ΔW = scaling · B · A,    B: n_out x r,  A: r x n_in,  scaling = α / r

so a layer trains r·(n_in + n_out) numbers instead of n_out·n_in. rsLoRA (Kalajdzievski 2023) uses
scaling = α / √r instead. The LoRA layer itself is written in notebook 01, where it is taught.
"""
from __future__ import annotations

import math
import re
import statistics
import time

import torch

from helpers.arch import LINEAR_CLASSES, decoder_layers


# ----------------------------------------------------------------------------------------- checks
def check_rank(r: int, n_out: int, n_in: int) -> int:
    """r must be a whole number with 1 <= r <= min(n_out, n_in); anything else gets a message saying what to do."""
    if not isinstance(r, int) or isinstance(r, bool):
        raise TypeError(f"rank r must be a whole number, got {r!r} ({type(r).__name__}); pass an int such as 8.")
    if r <= 0:
        raise ValueError(f"rank r must be at least 1, got r={r}. A rank-0 update changes nothing; "
                         "typical LoRA ranks are 4 to 64: try r=8.")
    if r > min(n_out, n_in):
        raise ValueError(f"rank r={r} is larger than min(n_out, n_in) = min({n_out}, {n_in}) = {min(n_out, n_in)}: "
                         f"a {n_out}x{n_in} update cannot have a rank above {min(n_out, n_in)}, and then B·A would "
                         f"have more parameters than the full matrix. Pick r <= {min(n_out, n_in)} "
                         "(LoRA pays off when r is much smaller).")
    return r


def scaling_factor(alpha: float, r: int, use_rslora: bool = False) -> float:
    """The factor in front of B·A: α/r (LoRA) or α/√r (rsLoRA)."""
    return alpha / math.sqrt(r) if use_rslora else alpha / r


# -------------------------------------------------------------------------------------- counting
def lora_parameter_count(n_out: int, n_in: int, r: int) -> int:
    """Trainable numbers of one LoRA update: r·(n_in + n_out), against n_out·n_in for the full matrix."""
    return r * (n_in + n_out)


def full_parameter_count(n_out: int, n_in: int) -> int:
    return n_out * n_in


def llama_parameter_count(hidden: int, intermediate: int, layers: int, heads: int, vocab: int,
                          kv_heads: int | None = None, tied_embeddings: bool = False) -> int:
    """All parameters of a Llama model from its config numbers: embeddings, blocks (7 projections and
    2 RMSNorms each), the final norm and the output head unless it is tied to the embeddings
    (`helpers.memory.parameter_count`, the one count, with these names)."""
    from helpers.memory import ModelShape, parameter_count

    return parameter_count(ModelShape(hidden_size=hidden, num_layers=layers, intermediate_size=intermediate,
                                      num_heads=heads, num_kv_heads=kv_heads or heads, vocab_size=vocab,
                                      tie_embeddings=tied_embeddings))


def lora_vs_full_counts(shapes: dict, targets: list[str], r: int, layers: int, model_params: int | None = None) -> dict:
    """Trainable parameters of LoRA with rank r on `targets` in every one of `layers` blocks: against full tuning
    of those same matrices (`targeted_params`, `of_targeted`) and, given the model's whole count, against full
    fine-tuning of the model (`of_model`: the share peft prints)."""
    missing = [t for t in targets if t not in shapes]
    if missing:
        raise ValueError(f"unknown module {missing}; the shapes given are for {sorted(shapes)}.")
    lora = layers * sum(lora_parameter_count(*shapes[t], r) for t in targets)
    full = layers * sum(full_parameter_count(*shapes[t]) for t in targets)
    out = {"r": r, "lora_params": lora, "targeted_params": full, "of_targeted": lora / full}
    if model_params:
        out["of_model"] = lora / model_params
    return out


# ------------------------------------------------------------------------------------- low rank
def singular_values(matrix: torch.Tensor) -> torch.Tensor:
    """Singular values, largest first, in float64 (precise enough to read small ones)."""
    return torch.linalg.svdvals(matrix.detach().double().cpu())


def low_rank_approximation(matrix: torch.Tensor, r: int) -> torch.Tensor:
    """The best rank-r approximation in Frobenius norm (Eckart-Young): keep the r largest singular values."""
    check_rank(r, *matrix.shape)
    u, s, vh = torch.linalg.svd(matrix.detach().double().cpu(), full_matrices=False)
    return ((u[:, :r] * s[:r]) @ vh[:r]).to(matrix.dtype)


def reconstruction_error(matrix: torch.Tensor, ranks: list[int]) -> dict[int, float]:
    """Relative error ||M - M_r||_F / ||M||_F of the best rank-r approximation, for each r.

    By Eckart-Young it equals sqrt(sum of the squared singular values left out / sum of all of them)."""
    s2 = singular_values(matrix) ** 2
    total = s2.sum()
    return {r: float(torch.sqrt(s2[check_rank(r, *matrix.shape):].sum() / total)) for r in ranks}


def energy_curve(matrix: torch.Tensor) -> torch.Tensor:
    """Cumulative fraction of the squared Frobenius norm ("energy") held by the top 1, 2, ... singular values."""
    s2 = singular_values(matrix) ** 2
    return torch.cumsum(s2, 0) / s2.sum()


def effective_rank(delta: torch.Tensor, energy: float = 0.9, curve: torch.Tensor | None = None) -> int:
    """The smallest k whose top-k singular values hold at least `energy` of ΔW's squared Frobenius norm.

    curve: ΔW's `energy_curve`, when it is at hand (its SVD is the whole cost on a large matrix)."""
    if not 0 < energy <= 1:
        raise ValueError(f"energy must be in (0, 1], got {energy}; 0.9 means 90% of the squared Frobenius norm.")
    curve = energy_curve(delta) if curve is None else curve
    if not torch.isfinite(curve).all():
        raise ValueError("ΔW is all zeros (or not finite): nothing changed, so there is no rank to measure.")
    return int(torch.searchsorted(curve, torch.tensor(energy - 1e-12, dtype=curve.dtype)).item()) + 1


# ------------------------------------------------------------------- ΔW of a full fine-tune
def weight_deltas(before: dict[str, torch.Tensor], model) -> dict[str, torch.Tensor]:
    """ΔW = W_after - W_before for every linear layer's weight inside the decoder blocks, any architecture.

    before: a state_dict copied before training (e.g. {k: v.clone() for k, v in model.state_dict().items()})."""
    in_blocks = {id(m) for m in decoder_layers(model).modules()}
    keys = {f"{name}.weight" for name, m in model.named_modules()
            if id(m) in in_blocks and type(m).__name__ in LINEAR_CLASSES}
    return deltas_between(before, model.state_dict(), keys)


def deltas_between(start: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor], keys) -> dict[str, torch.Tensor]:
    """ΔW = tuned - start (fp32, on the CPU) for each of `keys` found in `start`: the one place ΔW is taken."""
    return {k: tuned[k].detach().float().cpu() - start[k].float().cpu() for k in start if k in keys}


def module_type(name: str) -> str:
    """'model.layers.3.self_attn.q_proj.weight' -> 'q_proj'."""
    return name.split(".")[-2]


def effective_ranks(deltas: dict[str, torch.Tensor], energy: float = 0.9,
                    curves: dict[str, torch.Tensor] | None = None) -> list[dict]:
    """One row per matrix: its module type, layer, shape, effective rank and that rank as a fraction of full rank.

    curves: each matrix's `energy_curve` by name, when computed already (one SVD per matrix, not two)."""
    rows = []
    for name, delta in deltas.items():
        k = effective_rank(delta, energy, (curves or {}).get(name))
        layer = int(re.search(r"\.(\d+)\.", name).group(1))  # the block's index in the name
        rows.append({"matrix": name, "module": module_type(name), "layer": layer,
                     "shape": tuple(delta.shape), "full_rank": min(delta.shape), "effective_rank": k,
                     "fraction_of_full": k / min(delta.shape)})
    return rows


# ------------------------------------------------------------------------------ toy experiments
def toy_problem(n: int = 64, k: int = 4, samples: int = 512, seed: int = 0):
    """A frozen random W (n x n), a target update of known rank k, inputs X and targets Y = X (W + ΔW*)ᵀ."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, n, generator=g) / math.sqrt(n)
    u, _ = torch.linalg.qr(torch.randn(n, k, generator=g))
    v, _ = torch.linalg.qr(torch.randn(n, k, generator=g))
    target_delta = u @ v.T  # rank exactly k, all k singular values equal to 1
    x = torch.randn(samples, n, generator=g)
    return w, target_delta, x, x @ (w + target_delta).T


# -------------------------------------------------------------------------------------- timing
@torch.no_grad()
def median_forward_seconds(models: dict, inputs: dict, repeats: int = 15, warmup: int = 2) -> dict[str, float]:
    """Median wall time of one forward pass per model; the models take turns so that load changes hit all alike."""
    times = {name: [] for name in models}
    for i in range(warmup + repeats):
        for name, model in models.items():
            start = time.perf_counter()
            model(**inputs)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


# ------------------------------------------------------------------------------------- drawing
def lora_matrices(n: int, r: int, alpha: float, seed: int = 0) -> dict[str, torch.Tensor]:
    """Small random W (n x n), B (n x r), A (r x n) as if after training (B no longer zero), ΔW and W'."""
    check_rank(r, n, n)
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, n, generator=g)
    b, a = torch.randn(n, n, generator=g)[:, :r], torch.randn(n, n, generator=g)[:r]  # nested in r: r+1 adds a column/row
    delta = scaling_factor(alpha, r) * b @ a
    return {"W": w, "B": b, "A": a, "ΔW = (α/r)·B·A": delta, "W' = W + ΔW": w + delta}


def draw_lora(matrices: dict[str, torch.Tensor], title: str = ""):
    """Heatmaps side by side, drawn to scale (B is n x r, A is r x n), one shared colour scale."""
    import matplotlib.pyplot as plt

    widths = [m.shape[1] for m in matrices.values()]
    fig, axes = plt.subplots(1, len(matrices), figsize=(2 + 0.25 * sum(widths), 2.8),
                             gridspec_kw={"width_ratios": widths})
    vmax = max(float(m.abs().max()) for m in matrices.values())
    for ax, (name, m) in zip(axes, matrices.items()):
        ax.imshow(m.numpy(), cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        ax.set_title(f"{name}\n{tuple(m.shape)}, rank {int(torch.linalg.matrix_rank(m))}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)

    return fig
