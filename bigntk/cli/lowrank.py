"""``bigntk lowrank Y.npy --mask M.npy --method linrfm|gd|als|softimpute [--alpha 0.5] --out Yhat.npy``.

Inputs may be ``.npy`` files, bare zarr arrays, or zarr groups (a path ending in ``.zarr`` or a
directory): a group is read through its ``completed`` array (or its only array; name another one
as ``group.zarr/name``), and its ``observed`` array is the default mask. Output: ``.npy`` (the
completion), or with ``--out x.zarr`` a zarr v3 group that ``xarray.open_zarr`` opens as a Dataset:
``completed`` (float64) and ``observed`` (bool), dims ("row", "column"), attributes recording the
method, its parameters and the fit (``format`` "bigntk-completion"). Outputs are written beside the
target and renamed into place, so a failed write leaves the previous output (or none), never a partial
one; an existing directory is replaced only when it is such a group.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from ._common import add_compute_args, compute_kwargs

if TYPE_CHECKING:
    import numpy as np


def _is_zarr(path: Path) -> bool:
    return path.suffix == ".zarr" or path.is_dir()


def load_array(path: Path, name: str = "completed") -> np.ndarray:
    """Read a .npy file, a zarr array, or array ``name`` of a zarr group (its only array when it
    has no ``name``) into memory."""
    if not path.exists():
        raise FileNotFoundError(f"no such file or zarr array: {path}")
    import numpy as np

    if not _is_zarr(path):
        from ..persist import load_npy

        return load_npy(path)
    import zarr

    node = zarr.open(str(path), mode="r")
    if isinstance(node, zarr.Group):
        names = sorted(node.array_keys())
        if name not in names and len(names) != 1:
            raise ValueError(f"zarr group {path} has arrays {names} and no {name!r}; "
                             f"name one as {path}/<array>")
        node = node[name if name in names else names[0]]
    return np.asarray(node[...])


def group_mask(path: Path) -> np.ndarray | None:
    """The ``observed`` array of the zarr group at ``path`` (None for anything else)."""
    if not (_is_zarr(path) and (path / "observed").is_dir()):
        return None
    import numpy as np
    import zarr

    node = zarr.open(str(path), mode="r")
    return np.asarray(node["observed"][...]) if isinstance(node, zarr.Group) else None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lowrank", help="low-rank completion: lin-RFM or a classic baseline",
                       description="Complete a low-rank matrix Y (m × n; NaN allowed where missing) with "
                                   "lin-RFM or the gd / als / softimpute baselines.")
    p.add_argument("Y", type=Path, help="(m × n) .npy, zarr array or zarr group (its 'completed'); "
                                        "unobserved entries may be NaN")
    p.add_argument("--mask", type=Path, default=None,
                   help="(m × n) .npy or zarr array, nonzero = observed (default: the 'observed' array of "
                        "a zarr group Y, else the non-NaN entries)")
    p.add_argument("--method", default="linrfm", choices=["linrfm", "gd", "als", "softimpute"],
                   help="lin-RFM, or a baseline: gradient descent on factors, alternating least squares, SoftImpute")
    p.add_argument("--out", type=Path, required=True,
                   help="output .npy (the completion) or .zarr (group: completed, observed, attributes)")
    p.add_argument("--alpha", type=float, default=0.5, help="lin-RFM metric power: P = M^(2 alpha)")
    p.add_argument("--reg", type=float, default=None,
                   help="lin-RFM starting relative ridge (default 0.1 for alpha < 1, else 1e-2)")
    p.add_argument("--momentum", type=float, default=None,
                   help="lin-RFM extrapolation weight β in [0, 1), restarted when the held-out error rises (default 0.9)")
    p.add_argument("--reg-schedule", choices=["val", "decay"], default=None,
                   help="lin-RFM ridge schedule: follow the held-out error ('val', default) or decay geometrically")
    p.add_argument("--rank", type=int, default=10, help="factor rank for gd / als (default 10)")
    p.add_argument("--svd-rank", type=int, default=None, help="softimpute: randomised SVD of this rank")
    p.add_argument("--max-iter", type=int, default=None, help="iteration cap (method default if omitted)")
    p.add_argument("--patience", type=int, default=None, help="iterations without held-out improvement")
    p.add_argument("--tol", type=float, default=None,
                   help="stop at this relative held-out MSE (method default if omitted; lin-RFM 1e-4)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="held-out fraction of observed entries")
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out split and the initialisation")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_compute_args(p)
    p.set_defaults(func=run)


def _method_kwargs(args: argparse.Namespace) -> dict:
    compute = compute_kwargs(args)
    kw: dict = {"val_fraction": args.val_fraction, "seed": args.seed, "device": compute["device"],
                "dtype": compute["dtype"], "progress": not args.quiet}
    if args.method == "linrfm":
        kw["alpha"] = args.alpha
        kw["memory_budget"] = compute["memory_budget"]
        for name in ("reg", "momentum", "reg_schedule"):
            if getattr(args, name) is not None:
                kw[name] = getattr(args, name)
    elif args.method in ("gd", "als"):
        kw["rank"] = args.rank
    elif args.svd_rank is not None:
        kw["svd_rank"] = args.svd_rank
    for name in ("max_iter", "patience", "tol"):
        if getattr(args, name) is not None:
            kw[name] = getattr(args, name)
    return kw


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from .. import __version__
    from ..lowrank import check_inputs, complete_lowrank
    from ..persist import check_output_path
    from ._output import FORMAT, save_output

    check_output_path(args.out, what="--out", kind=FORMAT if args.out.suffix == ".zarr" else None)
    Y = load_array(args.Y)
    mask = group_mask(args.Y) if args.mask is None else load_array(args.mask, "observed")
    observed = check_inputs(Y, mask)[1]
    kw = _method_kwargs(args)
    res = complete_lowrank(Y, observed, args.method, **kw)
    params = {k: (v if v is None or isinstance(v, (bool, int, float, str)) else str(v)) for k, v in kw.items()}
    attrs = {"method": args.method, "params": params, "n_iter": res.n_iter, "best_iter": res.best_iter,
             "held_out_rel_mse": res.val_error if np.isfinite(res.val_error) else None, "input": str(args.Y),
             "mask": None if args.mask is None else str(args.mask), "bigntk_version": __version__}
    save_output(args.out, res.completed, observed, json.loads(json.dumps(attrs)))
    print(f"{args.method}: completed {Y.shape[0]}×{Y.shape[1]} ({int(observed.sum())} observed) in "
          f"{res.n_iter} iterations (best {res.best_iter}, held-out rel. MSE {res.val_error:.3e}) -> {args.out}")
    return 0
