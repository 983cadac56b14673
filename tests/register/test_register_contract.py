"""The AnnData contract of `register`: key_added, copy=False in place, uns[key]['params']."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import otbio
import otbio.register as R
from otbio.cli import cli


def _pair():
    """A small tissue and a known warp of it (features in obsm['feat'])."""
    y, f = R.synthetic_tissue(300, 6, seed=1)
    x = R.known_warp(y, seed=2, amp=0.05)
    obs = pd.DataFrame(index=[f"c{i}" for i in range(len(y))])
    src = ad.AnnData(obs=obs)
    src.obsm["spatial"] = y
    src.obsm["feat"] = f
    tgt = src.copy()
    tgt.obsm["spatial"] = x
    return src, tgt, x


def _state(a):
    return set(a.obsm.keys()), set(a.uns.keys()), np.asarray(a.obsm["spatial"]).copy()


@pytest.mark.filterwarnings("ignore::otbio.ConvergenceWarning")
def test_default_writes_in_place_and_returns_the_result():
    src, tgt, truth = _pair()
    before_t = _state(tgt)
    spatial, feat = src.obsm["spatial"], src.obsm["feat"]
    res = otbio.register(src, tgt, use_rep="feat", seed=0)
    assert isinstance(res, R.RegistrationResult)
    assert src.obsm["spatial"] is spatial and src.obsm["feat"] is feat  # nothing copied
    assert {"spatial_registered", "displacement"} <= set(src.obsm)
    np.testing.assert_array_equal(src.obsm["spatial_registered"], res.registered)
    np.testing.assert_allclose(
        src.obsm["displacement"], src.obsm["spatial_registered"] - src.obsm["spatial"]
    )
    assert R.rmse(res.registered, truth) < 0.05 * R.rmse(src.obsm["spatial"], truth)
    p = src.uns["registration"]["params"]
    assert p["key_added"] == "spatial_registered" and p["use_rep"] == "feat"
    assert p["spatial_key"] == "spatial" and p["seed"] == 0 and p["mode"] == "nonrigid"
    # the target is only read
    after_t = _state(tgt)
    assert after_t[:2] == before_t[:2]
    np.testing.assert_array_equal(after_t[2], before_t[2])
    # the old `adata, result = register(...)` pattern fails with a message that says why
    with pytest.raises(TypeError, match="copy=True"):
        _out, _res = otbio.register(src, tgt, use_rep="feat", max_iter=5)


def test_copy_leaves_the_source_untouched_and_gives_the_same_answer():
    src, tgt, _ = _pair()
    before = _state(src)
    out, res = otbio.register(src, tgt, use_rep="feat", seed=0, copy=True)
    after = _state(src)
    assert after[:2] == before[:2] and "spatial_registered" not in src.obsm
    np.testing.assert_array_equal(after[2], before[2])
    assert out is not src and "spatial_registered" in out.obsm
    in_place = otbio.register(src, tgt, use_rep="feat", seed=0)
    np.testing.assert_allclose(in_place.registered, res.registered, rtol=0, atol=1e-9)
    np.testing.assert_allclose(src.obsm["spatial_registered"], out.obsm["spatial_registered"])


def test_key_added_names_every_key_and_params_serialise(tmp_path):
    src, tgt, _ = _pair()
    otbio.register(src, tgt, use_rep="feat", seed=0, mode="rigid", key_added="to_b")
    assert {"to_b", "to_b_displacement"} <= set(src.obsm) and "to_b" in src.uns
    assert "spatial_registered" not in src.obsm and "displacement" not in src.obsm
    assert "registration" not in src.uns
    assert R.registration_keys("to_b") == ("to_b_displacement", "to_b")
    assert R.registration_keys() == ("displacement", "registration")
    p = src.uns["to_b"]["params"]
    assert p["key_added"] == "to_b" and p["mode"] == "rigid"
    # a second registration in the same slice keeps the first
    otbio.register(src, tgt, use_rep="feat", seed=0, max_iter=40)
    assert "to_b" in src.uns and "registration" in src.uns
    json.dumps(src.uns["registration"]["params"])  # plain Python
    src.write_h5ad(tmp_path / "r.h5ad")
    back = ad.read_h5ad(tmp_path / "r.h5ad").uns["registration"]["params"]
    assert back["beta"] == src.uns["registration"]["params"]["beta"]
    with pytest.raises(ValueError, match="key_added"):
        otbio.register(src, tgt, use_rep="feat", key_added="")


def test_cli_key_added(tmp_path):
    src, tgt, truth = _pair()
    src.obsm["truth"] = truth
    src.write_h5ad(tmp_path / "s.h5ad")
    tgt.write_h5ad(tmp_path / "t.h5ad")
    out = tmp_path / "o.h5ad"
    args = ["register", str(tmp_path / "s.h5ad"), str(tmp_path / "t.h5ad"), "--use-rep", "feat"]
    r = CliRunner().invoke(
        cli, [*args, "--key-added", "to_t", "--evaluate", "--true-key", "truth", "-o", str(out)]
    )
    assert r.exit_code == 0, r.output
    a = ad.read_h5ad(out)
    assert {"to_t", "to_t_displacement"} <= set(a.obsm) and "spatial_registered" not in a.obsm
    assert a.uns["to_t"]["params"]["key_added"] == "to_t"
    assert a.uns["to_t"]["metrics"]["rmse_reduction"] >= 0.9
    # replacing the coordinates themselves: the evaluation still starts from the originals
    r = CliRunner().invoke(
        cli, [*args, "--key-added", "spatial", "--evaluate", "--true-key", "truth", "-o", str(out)]
    )
    assert r.exit_code == 0, r.output
    a = ad.read_h5ad(out)
    assert a.uns["spatial"]["metrics"]["rmse_reduction"] >= 0.9
    np.testing.assert_allclose(
        a.obsm["spatial"] - a.obsm["spatial_displacement"], src.obsm["spatial"]
    )
    r = CliRunner().invoke(cli, [*args, "--key-added", " ", "-o", str(tmp_path / "x.h5ad")])
    assert r.exit_code == 2 and "--key-added" in r.output
    assert not (tmp_path / "x.h5ad").exists()
