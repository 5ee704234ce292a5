"""Results table: NTK vs cell mean, DNPP, FaLRTC on the real Level-5 file and on generated data.

    python scaling/results_cmap.py [--methods mean,dnpp,falrtc,ntk,ntk:mixed-dnpp] [--drugs 300] [--only real|generated]
Writes scaling/results/cmap_results.json and prints markdown tables (copied to docs/results_cmap.md).
Real data: l1ktools modzs_n272x978.gctx (3 drugs × 65 lines), leave-one-line-out for each drug,
reference line = MCF7 (training only). Generated: `synthesize` with a small drug count, 978 genes.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bigntk.apps.cmap.cv import CVSettings, cross_validate, markdown_table, paired_test
from bigntk.apps.cmap.ingest import ingest
from bigntk.apps.cmap.synth import synthesize
from bigntk.store import aggregate

DATA = Path(os.environ.get("BIGNTK_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def run(table, methods, settings, label):
    """Cross-validate every method; ``ntk:PRIOR`` runs the NTK with that prior (e.g. ntk:mixed-dnpp)."""
    reps = []
    for m in methods:
        t = time.perf_counter()
        name, _, prior = m.partition(":")
        s = dataclasses.replace(settings, prior=prior) if prior else settings
        r = cross_validate(table, name, s, progress=False)
        reps.append(r)
        print(f"[{label}] {r['method']}: r={r['pearson_r']:.4f} R2={r['mean_r2']:.4f} ({time.perf_counter() - t:.1f} s)",
              flush=True)
    ntk = [r for r in reps if r["method"].startswith("ntk")]
    comps = [paired_test(ntk[0], r, "mean_r2") for r in reps if ntk and r is not ntk[0]]
    md = markdown_table(reps, comps)
    print(md, flush=True)
    return {"label": label, "reports": reps, "comparisons": comps, "markdown": md}


def save(out: dict) -> None:
    """Write what is finished (after every section, so an interrupted run keeps it); sections of an
    earlier run that this one did not redo are kept."""
    res = Path(__file__).parent / "results" / "cmap_results.json"
    done = {sec["label"] for sec in out["sections"]}
    old = json.loads(res.read_text()).get("sections", []) if res.is_file() else []
    merged = dict(out, sections=out["sections"] + [sec for sec in old if sec["label"] not in done])
    res.write_text(json.dumps(merged, indent=1, default=float))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="mean,dnpp,falrtc,ntk")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cells", type=int, default=12)
    ap.add_argument("--drugs", type=int, default=150)
    ap.add_argument("--max-cells", type=int, default=4)
    ap.add_argument("--only", choices=["real", "generated"], default=None, help="run one group of sections")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    methods = args.methods.split(",")
    out = {"machine": f"{os.cpu_count()} CPUs, no GPU, torch threads {args.threads}",
           "load_avg_1m_at_start": os.getloadavg()[0], "date": time.strftime("%Y-%m-%d"), "sections": []}
    tmp = Path(tempfile.mkdtemp())
    src = DATA / "l1000/l1ktools_modzs_n272x978/modzs_n272x978.gctx"
    if src.exists() and args.only != "generated":
        st = ingest(src, tmp / "l5.zarr", drug_field="pert_iname", progress=False)
        table = aggregate(st, progress=False)
        ref = int(np.nonzero(table.cell_names == "MCF7")[0][0])
        # Level-5 profiles are z-scores: DNPP correlates them as they are (no per-line centring)
        s = CVSettings(scheme="loco", min_drugs=1, reference=ref, solver="direct",
                       baseline_kwargs={"dnpp": {"center": False}})
        out["sections"].append(run(table, methods, s, "real Level-5, 3 drugs x 65 lines, leave-one-line-out"))
        save(out)
    if args.only == "real":
        return
    st = synthesize(tmp / "gen.zarr", profiles=20 * args.cells * args.drugs // 10, cells=args.cells, drugs=args.drugs,
                    n_dense=3, dense_frac=(0.6, 0.9), sparse_max=60, seed=0, progress=False)
    table = aggregate(st, progress=False)
    for label, sp in (("generated, dense (all training drugs)", None), ("generated, sparse (10 training drugs)", 10)):
        s = CVSettings(folds=5, rounds=1, max_cells=args.max_cells, sparse_drugs=sp, reference=0, solver="direct")
        out["sections"].append(run(table, methods, s, label))
        save(out)


if __name__ == "__main__":
    main()
