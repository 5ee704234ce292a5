"""Observation store: append, interrupted writes, format errors, streaming aggregation."""

import numpy as np
import pytest
import zarr

from bigntk.store import (IncompleteStoreError, ObservationWriter, StoreFormatError, aggregate,
                          aggregate_to_store, open_store)


def _write(path, X, cell, drug, chunk_rows=4, close=True):
    w = ObservationWriter.create(path, [f"g{i}" for i in range(X.shape[1])], chunk_rows=chunk_rows)
    for s in range(0, len(X), 5):
        w.append(X[s:s + 5], cell[s:s + 5], drug[s:s + 5])
    if close:
        w.close()
    return w


def test_append_roundtrip_and_plain_zarr(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((23, 7)).astype(np.float32)
    cell = np.array(["A", "B", "C"])[rng.integers(0, 3, 23)]
    drug = np.array(["d1", "d2"])[rng.integers(0, 2, 23)]
    _write(tmp_path / "s.zarr", X, cell, drug)
    st = open_store(tmp_path / "s.zarr")
    assert st.n_profiles == 23 and st.n_genes == 7
    np.testing.assert_array_equal(st.read(), X)
    np.testing.assert_array_equal(st.cell_names[st.labels("cell")], cell)
    np.testing.assert_array_equal(st.drug_names[st.labels("drug")], drug)
    g = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")  # readable with plain zarr
    assert g["expression"].shape == (23, 7) and g.attrs["committed_rows"] == 23
    chunks = list(st.iter_chunks())
    assert sum(e - s for s, e, _ in chunks) == 23 and all(x.shape[0] <= 4 for *_, x in chunks)


def test_interrupted_write_reads_committed_rows_and_resumes(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((10, 3)).astype(np.float32)
    w = _write(tmp_path / "s.zarr", X, np.zeros(10, int).astype(str), np.arange(10).astype(str), close=False)
    # simulate a crash mid-append: arrays grown and partly written, counter not bumped
    w.group["expression"].resize((14, 3))
    w.group["expression"][10:14] = 99.0
    with pytest.raises(IncompleteStoreError, match="10 committed"):
        open_store(tmp_path / "s.zarr")
    with pytest.warns(RuntimeWarning, match="incomplete"):
        st = open_store(tmp_path / "s.zarr", allow_incomplete=True)
    assert st.n_profiles == 10 and not (st.read() == 99.0).any()
    w2 = ObservationWriter.resume(tmp_path / "s.zarr")
    w2.append(X[:2] + 1, ["0", "0"], ["a", "b"])
    w2.close()
    st = open_store(tmp_path / "s.zarr")
    assert st.n_profiles == 12
    np.testing.assert_array_equal(st.read(10, 12), X[:2] + 1)


def test_foreign_and_other_version_errors(tmp_path):
    zarr.open_group(str(tmp_path / "other.zarr"), mode="w").attrs["x"] = 1
    with pytest.raises(StoreFormatError, match="not a bigntk observation store"):
        open_store(tmp_path / "other.zarr")
    _write(tmp_path / "s.zarr", np.zeros((3, 2), np.float32), ["a"] * 3, ["b"] * 3)
    zarr.open_group(str(tmp_path / "s.zarr"), mode="r+").attrs["format_version"] = 99
    with pytest.raises(StoreFormatError, match="version 99"):
        open_store(tmp_path / "s.zarr")
    with pytest.raises(FileNotFoundError):
        open_store(tmp_path / "missing.zarr")
    with pytest.raises(ValueError, match="shape"):
        ObservationWriter.create(tmp_path / "t.zarr", ["a", "b"]).append(np.zeros((2, 3)), [0, 0], [0, 0])


def test_streaming_aggregation_matches_groupby(tmp_path):
    rng = np.random.default_rng(2)
    n = 60
    X = rng.standard_normal((n, 5)).astype(np.float32)
    X[3, 2] = np.nan  # NaN-aware mean
    cell = rng.integers(0, 3, n).astype(str)
    drug = rng.integers(0, 4, n).astype(str)
    _write(tmp_path / "s.zarr", X, cell, drug)
    st = open_store(tmp_path / "s.zarr")
    # a tiny memory budget forces several buckets (several streaming passes)
    p = aggregate(st, max_bytes=5 * 2 * 8 * 5, progress=False)
    c_names, d_names = st.cell_names[p.cell], st.drug_names[p.drug]
    assert p.n_pairs == len(set(zip(cell, drug)))
    for i in range(p.n_pairs):
        rows = (cell == c_names[i]) & (drug == d_names[i])
        np.testing.assert_allclose(p.Y[i], np.nanmean(X[rows], 0), rtol=1e-5)
        assert p.count[i] == rows.sum()
    out = aggregate_to_store(st, tmp_path / "pairs.zarr", max_bytes=400, progress=False)
    np.testing.assert_allclose(out.read(), p.Y)
    np.testing.assert_array_equal(out.labels("replicate"), p.count)


def test_missing_expression_chunk_is_an_error_not_nan(tmp_path):
    """A deleted data chunk (or an all-NaN chunk, which is still written) never reads as fill values."""
    from bigntk.persist import MissingChunkError

    rng = np.random.default_rng(0)
    X = rng.standard_normal((12, 3)).astype(np.float32)
    X[4:8] = np.nan  # one whole chunk of NaN: written like any other
    cell, drug = np.array(["A", "B"])[rng.integers(0, 2, 12)], np.array(["d"] * 12)
    _write(tmp_path / "s.zarr", X, cell, drug)
    np.testing.assert_array_equal(open_store(tmp_path / "s.zarr").read(), X)
    chunk = tmp_path / "s.zarr" / "expression" / "c" / "2" / "0"
    assert chunk.is_file()
    chunk.unlink()
    with pytest.raises(MissingChunkError, match="1 of 3 chunks"):
        open_store(tmp_path / "s.zarr")
