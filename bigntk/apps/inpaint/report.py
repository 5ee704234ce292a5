"""JSON reports for inpainting runs.

Top-level keys (always present): ``method``, ``psnr``, ``ssim``, ``psnr_missing`` (None without
ground truth), ``time_s`` (wall time of the method incl. kernel build/load and solve),
``peak_rss_gb`` (process peak RSS, None where not measured), ``settings`` (the options used);
plus ``shape``, ``observed_fraction``, ``depth`` (minimum-depth check) and ``info`` (method
extras: kernel store, solver iterations, ...).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["REPORT_KEYS", "require_keys", "to_jsonable", "write_report"]

REPORT_KEYS = ("method", "psnr", "ssim", "psnr_missing", "time_s", "peak_rss_gb", "settings")


def to_jsonable(obj: Any) -> Any:
    """Recursively convert numpy/torch scalars, paths and tuples; inf/nan become None."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return None if (math.isinf(f) or math.isnan(f)) else f
    if obj is None or isinstance(obj, (int, str)):
        return obj
    return str(obj)


def require_keys(report: dict) -> dict:
    """``report`` itself when it has every key of :data:`REPORT_KEYS`, else ``ValueError``."""
    missing = [k for k in REPORT_KEYS if k not in report]
    if missing:
        raise ValueError(f"report lacks keys {missing}")
    return report


def write_report(path: str | Path, report: dict) -> Path:
    """Write ``report`` as indented JSON (atomically: temp file then rename)."""
    require_keys(report)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(to_jsonable(report), indent=2))
    tmp.replace(path)
    return path
