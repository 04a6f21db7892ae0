"""The Colab install path, checked offline against a recorded Colab package list.

requirements-colab.txt must install only what Colab lacks or must upgrade, never a package Colab has
already imported when the first cell runs (numpy, matplotlib, pandas, torch: reinstalling them needs a
restart; pandas is pinned by google-colab), and every requirement of every pinned package must be met either
by another pin or by the version Colab already has. Requirements are read from the installed packages'
metadata: the pins are the versions installed here (requirements.txt pins the same ones).
"""
import importlib.metadata
import re
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from helpers import colab

FIXTURE = Path(__file__).parent / "fixtures" / "colab_packages.txt"
# Colab's interpreter and platform (tests/fixtures/colab_packages.txt's header)
COLAB_ENV = {**default_environment(), "python_version": "3.13", "python_full_version": "3.13.15",
             "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64"}


def colab_packages() -> dict[str, Version]:
    out = {}
    for line in FIXTURE.read_text().splitlines():
        match = re.match(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", line.strip())
        if match:
            out[canonicalize_name(match.group(1))] = Version(match.group(2).split("+")[0])
    return out


PINS = {canonicalize_name(k): Version(v) for k, v in colab.pins().items()}
COLAB = colab_packages()


def test_the_fixture_is_a_real_colab_image():
    assert len(COLAB) > 500
    for name in ("torch", "numpy", "pandas", "matplotlib", "google-colab", "transformers"):
        assert name in COLAB or name == "google-colab", name


def test_nothing_colab_has_imported_is_reinstalled():
    for name in colab.PREIMPORTED:
        assert canonicalize_name("pillow" if name == "PIL" else name) not in PINS, name


def test_every_pin_is_installed_here_at_its_version():
    for name, version in PINS.items():
        assert Version(importlib.metadata.version(name)) == version, name


def unmet_requirements() -> list[str]:
    problems = []
    for name in PINS:
        for spec in importlib.metadata.requires(name) or []:
            req = Requirement(spec)
            if req.marker is not None and not req.marker.evaluate({**COLAB_ENV, "extra": ""}):
                continue  # an optional extra, or another platform
            dep = canonicalize_name(req.name)
            have = PINS.get(dep, COLAB.get(dep))
            if have is None:
                continue  # neither pinned nor on Colab: pip installs it fresh, nothing to conflict with
            if not req.specifier.contains(have, prereleases=True):
                source = "our pin" if dep in PINS else "Colab's"
                problems.append(f"{name} {PINS[name]} needs {req}, {source} is {have}")
    return problems


def test_every_requirement_is_met_by_a_pin_or_by_colab():
    assert unmet_requirements() == []


def test_a_conflicting_pin_would_be_caught(monkeypatch):
    """The check can fail: pretend Colab had an old torch that our pins cannot use."""
    monkeypatch.setitem(COLAB, "torch", Version("1.13.0"))
    assert any("torch" in p for p in unmet_requirements())


def test_runtime_report_names_what_to_do(monkeypatch):
    monkeypatch.setattr(colab, "stale_modules", lambda: {"numpy": ("2.1.3", "2.4.6")})
    assert colab.runtime_report().startswith("Restart the runtime")
    monkeypatch.setattr(colab, "stale_modules", lambda: {})
    assert colab.runtime_report().startswith("Colab runtime ready")   # every pin is installed here (above)
    monkeypatch.setattr(colab, "pins", lambda: {"trl": "0.0.1"})
    assert colab.runtime_report().startswith("The install did not finish: trl")


@pytest.mark.parametrize("bad", ["numpy>=2", "trl"])
def test_only_exact_pins_are_accepted(tmp_path, bad):
    path = tmp_path / "req.txt"
    path.write_text(f"# comment\n{bad}\n")
    with pytest.raises(ValueError, match="is not a name==version pin"):
        colab.pins(path)
