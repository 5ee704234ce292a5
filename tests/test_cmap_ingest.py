"""GCTX / GCT ingest against the real L1000 files (skips without ../shared/data)."""
import h5py
import numpy as np
import pytest

from bigntk.apps.cmap.ingest import ingest

L5 = "l1000/l1ktools_modzs_n272x978/modzs_n272x978.gctx"
GCT = "l1000/cmapPy_test_l1000/test_l1000.gct"
GCTX4 = "l1000/cmapPy_test_l1000/test_l1000_highprecision.gctx"


def test_gctx_level5_ids_values_metadata(data_dir, tmp_path):
    src = data_dir / L5
    st = ingest(src, tmp_path / "s.zarr", drug_field="pert_iname", progress=False)
    with h5py.File(src, "r") as f:
        M = f["0/DATA/0/matrix"][:]
        col_ids = f["0/META/COL/id"][:].astype(str)
        row_ids = f["0/META/ROW/id"][:].astype(str)
        cells = f["0/META/COL/cell_id"][:].astype(str)
        ss = f["0/META/COL/distil_ss"][:]
    assert st.n_profiles == 272 and st.n_genes == 978
    np.testing.assert_array_equal(st.read(), M)
    np.testing.assert_array_equal(st.labels("profile_ids"), col_ids)
    np.testing.assert_array_equal(st.gene_ids, row_ids)
    np.testing.assert_array_equal(st.cell_names[st.labels("cell")], cells)
    np.testing.assert_array_equal(st.labels("distil_ss"), ss)
    assert len(st.cell_names) == 65 and sorted(st.drug_names) == ["atorvastatin", "vemurafenib", "venlafaxine"]
    assert set(np.unique(st.labels("time"))) <= {6.0, 24.0}


def test_gct_text_matches_independent_parse(data_dir, tmp_path):
    src = data_dir / GCT
    st = ingest(src, tmp_path / "s.zarr", landmark_only=True, progress=False)
    lines = src.read_text().splitlines()
    n_rows, n_cols, n_rd, n_cd = map(int, lines[1].split("\t"))
    header = lines[2].split("\t")
    data = np.array([l.split("\t")[1 + n_rd:] for l in lines[3 + n_cd:]], dtype=np.float32)
    data[data == -666] = np.nan
    np.testing.assert_array_equal(st.labels("profile_ids"), header[1 + n_rd:])
    assert st.n_genes == 978  # every gene of the plate is a landmark
    np.testing.assert_array_equal(st.read(), data.T)
    # the same plate as GCTX: same ids and same well / perturbagen metadata
    st4 = ingest(data_dir / GCTX4, tmp_path / "t.zarr", progress=False)
    np.testing.assert_array_equal(st4.labels("profile_ids"), st.labels("profile_ids"))
    np.testing.assert_array_equal(st4.gene_ids, st.gene_ids)
    for field in ("cell_id", "pert_id", "det_well", "pert_iname"):
        np.testing.assert_array_equal(st4.labels(field), st.labels(field))
    assert np.isnan(st.labels("dose")[:4]).all() and st.labels("dose")[4] == 10.0  # '-666' -> NaN


def test_ingest_errors(tmp_path):
    bad = tmp_path / "x.txt"
    bad.write_text("hi")
    with pytest.raises(ValueError, match=".gctx or .gct"):
        ingest(bad, tmp_path / "s.zarr")
    gct = tmp_path / "x.gct"
    gct.write_text("#2.0\n")
    with pytest.raises(ValueError, match="version"):
        ingest(gct, tmp_path / "s.zarr")


def _cmappy_parse():
    """cmapPy's parse, or skip: cmapPy 4.0.1 imports but fails on pandas 3 (to_numeric(errors='ignore'))."""
    parse = pytest.importorskip("cmapPy.pandasGEXpress.parse").parse
    import pandas as pd

    if int(pd.__version__.split(".")[0]) >= 3:
        pytest.skip(f"cmapPy needs pandas < 3 (found {pd.__version__})")
    return parse


# Not the Level-5 file: cmapPy 4.0.1 itself fails on it (UnicodeDecodeError on a Latin-1 'µ' in the
# column metadata), which our ingest reads (test_gctx_level5_ids_values_metadata).
@pytest.mark.parametrize("rel", [GCT, GCTX4])
def test_ids_values_and_metadata_match_cmappy(data_dir, tmp_path, rel):
    parse = _cmappy_parse()
    src = data_dir / rel
    g = parse(str(src))
    st = ingest(src, tmp_path / "s.zarr", progress=False)
    np.testing.assert_array_equal(st.labels("profile_ids"), g.data_df.columns.astype(str))
    np.testing.assert_array_equal(st.gene_ids, g.data_df.index.astype(str))
    np.testing.assert_allclose(st.read(), g.data_df.to_numpy().T, rtol=1e-6, equal_nan=True)
    for field in ("cell_id", "pert_id", "pert_iname"):
        if field in g.col_metadata_df.columns:
            np.testing.assert_array_equal(st.labels(field), g.col_metadata_df[field].astype(str).to_numpy())


def test_landmark_only_knows_cmappys_pr_is_lm_and_keeps_ids(tmp_path):
    """cmapPy / GEO gene_info name the landmark flag ``pr_is_lm``; ids stay exactly as in the file."""
    cols = ["CPC006_A375_6H:BRD-K1:10", "CPC006_A549_6H:BRD-K2:10", "CPC006_A375_6H:BRD-K2:10"]
    lines = ["#1.3", "3\t3\t2\t2", "\t".join(["id", "pr_gene_symbol", "pr_is_lm", *cols]),
             "\t".join(["cell_id", "na", "na", "A375", "A549", "A375"]),
             "\t".join(["pert_id", "na", "na", "BRD-K1", "BRD-K2", "BRD-K2"]),
             "\t".join(["200814_at", "PSME1", "1", "0.5", "1.5", "-666"]),
             "\t".join(["222103_at", "ATF1", "0", "2.0", "3.0", "4.0"]),
             "\t".join(["201453_x_at", "RHEB", "1", "-1.0", "0.25", "7.0"])]
    src = tmp_path / "lm.gct"
    src.write_text("\n".join(lines) + "\n")
    st = ingest(src, tmp_path / "s.zarr", landmark_only=True, progress=False)
    assert list(st.gene_ids) == ["200814_at", "201453_x_at"]
    assert list(st.row_meta("pr_gene_symbol")) == ["PSME1", "RHEB"]
    assert list(st.labels("profile_ids")) == cols
    np.testing.assert_array_equal(st.read(), np.array([[0.5, -1.0], [1.5, 0.25], [np.nan, 7.0]], np.float32))
