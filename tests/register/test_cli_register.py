"""`otbio register` on the bundled slices: outputs, evaluation table, errors, --seed."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
from click.testing import CliRunner

from otbio.cli import cli

S1 = "test_data/spatial/breast_st_slice1.h5ad"
S2 = "test_data/spatial/breast_st_slice2.h5ad"


@pytest.fixture(autouse=True)
def _root(monkeypatch, request):
    monkeypatch.chdir(request.config.rootpath)


def _run(args):
    return CliRunner().invoke(cli, args)


def test_register_real_slices_writes_everything(tmp_path):
    out = tmp_path / "reg.h5ad"
    fig = tmp_path / "ba.png"
    mt = tmp_path / "m.tsv"
    r = _run(
        [
            "--seed",
            "0",
            "register",
            S1,
            S2,
            "-o",
            str(out),
            "--plot",
            str(fig),
            "--save-matches",
            str(mt),
            "--evaluate",
        ]
    )
    assert r.exit_code == 0, r.output
    a = ad.read_h5ad(out)
    assert a.obsm["spatial_registered"].shape == a.obsm["spatial"].shape
    assert "displacement" in a.obsm
    reg = a.uns["registration"]
    assert reg["converged"] and {"scale", "rotation", "translation", "sigma", "trace"} <= set(reg)
    assert reg["metrics"]["fold_free_fraction"] >= 0.99
    assert fig.stat().st_size > 10_000
    import pandas as pd

    m = pd.read_csv(mt, sep="\t")
    assert list(m.columns) == ["source", "rank", "target", "p_target_from_source"]
    assert len(m) == 3 * a.n_obs
    assert "knn_preservation" in r.stdout and "fold_free_fraction" in r.stdout
    assert "register: iteration" in r.stderr


def test_true_key_and_label_key(tmp_path, slice1, warped):
    tgt, truth = warped(slice1, 0)
    src = slice1.copy()
    src.obsm["truth"] = truth
    lab = (src.obsm["spatial"][:, 0] > np.median(src.obsm["spatial"][:, 0])).astype(str)
    src.obs["half"] = lab
    keep = [int(n[1:]) for n in tgt.obs_names]
    tgt.obs["half"] = lab[keep]
    src.write_h5ad(tmp_path / "s.h5ad")
    tgt.write_h5ad(tmp_path / "t.h5ad")
    r = _run(
        [
            "register",
            str(tmp_path / "s.h5ad"),
            str(tmp_path / "t.h5ad"),
            "-o",
            str(tmp_path / "o.h5ad"),
            "--evaluate",
            "--true-key",
            "truth",
            "--celltype-key",
            "half",
            "--color-key",
            "half",
            "--plot",
            str(tmp_path / "f.png"),
        ]
    )
    assert r.exit_code == 0, r.output
    met = ad.read_h5ad(tmp_path / "o.h5ad").uns["registration"]["metrics"]
    assert met["rmse_reduction"] >= 0.9
    assert met["label_transfer_after"] >= 0.95 > met["label_transfer_before"]


def _bad_inputs(tmp_path):
    s1 = ad.read_h5ad(S1)
    s2 = ad.read_h5ad(S2)
    cases = {}
    a = s1.copy()
    del a.obsm["spatial"]
    cases["missing spatial key"] = (a, s2, [], "spatial-key")
    a = s1.copy()
    a.obsm["spatial"] = a.obsm["spatial"].copy()
    a.obsm["spatial"][3, 0] = np.nan
    cases["NaN coords"] = (a, s2, [], "NaN")
    b = s2.copy()
    b.var_names = [f"other{i}" for i in range(b.n_vars)]
    cases["no shared genes"] = (s1, b, [], "share no genes")
    cases["too few cells"] = (s1[:2].copy(), s2, [], "at least 3")
    b = s2.copy()
    b.obsm["spatial"] = np.c_[b.obsm["spatial"], np.zeros(b.n_obs)]
    cases["mismatched dims"] = (s1, b, [], "2-D but target")
    cases["bad omega"] = (s1, s2, ["--omega", "1.5"], "omega")
    cases["omega not a number"] = (s1, s2, ["--omega", "half"], "omega")
    return cases


@pytest.mark.parametrize(
    "case",
    [
        "missing spatial key",
        "NaN coords",
        "no shared genes",
        "too few cells",
        "mismatched dims",
        "bad omega",
        "omega not a number",
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, case):
    src, tgt, extra, word = _bad_inputs(tmp_path)[case]
    src.write_h5ad(tmp_path / "s.h5ad")
    tgt.write_h5ad(tmp_path / "t.h5ad")
    out = tmp_path / "o.h5ad"
    fig = tmp_path / "f.png"
    r = _run(
        [
            "register",
            str(tmp_path / "s.h5ad"),
            str(tmp_path / "t.h5ad"),
            "-o",
            str(out),
            "--plot",
            str(fig),
            *extra,
        ]
    )
    assert r.exit_code == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and word in lines[0]
    assert not out.exists() and not fig.exists()
    assert not list(tmp_path.glob(".o.h5ad*"))


def test_missing_file_exit_2(tmp_path):
    r = _run(["register", "nope.h5ad", S2, "-o", str(tmp_path / "o.h5ad")])
    assert r.exit_code == 2 and r.stderr.startswith("Error:")


def test_seed_repeatable_cli(tmp_path):
    outs = []
    for i in range(2):
        o = tmp_path / f"o{i}.h5ad"
        r = _run(
            [
                "--quiet",
                "--seed",
                "5",
                "register",
                S1,
                S2,
                "-o",
                str(o),
                "--downsample",
                "150",
                "--max-iter",
                "60",
            ]
        )
        assert r.exit_code == 0, r.output
        outs.append(ad.read_h5ad(o).obsm["spatial_registered"])
    np.testing.assert_array_equal(outs[0], outs[1])


def test_rigid_and_affine_conflict(tmp_path):
    r = _run(["register", S1, S2, "-o", str(tmp_path / "o.h5ad"), "--rigid-only", "--affine"])
    assert r.exit_code == 2


def test_nonconvergence_policy(tmp_path):
    o = tmp_path / "o.h5ad"
    r = _run(["register", S1, S2, "-o", str(o), "--max-iter", "3"])
    assert r.exit_code == 0 and "did not converge" in r.stderr and o.exists()
    o2 = tmp_path / "o2.h5ad"
    r = _run(
        [
            "--quiet",
            "register",
            S1,
            S2,
            "-o",
            str(o2),
            "--max-iter",
            "3",
            "--on-nonconvergence",
            "error",
        ]
    )
    assert r.exit_code == 1 and r.stderr.startswith("Error:") and not o2.exists()


def test_verbose_prints_one_named_sigma(tmp_path):
    """-v reports the final match scale once, named, with the value of the summary line."""
    r = _run(
        ["-v", "--quiet", "register", S1, S2, "-o", str(tmp_path / "o.h5ad"), "--n-starts", "2"]
    )
    assert r.exit_code == 0, r.output
    lines = [ln for ln in (r.stderr + r.stdout).splitlines() if "sigma" in ln]
    named = [ln for ln in lines if "final match scale sigma" in ln]
    assert len({ln.split("final match scale sigma ")[1].split()[0] for ln in named}) == 1
    assert all("final match scale sigma" in ln for ln in lines)
