"""helpers.verdict: the one rule for a comparison over seeds."""
import pytest

from helpers.verdict import CANT_TELL, best_and_ties, over_seeds, rate_resolution, verdict


def test_ahead_only_when_every_seed_beats_every_seed_by_more_than_the_resolution():
    assert verdict([0.9, 0.8], [0.5, 0.6], names=("LoRA", "full")) == "LoRA ahead of full"
    assert verdict([0.5, 0.6], [0.9, 0.8], names=("LoRA", "full")) == "full ahead of LoRA"
    assert verdict([0.9, 0.55], [0.5, 0.6]) == CANT_TELL                        # the seeds overlap
    assert verdict([0.30], [0.20], resolution=0.1) == CANT_TELL                # one item apart is no finding
    assert verdict([0.30], [0.19], resolution=0.1) == "A ahead of B"


def test_one_item_apart_is_not_ahead_despite_rounding():
    n = 58
    assert 33 / n - 32 / n > 1 / n                                              # the float gap exceeds 1/58
    assert verdict([33 / n], [32 / n], resolution=rate_resolution(n)) == CANT_TELL


def test_lower_is_better_for_a_loss():
    assert verdict([0.25, 0.26], [0.49, 0.50], names=("full", "LoRA"), higher_is_better=False) == \
        "full ahead of LoRA"


def test_best_and_ties_and_over_seeds():
    arms = {"r=1": [0.55, 0.50], "r=4": [0.60, 0.57], "r=16": [0.90, 0.88]}
    assert best_and_ties(arms) == ("r=16", ["r=16"])
    assert best_and_ties({**arms, "r=64": [0.89, 0.86]}) == ("r=16", ["r=16", "r=64"])
    stats = over_seeds([0.5, 0.7, 0.6])
    assert stats["mean"] == pytest.approx(0.6) and stats["range"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="one per seed"):
        verdict([], [0.1])


def test_seeds_phrase_says_one_seed_and_many_seeds():
    from helpers.verdict import seeds_phrase

    assert [seeds_phrase(n) for n in (1, 2, 3)] == ["1 seed", "2 seeds", "3 seeds"]
