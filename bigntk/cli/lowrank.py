"""``bigntk lowrank Y.npy --mask M.npy --method linrfm|gd|als|softimpute [--alpha 0.5] --out Yhat.npy``.

Inputs and output may be ``.npy`` files or zarr arrays (a path ending in ``.zarr`` or a directory).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ._common import add_device_args


def _is_zarr(path: Path) -> bool:
    return path.suffix == ".zarr" or path.is_dir()


def load_array(path: Path) -> np.ndarray:
    """Read a .npy file or a zarr array into memory."""
    if not path.exists():
        raise FileNotFoundError(f"no such file or zarr array: {path}")
    if _is_zarr(path):
        import zarr

        return np.asarray(zarr.open_array(str(path), mode="r")[...])
    return np.load(path)


def save_array(path: Path, array: np.ndarray) -> None:
    """Write ``array`` to a .npy file, or to a zarr array when ``path`` ends in ``.zarr``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".zarr":
        import zarr

        chunks = tuple(min(s, 1024) for s in array.shape)
        z = zarr.open_array(str(path), mode="w", shape=array.shape, dtype=array.dtype, chunks=chunks)
        z[...] = array
    else:
        np.save(path, array)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lowrank", help="low-rank completion: lin-RFM or a classic baseline",
                       description="Complete a low-rank matrix Y (m × n; NaN allowed where missing) with "
                                   "lin-RFM or the gd / als / softimpute baselines.")
    p.add_argument("Y", type=Path, help="(m × n) .npy or zarr array; unobserved entries may be NaN")
    p.add_argument("--mask", type=Path, default=None,
                   help="(m × n) .npy or zarr array, nonzero = observed (default: the non-NaN entries)")
    p.add_argument("--method", default="linrfm", choices=["linrfm", "gd", "als", "softimpute"])
    p.add_argument("--out", type=Path, required=True, help="output .npy (or .zarr) for the completion")
    p.add_argument("--alpha", type=float, default=0.5, help="lin-RFM metric power: P = M^(2 alpha)")
    p.add_argument("--reg", type=float, default=None, help="lin-RFM starting relative ridge (default 1e-2)")
    p.add_argument("--momentum", type=float, default=None,
                   help="lin-RFM extrapolation weight β in [0, 1), restarted when the held-out error rises (default 0.9)")
    p.add_argument("--reg-schedule", choices=["val", "decay"], default=None,
                   help="lin-RFM ridge schedule: follow the held-out error ('val', default) or decay geometrically")
    p.add_argument("--rank", type=int, default=10, help="factor rank for gd / als (default 10)")
    p.add_argument("--svd-rank", type=int, default=None, help="softimpute: randomised SVD of this rank")
    p.add_argument("--max-iter", type=int, default=None, help="iteration cap (method default if omitted)")
    p.add_argument("--patience", type=int, default=None, help="iterations without held-out improvement")
    p.add_argument("--val-fraction", type=float, default=0.1, help="held-out fraction of observed entries")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_device_args(p)
    p.set_defaults(func=run)


def _method_kwargs(args: argparse.Namespace) -> dict:
    kw: dict = {"val_fraction": args.val_fraction, "seed": args.seed, "device": args.device,
                "dtype": args.dtype, "progress": not args.quiet}
    if args.method == "linrfm":
        kw["alpha"] = args.alpha
        for name in ("reg", "momentum", "reg_schedule"):
            if getattr(args, name) is not None:
                kw[name] = getattr(args, name)
    elif args.method in ("gd", "als"):
        kw["rank"] = args.rank
    elif args.svd_rank is not None:
        kw["svd_rank"] = args.svd_rank
    if args.max_iter is not None:
        kw["max_iter"] = args.max_iter
    if args.patience is not None:
        kw["patience"] = args.patience
    return kw


def run(args: argparse.Namespace) -> int:
    from ..lowrank import complete_lowrank

    Y = load_array(args.Y)
    mask = None if args.mask is None else load_array(args.mask)
    res = complete_lowrank(Y, mask, args.method, **_method_kwargs(args))
    save_array(args.out, res.completed)
    n_obs = int(np.isfinite(Y).sum()) if mask is None else int(np.count_nonzero(mask))
    print(f"{args.method}: completed {Y.shape[0]}×{Y.shape[1]} ({n_obs} observed) in {res.n_iter} iterations "
          f"(best {res.best_iter}, held-out rel. MSE {res.val_error:.3e}) -> {args.out}")
    return 0
