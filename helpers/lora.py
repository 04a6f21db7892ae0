"""LoRA from the matrices up: a from-scratch LoRA layer, parameter counts, low-rank approximation, effective rank.

LoRA (Hu et al. 2021) freezes a pretrained weight W (n_out x n_in) and learns its update as a product
of two thin matrices:

    W' = W + ΔW,    ΔW = scaling · B · A,    B: n_out x r,  A: r x n_in,  scaling = α / r

so a layer trains r·(n_in + n_out) numbers instead of n_out·n_in. rsLoRA (Kalajdzievski 2023) uses
scaling = α / √r instead. The names (lora_A, lora_B, scaling, merge) follow peft's
`peft/tuners/lora/layer.py`, so that the two can be compared weight for weight.
"""
from __future__ import annotations

import copy
import math
import statistics
import time

import torch
from torch import nn


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


# ------------------------------------------------------------------------------------- the layer
class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update.

    y = x Wᵀ + b + scaling · (x Aᵀ) Bᵀ        x: (..., n_in) -> y: (..., n_out)

    base_layer: the original nn.Linear (weight n_out x n_in), frozen.
    lora_A: (r, n_in), random like nn.Linear's init (peft's default, kaiming-uniform with a=√5).
    lora_B: (n_out, r), zero, so that at initialisation ΔW = 0 and the layer equals the base layer.
    """

    def __init__(self, base_layer: nn.Linear, r: int, alpha: float, use_rslora: bool = False):
        super().__init__()
        n_out, n_in = base_layer.weight.shape
        self.r = check_rank(r, n_out, n_in)
        self.alpha = alpha
        self.scaling = scaling_factor(alpha, r, use_rslora)
        self.base_layer = base_layer
        for p in self.base_layer.parameters():
            p.requires_grad_(False)
        w = base_layer.weight
        self.lora_A = nn.Parameter(torch.empty(r, n_in, dtype=w.dtype, device=w.device))
        self.lora_B = nn.Parameter(torch.zeros(n_out, r, dtype=w.dtype, device=w.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.merged = False

    def delta_weight(self) -> torch.Tensor:
        """ΔW = scaling · B · A, shape (n_out, n_in)."""
        return self.scaling * (self.lora_B @ self.lora_A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_layer(x)
        if self.merged:  # ΔW already lives inside base_layer.weight
            return y
        return y + self.scaling * ((x @ self.lora_A.T) @ self.lora_B.T)

    @torch.no_grad()
    def merge(self) -> None:
        """W <- W + ΔW: one matrix again, so inference costs what the base layer costs."""
        if not self.merged:
            self.base_layer.weight += self.delta_weight()
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.base_layer.weight -= self.delta_weight()
            self.merged = False

    def extra_repr(self) -> str:
        return f"r={self.r}, alpha={self.alpha}, scaling={self.scaling:.4g}, merged={self.merged}"


@torch.no_grad()
def from_peft(peft_layer, adapter: str = "default") -> LoRALinear:
    """A LoRALinear holding the same W, A, B and scaling as a peft lora.Linear (weights copied, not shared)."""
    base = copy.deepcopy(peft_layer.get_base_layer())
    r = peft_layer.r[adapter]
    layer = LoRALinear(base, r, peft_layer.lora_alpha[adapter], peft_layer.use_rslora.get(adapter, False))
    layer.lora_A.copy_(peft_layer.lora_A[adapter].weight)  # peft's lora_A is nn.Linear(n_in, r): weight (r, n_in)
    layer.lora_B.copy_(peft_layer.lora_B[adapter].weight)  # peft's lora_B is nn.Linear(r, n_out): weight (n_out, r)
    layer.scaling = peft_layer.scaling[adapter]
    return layer


def swap_in_from_scratch(peft_model, adapter: str = "default"):
    """A copy of the base model in which every peft LoRA layer is replaced by an equal LoRALinear."""
    from peft.tuners.lora import Linear as PeftLoraLinear

    model = copy.deepcopy(peft_model.get_base_model())
    replaced = []
    for name, module in list(model.named_modules()):
        if isinstance(module, PeftLoraLinear):
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, from_peft(module, adapter))
            replaced.append(name)
    if not replaced:
        raise ValueError("no peft LoRA layer found in the model; wrap it with get_peft_model(model, LoraConfig(...)) first.")
    return model, replaced


def add_lora(model, target_modules: list[str], r: int, alpha: float, use_rslora: bool = False) -> list[str]:
    """Replace (in place) every nn.Linear whose short name is in target_modules by a LoRALinear; returns their names."""
    from helpers.training import check_target_modules

    target_modules = check_target_modules(model, target_modules)
    replaced = []
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Linear) and name.split(".")[-1] in target_modules:
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, LoRALinear(module, r, alpha, use_rslora))
            replaced.append(name)
    return replaced


# -------------------------------------------------------------------------------------- counting
def lora_parameter_count(n_out: int, n_in: int, r: int) -> int:
    """Trainable numbers of one LoRA update: r·(n_in + n_out), against n_out·n_in for the full matrix."""
    return r * (n_in + n_out)


def full_parameter_count(n_out: int, n_in: int) -> int:
    return n_out * n_in


def llama_projection_shapes(hidden: int, intermediate: int, heads: int, kv_heads: int | None = None) -> dict:
    """(n_out, n_in) of each linear layer in one Llama decoder block, from the config's numbers alone."""
    head_dim = hidden // heads
    kv = (kv_heads or heads) * head_dim
    return {"q_proj": (hidden, hidden), "k_proj": (kv, hidden), "v_proj": (kv, hidden), "o_proj": (hidden, hidden),
            "gate_proj": (intermediate, hidden), "up_proj": (intermediate, hidden), "down_proj": (hidden, intermediate)}


def llama_parameter_count(hidden: int, intermediate: int, layers: int, heads: int, vocab: int,
                          kv_heads: int | None = None, tied_embeddings: bool = False) -> int:
    """All parameters of a Llama model from its config numbers: embeddings, blocks (7 projections and
    2 RMSNorms each), the final norm and the output head unless it is tied to the embeddings."""
    block = sum(full_parameter_count(*s) for s in llama_projection_shapes(hidden, intermediate, heads, kv_heads).values())
    embeddings = vocab * hidden * (1 if tied_embeddings else 2)
    return embeddings + layers * (block + 2 * hidden) + hidden


def model_projection_shapes(model) -> dict:
    """(n_out, n_in) of each linear layer type in a loaded model's first block (all blocks are alike)."""
    shapes = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and ".layers.0." in f".{name}.":
            shapes.setdefault(name.split(".")[-1], tuple(module.weight.shape))
    return shapes


def lora_budget(shapes: dict, targets: list[str], r: int, layers: int) -> dict:
    """Trainable parameters of LoRA with rank r on `targets` in every one of `layers` blocks, against full tuning
    of those same matrices."""
    missing = [t for t in targets if t not in shapes]
    if missing:
        raise ValueError(f"unknown module {missing}; the shapes given are for {sorted(shapes)}.")
    lora = layers * sum(lora_parameter_count(*shapes[t], r) for t in targets)
    full = layers * sum(full_parameter_count(*shapes[t]) for t in targets)
    return {"r": r, "lora_params": lora, "full_params": full, "fraction": lora / full}


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


def effective_rank(delta: torch.Tensor, energy: float = 0.9) -> int:
    """The smallest k whose top-k singular values hold at least `energy` of ΔW's squared Frobenius norm."""
    if not 0 < energy <= 1:
        raise ValueError(f"energy must be in (0, 1], got {energy}; 0.9 means 90% of the squared Frobenius norm.")
    curve = energy_curve(delta)
    if not torch.isfinite(curve).all():
        raise ValueError("ΔW is all zeros (or not finite): nothing changed, so there is no rank to measure.")
    return int(torch.searchsorted(curve, torch.tensor(energy - 1e-12, dtype=curve.dtype)).item()) + 1


# ------------------------------------------------------------------- ΔW of a full fine-tune
def weight_deltas(before: dict[str, torch.Tensor], model) -> dict[str, torch.Tensor]:
    """ΔW = W_after - W_before for every 2-D linear weight inside the transformer blocks.

    before: a state_dict copied before training (e.g. {k: v.clone() for k, v in model.state_dict().items()})."""
    after = model.state_dict()
    return {name: (after[name].detach().float().cpu() - w.float().cpu())
            for name, w in before.items() if w.ndim == 2 and ".layers." in name and name.endswith("proj.weight")}


def module_type(name: str) -> str:
    """'model.layers.3.self_attn.q_proj.weight' -> 'q_proj'."""
    return name.split(".")[-2]


def effective_ranks(deltas: dict[str, torch.Tensor], energy: float = 0.9) -> list[dict]:
    """One row per matrix: its module type, layer, shape, effective rank and that rank as a fraction of full rank."""
    rows = []
    for name, delta in deltas.items():
        k = effective_rank(delta, energy)
        rows.append({"matrix": name, "module": module_type(name), "layer": int(name.split(".layers.")[1].split(".")[0]),
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


def train_toy_lora(r: int, n: int = 64, k: int = 4, steps: int = 400, lr: float = 0.02, alpha: float | None = None,
                   use_rslora: bool = False, seed: int = 0) -> dict:
    """Fit a LoRALinear of rank r on top of the frozen W so that it reproduces the rank-k target.

    Full-batch Adam on the mean squared error. Returns losses per step, the final loss and the learned ΔW."""
    w, target_delta, x, y = toy_problem(n, k, seed=seed)
    torch.manual_seed(seed + r)
    base = nn.Linear(n, n, bias=False)
    with torch.no_grad():
        base.weight.copy_(w)
    layer = LoRALinear(base, r, alpha if alpha is not None else r, use_rslora)  # α = r: scaling 1 unless told
    opt = torch.optim.Adam([layer.lora_A, layer.lora_B], lr=lr)
    losses = []
    for _ in range(steps):
        loss = torch.mean((layer(x) - y) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        final = torch.mean((layer(x) - y) ** 2).item()
    return {"r": r, "losses": losses, "final_loss": final, "delta": layer.delta_weight().detach(),
            "target_delta": target_delta}


def toy_rank_recovery(ranks: list[int], n: int = 64, k: int = 4, steps: int = 400, lr: float = 0.02,
                      seed: int = 0) -> dict[int, dict]:
    """train_toy_lora for each r: for r >= k the loss can reach ~0, for r < k it stalls at the energy left out."""
    return {r: train_toy_lora(r, n, k, steps, lr, seed=seed) for r in ranks}


def update_size_vs_rank(ranks: list[int], alpha: float = 16, use_rslora: bool = False, n: int = 256,
                        steps: int = 30, lr: float = 1e-3, seed: int = 0) -> dict[int, dict]:
    """||ΔW||_F and the loss after the same short training (same α, same learning rate) for each rank r.

    The target is a full-rank update, so a larger r could in principle learn more; whether it does depends
    on the scaling: α/r shrinks the update as r grows, α/√r does not (the rsLoRA argument)."""
    g = torch.Generator().manual_seed(seed)
    w, x = torch.randn(n, n, generator=g) / math.sqrt(n), torch.randn(1024, n, generator=g)
    y = x @ (w + torch.randn(n, n, generator=g) / math.sqrt(n)).T
    results = {}
    for r in ranks:
        torch.manual_seed(seed)
        base = nn.Linear(n, n, bias=False)
        with torch.no_grad():
            base.weight.copy_(w)
        layer = LoRALinear(base, r, alpha, use_rslora)
        opt = torch.optim.Adam([layer.lora_A, layer.lora_B], lr=lr)
        for _ in range(steps):
            loss = torch.mean((layer(x) - y) ** 2)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            results[r] = {"update_norm": float(layer.delta_weight().norm()),
                          "loss": float(torch.mean((layer(x) - y) ** 2))}
    return results


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
    fig.tight_layout()
    return fig
