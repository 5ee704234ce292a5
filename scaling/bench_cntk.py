"""CNTK build-time / peak-memory benchmark → scaling/results/bench_cntk.json.

Each case runs in a fresh subprocess (so peak RSS and the window cache are per case):

    python scaling/bench_cntk.py                 # all cases
    python scaling/bench_cntk.py --quick         # small cases only
    python scaling/bench_cntk.py --case NAME     # one case, prints its JSON record

Figures are wall-clock seconds and peak resident memory of the case's process (ru_maxrss).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "scaling" / "results" / "bench_cntk.json"

CASES = {
    # name: (levels, H, kind)
    "dense_s3_32": (3, 32, "dense"),
    "dense_s3_64": (3, 64, "dense"),
    "full_s6_128": (6, 128, "full_stream"),
    "window_s6_128": (6, 128, "window"),
    "full_s6_256": (6, 256, "full_stream"),
    "full_s3_512": (3, 512, "full_stream"),
    "store_s6_512": (6, 512, "store_full"),            # out of core, window-expanded
    "store_s6_512_stream": (6, 512, "store_full_stream"),  # out of core, layer recursion per block
    "window_s6_2048": (6, 2048, "window_any_size"),
}
QUICK = ("dense_s3_32", "full_s6_128", "window_s6_128", "full_s3_512")


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux


def run_case(name: str) -> dict:
    import numpy as np
    import torch

    from bigntk.kernels.cntk import compact_kernel, dense_kernel, dip

    levels, H, kind = CASES[name]
    arch = dip(levels)
    rec = {"case": name, "levels": levels, "shape": [H, H], "kind": kind}
    ru = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = ru.ru_utime + ru.ru_stime
    t0 = time.perf_counter()
    if kind == "dense":
        K = dense_kernel(arch, (H, H))
        rec["bytes_out"] = K.numel() * 4
    elif kind == "full_stream":
        k = compact_kernel(arch, (H, H), form="full", method="stream")
        rec["bytes_out"] = k.C.numel() * 4
    elif kind == "window":
        k = compact_kernel(arch, (H, H), form="window")
        rec["bytes_out"] = k.C_window.numel() * 4
    elif kind.startswith("store_full"):
        method = "stream" if kind.endswith("stream") else "auto"
        with tempfile.TemporaryDirectory(dir=os.environ.get("BIGNTK_BENCH_TMP")) as tmp:
            k = compact_kernel(arch, (H, H), store=Path(tmp) / "k.zarr", form="full", method=method)
            rec["build_s"] = time.perf_counter() - t0
            rec["store_bytes"] = sum(f.stat().st_size for f in Path(tmp).rglob("*") if f.is_file())
            idx = np.random.default_rng(0).choice(H * H, 64, replace=False)
            t1 = time.perf_counter()
            rows = k.rows(idx)
            rec["rows64_from_store_s"] = time.perf_counter() - t1
            rec["bytes_out"] = 4 * (2 ** levels) ** 2 * H * H
            assert torch.isfinite(rows).all()
    elif kind == "window_any_size":
        k = compact_kernel(arch, (128, 128), form="window")  # the one computation (cold)
        rec["window_cold_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        k2 = compact_kernel(arch, (H, H))  # any size, reusing the window (warm)
        rec["window_warm_s"] = time.perf_counter() - t1
        idx = np.random.default_rng(0).choice(H * H, 2048, replace=False)
        k2.block(idx[:8], idx[:8])  # builds the per-size lookup tables once
        t1 = time.perf_counter()
        B = k2.block(idx, idx)
        rec["block_2048x2048_s"] = time.perf_counter() - t1
        t1 = time.perf_counter()
        R = k2.rows(idx[:16])
        rec["rows16_s"] = time.perf_counter() - t1
        rec["bytes_out"] = k2.C_window.numel() * 4
    rec.setdefault("build_s", time.perf_counter() - t0)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    rec["cpu_s_total"] = ru.ru_utime + ru.ru_stime - cpu0  # all threads, whole case (load-independent-ish)
    rec["peak_rss_gb"] = _peak_rss_gb()
    return rec


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", choices=sorted(CASES))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--skip", nargs="*", default=[], help="case names to leave out")
    args = ap.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(args.case)))
        return 0
    names = [n for n in (QUICK if args.quick else CASES) if n not in args.skip]
    load0 = os.getloadavg()
    results = []
    for name in names:
        proc = subprocess.run([sys.executable, __file__, "--case", name], capture_output=True, text=True)
        if proc.returncode != 0:
            rec = {"case": name, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
        else:
            rec = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(rec)
        print(json.dumps(rec), flush=True)
    import torch

    meta = {
        "machine": f"{platform.machine()} {os.cpu_count()}-core CPU, no GPU" if not torch.cuda.is_available()
        else torch.cuda.get_device_name(0),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "dtype": "float32",
        "load_average_at_start": load0, "load_average_at_end": os.getloadavg(),
        "note": "shared machine: other processes were running; wall-clock times include that load",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
