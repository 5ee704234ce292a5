"""Shared pieces of the low-rank completers: input checks and scaling, the held-out split, early
stopping, the iteration loop and the result.

Conventions (all methods): ``Y`` is an ``(m, n)`` array, ``mask`` an ``(m, n)`` boolean array with
True = observed. Unobserved entries of ``Y`` may hold anything (NaN included); they are ignored.
When ``mask`` is None it is ``~isnan(Y)``.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from .._validation import check_matrix_and_mask
from ..backend import resolve_device, resolve_dtype, to_numpy
from ..progress import bar as progress_bar

__all__ = ["check_inputs", "split_observed", "EarlyStopper", "CompletionResult", "ProgressCallback",
           "NumericalError", "Prepared", "prepare"]

#: ``callback(iteration, Yhat)`` is called after every iteration with the current estimate (m, n)
#: (a torch tensor, in the caller's orientation and the data's units). Used by benchmarks to watch
#: the test error; it never influences the fit.
ProgressCallback = Callable[[int, torch.Tensor], None]


class NumericalError(ValueError, ArithmeticError):
    """An iterate, a metric or a linear system became non-finite or could not be factorised."""


def check_inputs(Y: Any, mask: Any | None) -> tuple[np.ndarray, np.ndarray]:
    """Validate ``Y`` (m, n) and ``mask`` (m, n); return ``(Y zero-filled float64, mask bool)``.

    Raises ``ValueError`` for non-2-D or complex input, shape mismatch, a non-boolean mask, NaN/inf
    on observed entries (values beyond the float64 range count as inf), or no observed entry.
    """
    Y, mask = check_matrix_and_mask(Y, mask, zero_one_mask=True, require_observed=True)
    Y = Y.astype(np.float64, copy=True)
    Y[~mask] = 0.0
    return Y, mask


def working_scale(values: np.ndarray) -> float:
    """Power of 4 nearest to ``max |values|`` (1 for all-zero data).

    Dividing by it is exact in binary floating point (and so is the square root of it), so every
    method computes the same iterates, scaled, for data at any magnitude, and float32 can hold data
    (and its squares, in the metrics and Gram matrices) far outside its own range.
    """
    peak = float(np.abs(values).max()) if values.size else 0.0
    if not peak > 0:
        return 1.0
    return 4.0 ** round(math.log(peak, 4))


@dataclass
class Prepared:
    """Validated inputs of one completion.

    ``Y`` (m, n) float64 data, zero-filled off ``mask``; ``mask``, ``train``, ``val`` (m, n) bool
    (observed, training and held-out entries); ``scale`` a power of 4 and ``Yw = Y / scale`` the
    working data the iterations see; ``device`` and ``dtype`` of the iterations.
    """

    Y: np.ndarray
    mask: np.ndarray
    train: np.ndarray
    val: np.ndarray
    scale: float
    Yw: np.ndarray
    device: torch.device
    dtype: torch.dtype

    def report(self, callback: ProgressCallback | None, iteration: int, Yhat: Callable[[], torch.Tensor]) -> None:
        """``callback(iteration, Yhat() * scale)`` (the estimate in data units) when a callback is set."""
        if callback is not None:
            est = Yhat()
            callback(iteration, est * self.scale if self.scale != 1.0 else est)


def prepare(Y: Any, mask: Any | None, val_fraction: float, seed: int, device: Any, dtype: Any) -> Prepared:
    """Check the inputs, split the observed entries (seeded), pick the working scale and device."""
    Y_np, mask_np = check_inputs(Y, mask)
    train, val = split_observed(mask_np, val_fraction, seed)
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    scale = working_scale(Y_np[train])  # held-out entries only judge, they never steer
    return Prepared(Y_np, mask_np, train, val, scale, Y_np / scale, dev, dt)


def check_finite(x: torch.Tensor, what: str, name: str, iteration: int) -> None:
    """Raise :class:`NumericalError` when ``x`` has a NaN or inf (checked every iteration: cheap
    next to the products that made ``x``, and it stops a diverging fit before it hangs)."""
    if not bool(torch.isfinite(x).all()):
        raise NumericalError(
            f"{name}: the {what} became non-finite at iteration {iteration} ({x.dtype}); the iteration "
            "diverged or overflowed. Retry with dtype='float64', or a larger ridge / no momentum.")


def split_observed(mask: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split observed entries into ``(train_mask, val_mask)``, both (m, n) bool.

    A random ``val_fraction`` of the observed entries is held out, except that every row and every
    column keeps at least one training entry when it had one (those entries go back to training).
    ``val_fraction = 0`` gives an empty validation set (no early stopping possible).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1); got {val_fraction}")
    rows, cols = np.nonzero(mask)
    rng = np.random.default_rng(seed)
    n_val = int(round(val_fraction * rows.size))
    val = np.zeros(rows.size, dtype=bool)
    val[rng.choice(rows.size, size=n_val, replace=False)] = True
    # give back one entry to each row / column that lost all its training entries
    for index in (rows, cols):
        order = rng.permutation(rows.size)  # random representative per row/column
        first = np.unique(index[order], return_index=True)[1]
        keep = order[first]
        has_train = np.bincount(index[~val], minlength=index.max() + 1) > 0
        val[keep[~has_train[index[keep]]]] = False
    train_mask = np.zeros_like(mask)
    val_mask = np.zeros_like(mask)
    train_mask[rows[~val], cols[~val]] = True
    val_mask[rows[val], cols[val]] = True
    return train_mask, val_mask


class EarlyStopper:
    """Keep the best iterate by held-out error; stop after ``patience`` iterations without a
    relative improvement of at least ``min_delta`` over the error at the last reset (so a slow but
    steady descent, e.g. 0.05 % per iteration, is not mistaken for a plateau), or once the error
    is below ``tol``.

    With no held-out entries (``has_val=False``) every iterate counts as the best and only
    ``max_iter`` stops the fit.
    """

    def __init__(self, patience: int, min_delta: float = 1e-4, tol: float = 0.0, has_val: bool = True):
        if patience < 1:
            raise ValueError(f"patience must be >= 1; got {patience}")
        self.patience, self.min_delta, self.tol, self.has_val = patience, min_delta, tol, has_val
        self.best = math.inf
        self.best_iter = -1
        self.best_iterate: Any = None
        self.history: list[float] = []
        self._ref = math.inf  # error at the last significant improvement
        self._since = 0

    def update(self, iteration: int, val_error: float) -> tuple[bool, bool]:
        """Record ``val_error``; return ``(is_new_best, should_stop)``."""
        if not self.has_val:
            self.best, self.best_iter = val_error, iteration
            return True, False
        if not math.isfinite(val_error):
            self._since += 1
            return False, self._since >= self.patience
        is_best = val_error < self.best
        if val_error < self._ref * (1.0 - self.min_delta):
            self._since, self._ref = 0, val_error
        else:
            self._since += 1
        if is_best:
            self.best, self.best_iter = val_error, iteration
        return is_best, self._since >= self.patience or val_error <= self.tol

    def record(self, iteration: int, val_error: float, iterate: Any) -> bool:
        """:meth:`update`, plus the history and the best iterate (kept by reference: pass an object
        that is never modified in place afterwards). Returns ``should_stop``."""
        self.history.append(val_error)
        is_best, stop = self.update(iteration, val_error)
        if is_best:
            self.best_iterate = iterate
        return stop


@dataclass
class CompletionResult:
    """Outcome of a low-rank completion.

    ``completed`` (m, n) float64: estimate with every observed entry (held-out ones included) equal
    to its data value. ``history``: relative held-out MSE per iteration (empty without held-out
    entries). ``best_iter``: the iteration whose estimate is returned.
    """

    completed: np.ndarray
    n_iter: int
    best_iter: int
    val_error: float
    history: list[float] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def relative_val_error(Yhat: torch.Tensor, val_rows, val_cols, val_values) -> float:
    """Relative held-out MSE: ||yhat - y||^2 / ||y||^2 on the held-out entries (nan if none)."""
    if val_values.numel() == 0:
        return math.nan
    diff = Yhat[val_rows, val_cols].to(torch.float64) - val_values
    denom = float((val_values**2).sum())
    return float((diff**2).sum()) / (denom if denom > 0 else 1.0)


def finish(Yhat: np.ndarray, Y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Float64 estimate with all observed entries (held-out included) set back to the data."""
    out = np.asarray(Yhat, dtype=np.float64).copy()
    out[mask] = Y[mask]
    return out


def make_result(prep: Prepared, best: torch.Tensor, last_iter: int, stopper: EarlyStopper,
                info: dict[str, Any]) -> CompletionResult:
    """The result of a fit: ``best`` (m, n), in working units, back in data units with every
    observed entry set to its data value; ``info`` gains ``scale`` (the working scale)."""
    out = to_numpy(best.to(torch.float64)) * prep.scale
    if not np.isfinite(out).all():  # never hand back a non-finite completion
        raise NumericalError("the best iterate is not finite; retry with dtype='float64'")
    return CompletionResult(finish(out, prep.Y, prep.mask), last_iter + 1, stopper.best_iter, stopper.best,
                            stopper.history, {**info, "scale": prep.scale})


#: ``step(iteration) -> (stop, progress-bar postfix)``: one iteration of a method
Step = Callable[[int], tuple[bool, dict[str, Any]]]


def run_iterations(name: str, step: Step, max_iter: int, progress: bool, desc: str | None = None,
                   stopper: EarlyStopper | None = None) -> int:
    """Call ``step(0), step(1), ...`` until it asks to stop or ``max_iter`` is reached; return the
    last iteration. A tqdm bar (``progress``) shows the step's postfix. Ctrl-C ends the loop with a
    warning, keeping the best iterate so far (re-raised when ``stopper`` holds none yet)."""
    it = 0
    # no total: the loop stops at its tolerance, usually long before max_iter (a bar to max_iter would mislead)
    bar = progress_bar(None, desc=desc or name, unit="it", progress=progress, leave=False)
    try:
        for it in range(max_iter):
            stop, postfix = step(it)
            bar.update(1)
            bar.set_postfix(**postfix)
            if stop:
                break
    except KeyboardInterrupt:
        if stopper is not None and stopper.best_iterate is None:
            raise
        warnings.warn(f"{name}: interrupted at iteration {it}; returning the best iterate so far",
                      RuntimeWarning, stacklevel=3)
    finally:
        bar.close()
    return it
