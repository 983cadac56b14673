"""`otbio stack` and `otbio register --target-spatial-key` (slice series)."""

from __future__ import annotations

import anndata as ad
import numpy as np
from click.testing import CliRunner

from otbio.cli import cli

S1 = "test_data/spatial/breast_st_slice1.h5ad"
S2 = "test_data/spatial/breast_st_slice2.h5ad"


def test_register_onto_target_frame_and_stack(tmp_path, monkeypatch, test_data):
    monkeypatch.chdir(test_data.parent)
    # the target already placed in a common frame: shifted by a known offset
    tgt = ad.read_h5ad(S2)
    offset = np.array([100.0, -50.0])
    tgt.obsm["frame"] = tgt.obsm["spatial"] + offset
    tgt_path = tmp_path / "t.h5ad"
    tgt.write_h5ad(tgt_path)
    reg = tmp_path / "r.h5ad"
    runner = CliRunner()
    base = ["register", S1, str(tgt_path), "--rigid-only", "--max-iter", "60"]
    res = runner.invoke(cli, [*base, "--target-spatial-key", "frame", "-o", str(reg)])
    assert res.exit_code == 0, res.output
    ref = tmp_path / "ref.h5ad"
    res = runner.invoke(cli, [*base, "-o", str(ref)])
    assert res.exit_code == 0, res.output
    framed = ad.read_h5ad(reg).obsm["spatial_registered"]
    plain = ad.read_h5ad(ref).obsm["spatial_registered"]
    # the map into the shifted frame is the plain map plus the offset
    np.testing.assert_allclose(framed, plain + offset, atol=0.05)

    out = tmp_path / "stack.h5ad"
    res = runner.invoke(
        cli,
        [
            "stack", str(tgt_path), str(reg), "--spatial-keys", "frame,spatial_registered",
            "--z", "0,5", "--names", "s2,s1", "-o", str(out),
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    st = ad.read_h5ad(out)
    n2, n1 = tgt.n_obs, len(framed)
    assert st.n_obs == n1 + n2
    assert list(st.obs["section"].cat.categories) == ["s2", "s1"]
    np.testing.assert_allclose(st.obsm["spatial_3d"][:n2, :2], tgt.obsm["frame"])
    np.testing.assert_allclose(st.obsm["spatial_3d"][n2:, :2], framed)
    np.testing.assert_array_equal(st.obsm["spatial_3d"][:, 2], [0.0] * n2 + [5.0] * n1)
    p = st.uns["stack"]["params"]
    assert list(p["spatial_keys"]) == ["frame", "spatial_registered"] and p["join"] == "outer"
    assert list(p["z"]) == [0.0, 5.0] and list(p["names"]) == ["s2", "s1"]


def test_stack_bad_input(tmp_path, monkeypatch, test_data):
    monkeypatch.chdir(test_data.parent)
    out = tmp_path / "stack.h5ad"
    runner = CliRunner()
    for args, needle in [
        ([S1, S2, "--spatial-keys", "nope"], "nope"),
        ([S1, S2, "--z", "0,1,2"], "z values"),
        ([S1, "missing.h5ad"], "not found"),
    ]:
        res = runner.invoke(cli, ["stack", *args, "-o", str(out)])
        assert res.exit_code == 2, res.output
        assert len(res.stderr.strip().splitlines()) == 1 and needle in res.stderr
        assert not out.exists()
