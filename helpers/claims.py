"""Every claim the course tests, where it comes from, what measures it, and its judge.

A claim is judged from a notebook's metrics (the JSON every notebook writes) by the course's rule for
comparisons (`helpers.verdict`): **supported**, **contradicted**, **can't tell** (the seeds or the resolution
cannot separate the arms), or **not run** (the notebook does not measure it yet, or this budget skipped it),
each with what was measured and the numbers. `helpers.course.run_notebook` adds them to every run's metrics
as `claims` (`notebook_claims`); `helpers.ledger` renders CLAIMS.md from the committed runs.

Timing claims (a merged model's latency) depend on the machine: their verdicts are listed, not compared
between runs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from helpers.verdict import CANT_TELL, best_and_ties, rate_resolution, verdict

SUPPORTED, CONTRADICTED, NOT_RUN = "supported", "contradicted", "not run"


@dataclass(frozen=True)
class Claim:
    key: str
    notebook: str
    text: str
    source: str
    judge: Callable[[dict], dict] | None = None   # metrics -> {"verdict", "measured", "values"}
    why_not: str = ""                              # when judge is None: why the course does not measure it
    timing: bool = False
    real_only: bool = False                        # measured on real models only (the tiny model can't show it)


def judged(v: str, measured: str, values: str) -> dict:
    return {"verdict": v, "measured": measured, "values": values}


def from_comparison(result: str, favourable: str) -> str:
    """A verdict string of helpers.verdict ("A ahead of B" / "can't tell") as a claim's verdict: the claim
    holds when `favourable` is the result."""
    if result == CANT_TELL:
        return CANT_TELL
    return SUPPORTED if result == favourable else CONTRADICTED


def _f(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}g}"


# ------------------------------------------------------------------------------------------- the judges
def low_intrinsic_rank(m):
    er, rand = m["effective_rank_90"], m["random_effective_rank_90"]
    share = [er[k] / rand[k] for k in er]
    v = SUPPORTED if max(share) < 0.5 else CONTRADICTED if min(share) > 0.9 else CANT_TELL
    return judged(v, f"effective rank of a full fine-tune's ΔW (90% energy, {m['full_ft']['steps']} steps) "
                     "against a random matrix of the same shape",
                  f"{min(er.values()):.1f}-{max(er.values()):.1f} against {min(rand.values()):.0f}-"
                  f"{max(rand.values()):.0f} ({min(share):.0%}-{max(share):.0%})")


def rslora_keeps_ranks_learning(m):
    loss = m["loss_vs_rank"]
    top = max(loss["alpha_over_r"], key=int)
    a, b = loss["alpha_over_sqrt_r"][top], loss["alpha_over_r"][top]
    result = verdict([a], [b], names=("α/√r", "α/r"), higher_is_better=False)
    return judged(from_comparison(result, "α/√r ahead of α/r"),
                  f"toy loss after 30 steps at r = {top}, same α and learning rate", f"{_f(a)} (α/√r) vs {_f(b)} (α/r)")


def merged_adds_no_latency(m):
    ratio = m["merged_forward_time_ratio"]
    v = SUPPORTED if ratio <= 1.10 else CONTRADICTED
    return judged(v, "forward time of the merged model relative to the base model (median of timed runs)",
                  f"{ratio:.2f}x (unmerged adapter {m['unmerged_forward_time_ratio']:.2f}x)")


def checkpoints_smaller(m):
    share = m["adapter_bytes"] / m["base_model_bytes"]
    return judged(SUPPORTED if share < 0.1 else CONTRADICTED, "adapter file against the base model's weights",
                  f"{share:.1%} of the base model")


def q_and_v_best(m):
    sweep, ver = m["sweeps"]["target"], m["sweep_verdicts"]["target"]["heldout_loss"]
    v = SUPPORTED if ver["best"] == "q+v" else CANT_TELL if "q+v" in ver["ties"] else CONTRADICTED
    return judged(v, f"held-out loss by target modules at rank {m['recipe']['lora_r']}, "
                     f"{len(m['sweep_seeds'])} seeds",
                  ", ".join(f"{k} {_f(s['heldout_loss']['mean'])}" for k, s in sweep.items())
                  + f"; best {ver['best']}; ties: {', '.join(ver['ties'])}")


def small_rank_enough(m):
    """Among standard LoRA's ranks (γ = α/r, α fixed), does r = 4 or 8 tie with the best?"""
    sweep = {k: s["heldout_loss"] for k, s in m["sweeps"]["rank"].items() if k.startswith("α/r ")}
    sweep = dict(sorted(sweep.items(), key=lambda kv: int(kv[0].split("=")[1])))
    best, ties = best_and_ties({k: s["values"] for k, s in sweep.items()}, higher_is_better=False)
    small = [r for r in ("α/r r=4", "α/r r=8") if r in sweep]
    v = SUPPORTED if any(r in ties for r in small) else CONTRADICTED
    return judged(v, f"held-out loss by rank (all linear layers, γ = α/r with α fixed, "
                     f"{m['sweep_steps']} steps), {len(m['sweep_seeds'])} seeds",
                  ", ".join(f"{k.split()[-1]} {_f(s['mean'])}" for k, s in sweep.items())
                  + f"; best {best.split()[-1]}, ties: {', '.join(t.split()[-1] for t in ties)}")


def _answer(m, question, measured):
    """A question of 02's section 7 (`sweep_answers`: arms a and b, lower loss better) as a claim that holds
    when a is ahead."""
    x = m["sweep_answers"][question]
    return judged(from_comparison(x["verdict"], f"{x['a']} ahead of {x['b']}"),
                  f"{measured}, {m['sweep_steps']} steps, {len(m['sweep_seeds'])} seeds",
                  f"{x['a']} {_f(x['a_loss'])} vs {x['b']} {_f(x['b_loss'])}")


def rslora_on_the_model(m):
    return _answer(m, "rank_scale", f"held-out loss at full rank (r = {m['full_rank']}), α fixed")


def all_linear_at_matched_parameters(m):
    return _answer(m, "all_linear_at_budget",
                   f"held-out loss at ~{m['parameter_budget']:,} trainable parameters, all linear layers "
                   "against the best attention-only placement")


def importance_rank(m):
    result = _answer(m, "adalora", "held-out loss of AdaLoRA (better of two learning rates) against "
                                   "LoRA of the same mean rank on every linear layer (better of the same two)")
    x, arms = m["sweep_answers"]["adalora"], m["sweeps"]["budget"]
    result["values"] += (f"; parameters its kept ranks hold {arms[x['a']]['trainable']:,} vs "
                         f"{arms[x['b']]['trainable']:,}")
    return result


def full_rank_matches_full(m):
    return _answer(m, "full_rank", f"held-out loss, the better LoRA scale at full rank (r = {m['full_rank']}) against "
                                   "full fine-tuning, each at twice its recipe's learning rate")


def epochs_until_overfitting(m):
    o = m["overfit"]
    v = SUPPORTED if o["first_eval_loss"] > o["best_eval_loss"] < o["final_eval_loss"] else CONTRADICTED
    return judged(v, "validation loss of a long run on 24 rows", f"first {_f(o['first_eval_loss'])}, lowest "
                  f"{_f(o['best_eval_loss'])} at step {o['best_step']}, last {_f(o['final_eval_loss'])}")


def lora_lr_ten_times_full(m):
    ratio = m["lora_full_lr_ratio"]
    v = SUPPORTED if 10 / 3.2 <= ratio <= 10 * 3.2 else CONTRADICTED
    lr = m["learning_rates"]
    return judged(v, f"best learning rate by validation loss, {m['lr_sweep_steps']} steps, grid steps of 3x",
                  f"LoRA {lr['lora']:.2g} / full {lr['full']:.2g} = {ratio:.3g}x")


def qlora_loses_nothing(m):
    results = [m["qlora_vs_lora_verdict"], m.get("qlora_vs_lora_loss_verdict", CANT_TELL)]
    # a seed gives both arms the same data order: QLoRA's loss above LoRA's in every seed is no proof of a loss
    # (the seeds may spread wider), and no support for "nothing" either
    by_seed = m.get("qlora_vs_lora_loss", {})
    gaps = [q - lo for q, lo in zip(by_seed.get("QLoRA", {}).get("values", []),
                                    by_seed.get("LoRA", {}).get("values", []))]
    above = len(gaps) > 1 and all(g > 0 for g in gaps)
    v = (CONTRADICTED if any(r == "LoRA ahead of QLoRA" for r in results) else CANT_TELL if above
         else SUPPORTED)
    s, loss = m["qlora_vs_lora"], m["heldout_loss_after"]
    return judged(v, f"held-out {m['qlora_vs_lora_score'].replace('_', ' ')} and loss, {len(m['seeds'])} seeds "
                     "(supported: no seed-proof loss, and QLoRA's loss not above LoRA's in every seed)",
                  f"{_f(s['QLoRA']['mean'])} vs {_f(s['LoRA']['mean'])} ({results[0]}); loss "
                  f"{_f(loss['QLoRA'])} vs {_f(loss['LoRA'])} ({results[1]})"
                  + (f"; QLoRA's loss above LoRA's in every seed ({', '.join(f'{g:+.3f}' for g in gaps)})"
                     if above else ""))


def nf4_suits_normal(m):
    err = m["quant_error"]["gaussian"]
    ppl = {k: v["corpus_perplexity"] for k, v in m["quality_by_type"].items() if "corpus_perplexity" in v}
    on_data = min(err, key=lambda k: err[k]["mse"]) == "nf4"
    on_model = not ppl or min((k for k in ppl if k != "fp32"), key=ppl.get) == "nf4"
    v = SUPPORTED if on_data and on_model else CONTRADICTED if not on_data and not on_model else CANT_TELL
    return judged(v, "round-trip error on Gaussian data; the model's pretraining-text perplexity per data type",
                  "MSE " + ", ".join(f"{k} {err[k]['mse']:.2e}" for k in err)
                  + ("; perplexity " + ", ".join(f"{k} {x:.4f}" for k, x in ppl.items()) if ppl else ""))


def double_quant_saves(m):
    saved = m["bits_per_param_no_dq"] - m["bits_per_param_dq"]
    return judged(SUPPORTED if abs(saved - 0.373) < 0.01 else CONTRADICTED, "bits per weight from the stored "
                  "bytes, with and without double quantization", f"{saved:.3f} bits saved")


def dpo_beyond_sft(m):
    """The habit the sloppy SFT set taught (the sign-off), which half the chosen answers also carry: the better DPO
    arm against SFT on the chosen answers, each over its seeds, by the rate of held-out replies with the habit."""
    arms, n = m["arms"], m["eval_rows"]
    seeds = m.get("arms_over_seeds", {})
    dpo = min((a for a in ("dpo", "dpo_nll") if a in seeds and "habit_rate" in seeds[a]),
              key=lambda a: arms[a]["habit_rate"], default=None)
    if dpo is None:
        return judged(NOT_RUN, "this budget has no rule for the preferred behaviour", "")
    a, b = seeds[dpo]["habit_rate"], seeds["sft_on_chosen"]["habit_rate"]
    result = verdict(a, b, names=("DPO", "SFT"), higher_is_better=False, resolution=rate_resolution(n))
    return judged(from_comparison(result, "DPO ahead of SFT"), "held-out replies with the habit half the chosen "
                  f"answers carry: the better DPO arm against SFT on the chosen answers ({len(a)} seeds)",
                  f"{dpo} {_f(sum(a) / len(a))} vs SFT on chosen {_f(sum(b) / len(b))} ({result})")


def chosen_likelihood_falls(m):
    """Plain DPO's change of log π(chosen) and of the margin, held out; where notebook 05 knows which chosen
    answers carry the habit the preference lowers (the tiny world's sign-off), on the others only: there a
    fall is displacement, not the habit going."""
    d = m["displacement"]["dpo"]
    side = "_without_sign_off" if "chosen_without_sign_off" in d else ""
    chosen, margin = d["chosen" + side], d["chosen" + side] - d["rejected" + side]
    v = SUPPORTED if chosen < 0 < margin else CONTRADICTED if margin > 0 else CANT_TELL
    where = ", on the held-out pairs whose chosen answer has no sign-off" if side else ", held out"
    return judged(v, f"plain DPO's change of log π(chosen) and of the margin from the reference{where}",
                  f"log π(chosen) {chosen:+.2f} nats, margin {margin:+.2f}"
                  + (f" (over every pair: {d['chosen']:+.2f} and {d['chosen'] - d['rejected']:+.2f})"
                     if side else ""))


def _forgetting(m):
    b = m["biderman"]
    lora = m["lora_run"]
    return b, (f"skill {_f(b['full']['skill']['mean'])} (full) vs {_f(b[lora]['skill']['mean'])} ({lora}); fact "
               f"drop {_f(b['full']['fact_drop']['mean'])} vs {_f(b[lora]['fact_drop']['mean'])}, "
               f"{len(b['seeds'])} seeds")


def lora_reduces_forgetting(m):
    b, values = _forgetting(m)
    v = {"less": SUPPORTED, "more": CONTRADICTED}.get(b["lora_forgets"], CANT_TELL)
    return judged(v, "fact-probe drop after learning a new skill, full fine-tuning against LoRA", values)


def lora_forgets_less_general_ability(m):
    b, lora = m["biderman"], m["lora_run"]
    if b.get("ruler_forgetting", "not run") == "not run":
        return judged(NOT_RUN, "the general-ability ruler (ARC) runs on real models only (`ruler_items` > 0): the "
                               "tiny model answers it at chance", "")
    return judged(from_comparison(b["ruler_forgetting"], "LoRA ahead of full"),
                  f"drop in ARC-Easy accuracy after learning a new skill ({m['ruler_items']} questions, paired "
                  "by question), full fine-tuning against LoRA",
                  f"{_f(b['full']['ruler_drop']['mean'])} (full) vs {_f(b[lora]['ruler_drop']['mean'])} ({lora}), "
                  f"{len(b['seeds'])} seeds")


def learns_less_forgets_less(m):
    b, values = _forgetting(m)
    parts = (b["lora_learns"], b["lora_forgets"])
    v = SUPPORTED if parts == ("less", "less") else CONTRADICTED if "more" in parts else CANT_TELL
    return judged(v, "skill learned and facts forgotten, full fine-tuning against LoRA "
                     f"(LoRA learns {parts[0]}, forgets {parts[1]})", values)


def _remedy(m, remedy, measured, absent):
    """The family that forgot most (notebook 06's `remedies_on`) with a remedy against its own seeds, by fact drop:
    the verdict notebook 06 rendered (`remedy_verdicts`), with the numbers it came from."""
    family = m.get("remedies_on", "full")
    name = f"{family}_{remedy}"
    base = [r["fact_drop"] for r in m["runs"] if r["name"] == family]
    arm = [r["fact_drop"] for r in m["runs"] if r["name"] == name]
    if not arm:
        return judged(NOT_RUN, absent, "")
    result = m["remedy_verdicts"][name]
    skill = [r["skill_accuracy"] for r in m["runs"] if r["name"] == name]
    seed = m.get("remedies_seed")   # the family's seed that forgot most (runs before it: the first seed)
    at = f", at seed {seed}, its run that forgot most" if seed is not None else ""
    return judged(from_comparison(result, f"{name} ahead of {family}"), f"{measured}, on {family} (the family "
                  f"that forgot most{at})", f"fact drop {_f(sum(arm) / len(arm))} ({len(arm)} seed) vs {family} "
                  f"{_f(sum(base) / len(base))} ({len(base)} seeds); skill {_f(sum(skill) / len(skill))}")


def replay_reduces_forgetting(m):
    return _remedy(m, "replay_0.25", "fact-probe drop with a quarter of general rows replayed",
                   "this budget ran no replay")


def regularisation_reduces_forgetting(m):
    return _remedy(m, "l2", "fact-probe drop with an L2 pull to the start weights", "this budget ran no L2 pull")


def modules_additive(m):
    acc = m["per_task_accuracy"]
    combined = next((k for k in acc if k.endswith("_cat")), None)
    if combined is None:
        return judged(NOT_RUN, "this budget combined no adapters", "")
    tasks = combined.split("_")[:-1]
    alone = {t: acc[t][t] for t in tasks}
    together = {t: acc[combined][t] for t in tasks}
    kept = all(together[t] >= alone[t] - 0.1 for t in tasks)
    lost = all(together[t] < 0.5 * alone[t] for t in tasks)
    v = SUPPORTED if kept else CONTRADICTED if lost else CANT_TELL
    values = "; ".join(f"{t} {_f(alone[t])} alone, {_f(together[t])} combined" for t in tasks)
    if "gain_kept" in m:   # the held-out loss: how much of each adapter's gain the combination kept
        values += "; loss gain kept combined: " + ", ".join(f"{t} {m['gain_kept'][combined][t]:.0%}" for t in tasks)
    return judged(v, f"each task's exact match, its adapter alone against the adapters combined ({combined}); "
                     "beside it, the share of each adapter's held-out loss gain the combination kept", values)


def dr_grpo_length(m):
    if "wrong_length" not in m.get("control_verdicts", {}):
        return judged(NOT_RUN, "this budget ran no loss-type controls (`control_steps`, `control_arms`)", "")
    v, c = m["control_verdicts"]["wrong_length"], m["controls"]
    g, d = c['loss_type="grpo"']["wrong_tokens"], c['loss_type="dr_grpo"']["wrong_tokens"]
    return judged(from_comparison(v, '"grpo" ahead of "dr_grpo"'),
                  f"mean length in tokens of the wrong sampled answers on held-out prompts after "
                  f"{m['control_steps']} GRPO steps, loss_type \"grpo\" against \"dr_grpo\" (longer is "
                  f"ahead), {len(g['values'])} seeds",
                  f"{_f(g['mean'])} vs {_f(d['mean'])} tokens; start {_f(m['control_start']['wrong_tokens'])}")


def random_reward_no_gain(m):
    if "placebo_vs_start" not in m.get("control_verdicts", {}):
        return judged(NOT_RUN, "this budget ran no placebo control (`control_steps`, `control_arms`)", "")
    v, c = m["control_verdicts"], m["controls"]
    gained = v["placebo_vs_start"] == "the placebo ahead of the start"
    return judged(CONTRADICTED if gained else SUPPORTED,
                  f"held-out sampled reward after {m['control_steps']} GRPO steps from the SFT warm-up model "
                  f"(which has seen the task), a coin-flip reward against the start and the real reward, "
                  f"{len(c['placebo reward']['reward']['values'])} seeds",
                  f"start {_f(m['control_start']['reward'])}, placebo {_f(c['placebo reward']['reward']['mean'])} "
                  f"({v['placebo_vs_start']}), real {_f(c['real reward']['reward']['mean'])} "
                  f"({v['real_vs_placebo']})")


CLAIMS = [
    Claim("low_intrinsic_rank", "01", "ΔW has a low intrinsic rank", "fine-tuning articles; Hu et al. 2021 (LoRA)",
          low_intrinsic_rank),
    Claim("rslora", "01", "rsLoRA's α/√r keeps larger ranks learning", "Kalajdzievski 2023 (rsLoRA)",
          rslora_keeps_ranks_learning),
    Claim("merged_no_latency", "01", "merged LoRA adds no inference latency", "fine-tuning articles; Hu et al. 2021",
          merged_adds_no_latency, timing=True),
    Claim("checkpoints_smaller", "02", "LoRA checkpoints are smaller", "fine-tuning articles; Hu et al. 2021",
          checkpoints_smaller),
    Claim("q_v_best", "02", "q and v are the best targets", "fine-tuning articles; Hu et al. 2021, Table 5",
          q_and_v_best),
    Claim("small_rank", "02", "r = 4-8 is enough", "fine-tuning articles; Hu et al. 2021, Table 6", small_rank_enough),
    Claim("epochs_overfit", "02", "more epochs help until overfitting", "fine-tuning articles",
          epochs_until_overfitting),
    Claim("all_linear_matched", "02", "LoRA on all linear layers beats attention-only at matched parameters",
          "Schulman et al. 2025 (LoRA Without Regret)", all_linear_at_matched_parameters),
    Claim("importance_rank", "02", "rank given by importance (AdaLoRA) beats one rank everywhere at the same budget",
          "fine-tuning articles; Zhang et al. 2023 (AdaLoRA)", importance_rank),
    Claim("full_rank_limit", "02", "LoRA at full rank learns as well as full fine-tuning", "fine-tuning articles",
          full_rank_matches_full),
    Claim("rslora_sft", "02", "rsLoRA's α/√r trains better than α/r at high rank (SFT)",
          "Kalajdzievski 2023 (rsLoRA)", rslora_on_the_model),
    Claim("lora_lr_10x", "03", "the best LoRA learning rate is about 10x full fine-tuning's",
          "Schulman et al. 2025 (LoRA Without Regret)", lora_lr_ten_times_full),
    Claim("qlora_no_loss", "04", "QLoRA loses nothing against 16-bit LoRA", "fine-tuning articles; Dettmers et al. 2023",
          qlora_loses_nothing),
    Claim("nf4_normal", "04", "NF4 suits normally distributed weights", "fine-tuning articles; Dettmers et al. 2023",
          nf4_suits_normal),
    Claim("double_quant", "04", "double quantization saves about 0.37 bits per parameter",
          "fine-tuning articles; Dettmers et al. 2023", double_quant_saves),
    Claim("dpo_beyond_sft", "05", "preference alignment (DPO) changes behaviour beyond SFT", "fine-tuning articles",
          dpo_beyond_sft),
    Claim("likelihood_displacement", "05", "DPO lowers the chosen answers' likelihood while raising the margin",
          "Razin et al. 2024", chosen_likelihood_falls),
    Claim("lora_less_forgetting", "06", "LoRA and adapters reduce forgetting", "fine-tuning articles",
          lora_reduces_forgetting),
    Claim("lora_less_general_forgetting", "06", "LoRA forgets less general ability than full fine-tuning",
          "Biderman et al. 2024", lora_forgets_less_general_ability, real_only=True),
    Claim("learns_less_forgets_less", "06", "LoRA learns less and forgets less", "Biderman et al. 2024",
          learns_less_forgets_less),
    Claim("replay", "06", "mixing general data reduces forgetting", "fine-tuning articles", replay_reduces_forgetting),
    Claim("regularisation", "06", "regularisation reduces forgetting", "fine-tuning articles",
          regularisation_reduces_forgetting),
    Claim("additive", "07", "LoRA modules are additive", "fine-tuning articles", modules_additive),
    Claim("dr_grpo_length", "09", "GRPO's length normalisation lengthens wrong answers", "Liu et al. 2025 (Dr. GRPO)",
          dr_grpo_length),
    Claim("random_reward", "09", "a random reward gives no real gain on a model not trained on the task",
          "Shao et al. 2025 (spurious rewards)", random_reward_no_gain),
]


def notebook_claims(prefix: str, metrics: dict, budget: str = "tiny") -> list[dict]:
    """The claims notebook `prefix` measures, judged from its metrics (a run at `budget`). A claim whose
    numbers this run does not have (a budget that skipped that part) is "not run"."""
    out = []
    for c in CLAIMS:
        if c.notebook != prefix:
            continue
        if c.judge is None:
            result = judged(NOT_RUN, c.why_not, "")
        else:
            try:
                result = c.judge(metrics)
            except (KeyError, TypeError, ValueError, ZeroDivisionError) as err:
                result = judged(NOT_RUN, f"this run has no {err} to judge it by", "")
        out.append({"key": c.key, "text": c.text, "source": c.source, "timing": c.timing, "budget": budget,
                    **result})
    return out
