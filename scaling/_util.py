"""Helpers for the benchmark scripts: peak memory, timing, JSON output."""
from __future__ import annotations

import json
import platform
import resource
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def peak_rss_gb() -> float:
    """Peak resident set size of this process so far, in GB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def machine() -> dict:
    """Where the figures were taken."""
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return {"python": sys.version.split()[0], "torch": torch.__version__, "platform": platform.platform(),
            "cpu_threads": torch.get_num_threads(), "device": dev}


@contextmanager
def timer(out: dict, key: str):
    """Store the wall time of the block in ``out[key]`` (seconds)."""
    t0 = time.perf_counter()
    yield
    out[key] = time.perf_counter() - t0


def write_json(name: str, payload: dict) -> Path:
    """Write ``scaling/results/<name>.json`` with the machine description and print its path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2))
    print(f"wrote {path}")
    return path
