"""Hostile inputs through the API and the CLI: one clear error, before computing, nothing written."""
from __future__ import annotations

import numpy as np
import pytest

import bigntk
from bigntk import priors
from bigntk.cli import main


def _small():
    rng = np.random.default_rng(0)
    return rng.random((3, 6)), np.ones((3, 6), bool), rng.random((2, 6))


@pytest.mark.parametrize("kwargs,err,match", [
    (dict(device="tpu"), ValueError, "device"),
    (dict(dtype="float16"), ValueError, "dtype"),
    (dict(memory_budget=-5), ValueError, "memory budget"),
    (dict(memory_budget="lots"), ValueError, "memory budget"),
    (dict(threads=0), ValueError, "threads"),
    (dict(solver="eigenpro", epochz=3), ValueError, "unknown option"),
    (dict(solver="eigenpro", epochs=0), ValueError, "epochs"),
    (dict(solver="eigenpro", tol=-1), ValueError, "tol"),
    (dict(solver="cg", tol=float("nan")), ValueError, "tol"),
    (dict(solver="direct", epochs=3), ValueError, "no options"),
    (dict(depth=2.5), ValueError, "depth"),
    (dict(nugget=float("inf")), ValueError, "nugget"),
])
def test_api_rejects_bad_settings_with_one_clear_error(kwargs, err, match):
    Y, mask, Z = _small()
    with pytest.raises(err, match=match):
        bigntk.complete(Y, mask, Z, progress=False, **kwargs)


def test_values_beyond_float32_are_refused_not_turned_into_nan():
    Y, mask, Z = _small()
    with pytest.raises(ValueError, match="float64"):
        bigntk.complete(Y * 1e39, mask, Z, progress=False)
    out = bigntk.complete(Y * 1e39, mask, Z, dtype="float64", nugget=1.0, progress=False)
    assert np.isfinite(out).all()


def test_direct_solve_too_large_for_memory_is_refused_before_allocating():
    p = priors.one_hot(np.arange(200_000) % 7, 7)
    with pytest.raises(MemoryError, match="GB"):
        bigntk.complete(np.zeros((1, 200_000)), np.ones((1, 200_000), bool), p, solver="direct", nugget=1.0,
                        progress=False)


@pytest.mark.parametrize("extra,match", [
    (["--memory-budget", "-3"], "memory budget"),
    (["--memory-budget", "12"], "below 1 MB"),
    (["--threads", "0"], "threads"),
    (["--solver", "magic"], "invalid choice"),
    (["--dtype", "float16"], "invalid choice"),
])
def test_cli_rejects_bad_compute_options(tmp_path, capsys, extra, match):
    Y, _, Z = _small()
    np.save(tmp_path / "Y.npy", Y)
    np.save(tmp_path / "Z.npy", Z)
    with pytest.raises(SystemExit) as exc:
        main(["complete", str(tmp_path / "Y.npy"), "--prior", str(tmp_path / "Z.npy"), "--out",
              str(tmp_path / "o.npy"), *extra])
    assert exc.value.code == 2 and match in capsys.readouterr().err
    assert not (tmp_path / "o.npy").exists()


def test_cli_bad_device_is_one_line_and_writes_nothing(tmp_path, capsys):
    Y, _, Z = _small()
    np.save(tmp_path / "Y.npy", Y)
    np.save(tmp_path / "Z.npy", Z)
    rc = main(["complete", str(tmp_path / "Y.npy"), "--prior", str(tmp_path / "Z.npy"), "--out",
               str(tmp_path / "o.npy"), "--device", "tpu", "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "tpu" in err[0] and not (tmp_path / "o.npy").exists()
