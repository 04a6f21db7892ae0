"""helpers.profiling: off unless COURSE_PROFILE is set; then each category's own seconds, nested calls not
counted twice."""
import json
import os
import subprocess
import sys

from helpers.paths import ROOT

SCRIPT = """
import time
import helpers                      # installs the timers (COURSE_PROFILE is set)
from helpers.models import load_model
from helpers.evaluation import generate_replies
model, tok = load_model("data/tiny-base")
rows = [{"messages": [{"role": "user", "content": "Where does Mira live?"},
                      {"role": "assistant", "content": "x"}]}]
generate_replies(model, tok, rows, max_new_tokens=4)
time.sleep(0.3)                     # counted as other
"""


def test_a_profile_splits_the_time_by_category(tmp_path):
    report = tmp_path / "profile.json"
    env = {**os.environ, "COURSE_PROFILE": str(report), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, check=True, capture_output=True)
    profile = json.loads(report.read_text())
    assert profile["calls"]["model loads"] == 1 and profile["calls"]["generation"] == 1
    assert profile["seconds"]["model loads"] > 0 and profile["seconds"]["generation"] > 0
    # the forward passes inside generate belong to generation, not to "evaluation passes"
    assert "evaluation passes" not in profile["calls"]
    assert profile["other"] >= 0.3 - 0.05   # written at exit: the sleep after the last timed call counts
    assert profile["total"] >= sum(profile["seconds"].values()) + 0.25


def test_importing_helpers_without_the_variable_wraps_nothing():
    env = {k: v for k, v in os.environ.items() if k != "COURSE_PROFILE"}
    code = "import helpers, helpers.runs; print(hasattr(helpers.runs.train, '__profiled__'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True,
                         text=True).stdout
    assert out.strip() == "False"
