"""``bigntk complete Y.npy --mask M.npy --prior Z.npy --out Yhat.npy`` (or ``--out Yhat.zarr``: a zarr v3
group, :mod:`bigntk.cli._output`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_cluster_args, add_compute_args, add_ntk_args, cluster_from_args, compute_kwargs


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("complete", help="complete a matrix with the fully connected NTK and a feature prior",
                       description="Complete Y (m × n .npy; NaN where missing) with the NTK of Theorem 1.")
    p.add_argument("Y", type=Path, help="(m × n) .npy matrix; unobserved entries may be NaN")
    p.add_argument("--mask", type=Path, default=None,
                   help="(m × n) .npy, nonzero = observed (default: the finite entries of Y)")
    p.add_argument("--prior", type=Path, required=True, help="(p × n) .npy feature prior, one column per column of Y")
    p.add_argument("--out", type=Path, required=True,
                   help="output .npy (the completed matrix) or .zarr (group: completed, observed, attributes; "
                        "xarray.open_zarr opens it)")
    add_ntk_args(p)
    add_compute_args(p)
    add_cluster_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..completion import complete
    from ..persist import check_output_path, load_npy
    from ._output import FORMAT

    check_output_path(args.out, what="--out", kind=FORMAT if args.out.suffix == ".zarr" else None)
    Y = load_npy(args.Y, "Y")
    mask = np.isfinite(Y) if args.mask is None else load_npy(args.mask, "--mask").astype(bool)
    Z = load_npy(args.prior, "--prior")
    with cluster_from_args(args) as client:
        Yhat = complete(Y, mask, Z, depth=args.depth, activation=args.activation,
                        negative_slope=args.negative_slope, ridge=args.ridge, nugget=args.nugget, solver=args.solver,
                        progress=not args.quiet, client=client, **compute_kwargs(args))
    from .. import __version__
    from ._output import save_output

    params = {k: getattr(args, k) for k in ("depth", "activation", "negative_slope", "ridge", "nugget", "solver")}
    save_output(args.out, Yhat, mask, {"method": "ntk", "params": params, "input": str(args.Y),
                                       "prior": str(args.prior), "bigntk_version": __version__})
    print(f"completed {Y.shape[0]}×{Y.shape[1]} ({int(mask.sum())} observed, {int((~mask).sum())} imputed) -> {args.out}")
    return 0
