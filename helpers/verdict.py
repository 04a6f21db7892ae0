"""The course's one rule for reading a comparison over seeds.

Each arm of a comparison (a method, a setting) is run once per seed and gives one number per seed. The
**verdict** between two arms is "A ahead of B" only when every seed of A beats every seed of B by more than the
measure's **resolution** (1/n for a rate over n items: one item more or less; 0 for a continuous measure
such as a loss); otherwise "can't tell". One seed per arm can still give a verdict, but it cannot show the
seed-to-seed range, so the notebooks run three.
"""
from __future__ import annotations

import statistics

CANT_TELL = "can't tell"


def over_seeds(values: list[float]) -> dict:
    """{"mean", "min", "max", "range" (max − min), "values"} of one measure over seeds."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("over_seeds needs at least one value (one per seed)")
    return {"mean": statistics.mean(values), "min": min(values), "max": max(values),
            "range": max(values) - min(values), "values": values}


def seeds_phrase(n: int) -> str:
    """How many seeds a reading rests on, in words: "1 seed", "3 seeds"."""
    return f"{n} seed{'s' * (n != 1)}"


def rate_resolution(n_items: int) -> float:
    """The resolution of a rate over n items: one item more or less."""
    return 1.0 / n_items if n_items else 0.0


TOLERANCE = 1e-9  # rates are fractions: 33/58 - 32/58 is 1/58 plus a rounding error, which is not "more than"


def ahead(a: list[float], b: list[float], *, higher_is_better: bool = True, resolution: float = 0.0) -> bool:
    """Does every seed of A beat every seed of B by more than the resolution?"""
    if not a or not b:
        raise ValueError("a verdict needs at least one value (one per seed) on each side")
    gap = min(a) - max(b) if higher_is_better else min(b) - max(a)
    return gap > resolution + TOLERANCE


def verdict(a: list[float], b: list[float], *, names: tuple[str, str] = ("A", "B"),
            higher_is_better: bool = True, resolution: float = 0.0) -> str:
    """"<A> ahead of <B>", "<B> ahead of <A>", or "can't tell" (the module's rule)."""
    if ahead(a, b, higher_is_better=higher_is_better, resolution=resolution):
        return f"{names[0]} ahead of {names[1]}"
    if ahead(b, a, higher_is_better=higher_is_better, resolution=resolution):
        return f"{names[1]} ahead of {names[0]}"
    return CANT_TELL


def best_and_ties(arms: dict[str, list[float]], *, higher_is_better: bool = True,
                  resolution: float = 0.0) -> tuple[str, list[str]]:
    """The arm with the best mean, and the arms the verdict cannot tell from it (the best included)."""
    pick = max if higher_is_better else min
    best = pick(arms, key=lambda k: statistics.mean(arms[k]))
    tied = [k for k in arms if k == best or verdict(arms[best], arms[k], higher_is_better=higher_is_better,
                                                    resolution=resolution) == CANT_TELL]
    return best, tied
