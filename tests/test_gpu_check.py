"""The prepared GPU script runs end to end at toy sizes on the CPU (so it is ready when a GPU is lent)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(300)
def test_gpu_check_smoke_runs_every_section(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "scaling" / "gpu_check.py"), "--smoke", "--out", str(tmp_path)],
                         capture_output=True, text=True, cwd=REPO)
    report = json.loads((tmp_path / "gpu_check_smoke.json").read_text())
    failed = {k: v.get("error") for k, v in report["sections"].items() if v["status"] != "ok"}
    assert out.returncode == 0 and not failed, failed
    assert report["sections"]["distributed"]["rel_diff_vs_in_process"] < 1e-4
