"""Notebook 09: GRPO with verifiable rewards. The hand-written loss equals TRL's on a batch with signal,
held-out reward rises beyond seed noise, the SFT baseline and forgetting are measured, the gamed reward is
gamed, and more generations per prompt leave fewer groups without signal."""
import pytest

from helpers.verdict import CANT_TELL


@pytest.fixture(params=["tiny", "real"])
def metrics(request, notebook_metrics, real_notebook_metrics):
    return notebook_metrics("09") if request.param == "tiny" else real_notebook_metrics("09")


def test_hand_written_loss_equals_trl_on_a_batch_with_signal(metrics):
    """The check runs after train(), which took TRL's fused LM head off the model: the notebook puts it back."""
    assert metrics["check_groups_with_spread"] > 0, "every group scored alike: the check would be trivial"
    assert metrics["hand_vs_trl_loss_abs_diff"] <= 1e-6, metrics["hand_vs_trl_loss_abs_diff"]
    assert metrics["advantages_abs_diff"] <= 1e-4


def test_every_ruler_is_measured(metrics):
    for key in ("reward_before", "reward_after", "accuracy_before", "accuracy_after", "sft_baseline_accuracy",
                "fact_accuracy_before", "fact_accuracy_after", "fact_accuracy_after_sft"):
        assert 0.0 <= metrics[key] <= 1.0, key
    curves = metrics["curves"]
    assert len(curves["reward"]) == metrics["recipe"]["max_steps"] == len(curves["group_spread"])
    assert len(curves["kl"]) == metrics["recipe"]["max_steps"]  # beta > 0: the KL is logged every step
    assert len(metrics["reward_after_by_seed"]) == len(metrics["seeds"])


def test_every_verdict_follows_the_rule(metrics):
    """Each verdict is the helpers.verdict one: "A ahead of B" between the named sides, or "can't tell"."""
    sides = {"reward": ("GRPO", "the start"), "accuracy": ("GRPO", "the start"),
             "sft_baseline": ("SFT on answers", "GRPO"), "facts_grpo": ("GRPO", "the start"),
             "facts_sft": ("SFT on answers", "the start"),
             "facts_warmup": ("the SFT warm-up", "the base model"), "facts_grpo_vs_base": ("GRPO", "the base model")}
    assert set(metrics["verdicts"]) == set(sides)
    for key, (a, b) in sides.items():
        assert metrics["verdicts"][key] in (f"{a} ahead of {b}", f"{b} ahead of {a}", CANT_TELL), key


def test_held_out_reward_rises_beyond_seed_noise(notebook_metrics):
    m = notebook_metrics("09")
    by_seed = m["reward_after_by_seed"]
    assert len(by_seed) == 3
    # measured: 0.09 before, 0.24-0.27 after over 3 seeds; the worst seed must clear the start by 0.08
    assert min(by_seed) > m["reward_before"] + 0.08, (m["reward_before"], by_seed)
    assert m["accuracy_after"] >= m["accuracy_before"]
    assert m["verdicts"]["reward"] == "GRPO ahead of the start"
    # greedy exact match over 100 prompts is the coarser ruler: 0.25 -> 0.31-0.33 on a Zen 4 ("GRPO ahead"),
    # 0.25 -> 0.24-0.29 on an Intel Xeon ("can't tell"), the same code and seeds: sampling's float differences
    # between CPUs send RL runs apart. What holds on both: GRPO does not lower it
    assert m["verdicts"]["accuracy"] in ("GRPO ahead of the start", "can't tell")


def test_sft_on_the_answers_is_the_stronger_baseline_here(notebook_metrics):
    m = notebook_metrics("09")
    assert m["sft_baseline_accuracy"] > m["accuracy_after"]
    assert m["verdicts"]["sft_baseline"] == "SFT on answers ahead of GRPO"   # every seed, by > 1 answer
    assert m["train_seconds"]["sft_on_answers"] < m["train_seconds"]["grpo"]


def test_the_gameable_reward_is_gamed(notebook_metrics):
    rows = notebook_metrics("09")["reward_hacking"]
    start, hacked = rows["sft_start"], rows["grpo_letters_present"]
    assert hacked["letters_present"] > start["letters_present"]
    assert hacked["exact_accuracy"] < start["exact_accuracy"] / 2
    assert hacked["letters_per_answer"] > start["letters_per_answer"]


def test_more_generations_leave_fewer_groups_without_signal(notebook_metrics):
    sweep = notebook_metrics("09")["generations_sweep"]
    no_spread = [sweep[g]["no_spread_share"] for g in ("2", "4", "8")]
    assert no_spread[0] > no_spread[1] > no_spread[2], no_spread


def test_the_curves_are_read_and_the_clip_never_acts(metrics):
    """num_iterations=1: the policy that sampled is the one updated, the ratio is 1, PPO's clip acts on nothing."""
    read = metrics["curve_reading"]
    assert read["clip_max"] == 0.0
    assert 0.0 <= read["no_spread"][0] <= 1.0 and 0.0 <= read["no_spread"][1] <= 1.0
    assert 1 <= read["peak_step"] <= metrics["recipe"]["max_steps"]


def test_the_clip_acts_once_a_batch_is_used_twice(notebook_metrics):
    """num_iterations=2: at a batch's first update the ratio is 1 and nothing is clipped; at its second the
    policy has moved since it sampled, and the clip acts on some tokens."""
    clip = notebook_metrics("09")["clip_active"]
    assert clip["steps"] > 0
    assert clip["first_use_max"] == 0.0
    assert 0.0 < clip["second_use_mean"] <= clip["second_use_max"] < 1.0


def test_forgetting_is_measured_from_the_base_model_too(notebook_metrics):
    """The SFT warm-up, not GRPO, costs the fact probes: measured from the base model and from the warm-up."""
    m = notebook_metrics("09")
    assert m["fact_accuracy_base"] > m["fact_accuracy_before"]          # measured: 0.996 -> 0.845
    assert m["verdicts"]["facts_warmup"] == "the base model ahead of the SFT warm-up"


def test_the_controls_run_every_seed_and_are_judged(notebook_metrics):
    m = notebook_metrics("09")
    assert m["control_steps"] > 0
    assert set(m["controls"]) == {"real reward", "placebo reward", 'loss_type="grpo"', 'loss_type="dr_grpo"'}
    assert set(m["control_arms"]) == set(m["controls"])    # the budget's control_arms: every one ran
    for arm in m["controls"].values():
        assert len(arm["reward"]["values"]) == len(m["seeds"]) == 3
        assert 0.0 <= arm["cut_share"]["mean"] <= 1.0
    sides = {"real_vs_placebo": ("the real reward", "the placebo"), "placebo_vs_start": ("the placebo", "the start"),
             "wrong_length": ('"grpo"', '"dr_grpo"')}
    for key, (a, b) in sides.items():
        assert m["control_verdicts"][key] in (f"{a} ahead of {b}", f"{b} ahead of {a}", CANT_TELL), key
