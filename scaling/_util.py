"""Helpers for the benchmark scripts: peak memory, timing, JSON output."""
from __future__ import annotations

import json
import platform
import resource
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def peak_rss_gb() -> float:
    """Peak resident set size of this process so far, in GB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


class RSSSampler:
    """Samples this process's RSS every ``interval`` s in a daemon thread; ``peak_bytes`` is the
    largest seen (unlike ``ru_maxrss`` it can be read per phase of a run)."""

    def __init__(self, interval: float = 0.2) -> None:
        import psutil

        self.proc, self.peak_bytes, self._stop = psutil.Process(), 0, threading.Event()
        self._interval = float(interval)
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self.proc.memory_info().rss)
            time.sleep(self._interval)

    def stop(self) -> int:
        """Stop sampling; returns the peak in bytes."""
        self._stop.set()
        return self.peak_bytes


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
