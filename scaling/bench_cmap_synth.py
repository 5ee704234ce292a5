"""Scale check: generate CMap-shaped profiles out of core and report time and peak RSS.

    python scaling/bench_cmap_synth.py --profiles 1300000 --store /tmp/cmap_1p3m.zarr
Writes scaling/results/cmap_synth.json. The store goes outside the repo (it is ~5 GB at 1.3M).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _util import RSSSampler  # scaling/ is on sys.path when run as a script


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--profiles", type=int, default=1_300_000)
    ap.add_argument("--cells", type=int, default=71)
    ap.add_argument("--drugs", type=int, default=20_000)
    ap.add_argument("--store", default="/tmp/cmap_synth_bench.zarr")
    ap.add_argument("--aggregate", action="store_true", help="also aggregate to (cell, drug) pairs out of core")
    args = ap.parse_args()
    from bigntk.apps.cmap.synth import synthesize
    from bigntk.store import aggregate_to_store

    rss = RSSSampler()
    t = time.perf_counter()
    st = synthesize(args.store, profiles=args.profiles, cells=args.cells, drugs=args.drugs, overwrite=True,
                    progress=False)
    t_synth = time.perf_counter() - t
    rss_synth = rss.peak_bytes
    print(f"synth: {st} in {t_synth:.1f} s, peak RSS {rss_synth / 2**30:.2f} GiB", flush=True)
    out = {"profiles": args.profiles, "cells": args.cells, "drugs": args.drugs, "synth_s": t_synth,
           "synth_peak_rss_gib": rss_synth / 2**30,
           "machine": "2-core shared CPU, no GPU, under load from ~6 parallel sessions"}
    if args.aggregate:
        t = time.perf_counter()
        agg = aggregate_to_store(st, args.store + ".pairs.zarr", overwrite=True, progress=False)
        out.update(aggregate_s=time.perf_counter() - t, pairs=agg.n_profiles, peak_rss_gib=rss.peak_bytes / 2**30)
        print(f"aggregate: {agg} in {out['aggregate_s']:.1f} s, peak RSS {rss.peak_bytes / 2**30:.2f} GiB", flush=True)
    rss.stop()
    res = Path(__file__).parent / "results" / "cmap_synth.json"
    res.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
