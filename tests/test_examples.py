"""The runnable examples run (the demo itself is `make demo`, too slow for the test suite)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_ask_tell_example_runs_and_learns(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "ask_tell.py")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    # The rule starts at w = b = 0 (every point predicted negative: error 0.55).
    rates = [float(rate) for rate in re.findall(r"error rate ([0-9.]+)", done.stdout)]
    assert len(rates) == 2 and rates[1] <= rates[0] < 0.2
