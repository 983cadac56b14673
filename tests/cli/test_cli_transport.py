"""`otbio` group and `otbio transport` on the bundled slices."""

from __future__ import annotations

import numpy as np
import ot
import pandas as pd
import pytest
from click.testing import CliRunner

from otbio import __version__
from otbio.cli import cli

SLICE1 = "test_data/spatial/breast_st_slice1.h5ad"
SLICE2 = "test_data/spatial/breast_st_slice2.h5ad"


def run(args):
    return CliRunner().invoke(cli, args)


def one_line_error(res, code=2):
    assert res.exit_code == code, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.stderr
    assert "Traceback" not in res.output
    return lines[0]


@pytest.fixture(autouse=True)
def _chdir_root(monkeypatch, test_data):
    monkeypatch.chdir(test_data.parent)


def test_help_and_version():
    res = run(["--help"])
    assert res.exit_code == 0
    assert "transport" in res.output
    res = run(["--version"])
    assert res.exit_code == 0 and __version__ in res.output


def test_transport_on_real_slices_matches_pot(tmp_path):
    import anndata as ad

    pot_file = tmp_path / "pot.npz"
    proj = tmp_path / "proj.npy"
    matches = tmp_path / "m.tsv"
    res = run(
        [
            "transport", SLICE1, SLICE2, "--use-rep", "spatial", "--epsilon", "0.01",
            "--tol", "1e-10", "--save-potentials", str(pot_file),
            "--save-projection", str(proj), "--save-matches", str(matches), "--topk", "3",
        ]
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    table = dict(line.split("\t") for line in res.stdout.strip().splitlines())
    assert table["converged"] == "True"
    x = ad.read_h5ad(SLICE1).obsm["spatial"].astype(float)
    y = ad.read_h5ad(SLICE2).obsm["spatial"].astype(float)
    m = ot.dist(x, y)
    eps = float(table["epsilon"])
    assert eps == pytest.approx(0.01 * m.mean(), rel=1e-10)
    a, b = np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y))
    p = ot.sinkhorn(a, b, m, eps, method="sinkhorn_log", stopThr=1e-13, numItermax=100000)
    assert float(table["cost"]) == pytest.approx(float((p * m).sum()), rel=1e-6)
    np.testing.assert_allclose(np.load(proj), (p @ y) / p.sum(1)[:, None], rtol=1e-6)
    top = pd.read_csv(matches, sep="\t")
    assert len(top) == 3 * len(x)
    best = top[top["rank"] == 1]  # in source order, named by the inputs' obs names
    np.testing.assert_array_equal(best["source"], ad.read_h5ad(SLICE1).obs_names.astype(str))
    names2 = np.asarray(ad.read_h5ad(SLICE2).obs_names.astype(str))
    np.testing.assert_array_equal(best["target"].astype(str), names2[p.argmax(1)])
    assert set(np.load(pot_file).files) == {"f", "g", "epsilon"}


def test_transport_exact_solver():
    res = run(["transport", SLICE1, SLICE2, "--use-rep", "spatial", "--solver", "exact"])
    assert res.exit_code == 0, res.output
    import anndata as ad

    x = ad.read_h5ad(SLICE1).obsm["spatial"].astype(float)
    y = ad.read_h5ad(SLICE2).obsm["spatial"].astype(float)
    exact = ot.emd2(np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y)), ot.dist(x, y))
    cost = float(res.stdout.split("cost\t")[1].split()[0])
    assert cost == pytest.approx(exact, rel=1e-9)


def test_transport_bad_input(tmp_path):
    out = tmp_path / "proj.npy"
    nan = tmp_path / "nan.npy"
    arr = np.random.default_rng(0).random((10, 2))
    arr[3, 1] = np.nan
    np.save(nan, arr)
    three = tmp_path / "three.npy"
    np.save(three, np.ones((5, 3)))
    zero = tmp_path / "zero.csv"
    pd.DataFrame({"x": [0.0, 1.0], "y": [1.0, 0.0], "w": [0.0, 0.0]}).to_csv(zero, index=False)
    cases = [
        (["transport", "missing.h5ad", SLICE2], "not found"),
        (["transport", str(nan), str(three)], "NaN"),
        (["transport", SLICE1, str(three), "--use-rep", "spatial"], "dimension"),
        (["transport", str(zero), str(zero), "--weight-key", "w"], "sum to zero"),
        (["transport", SLICE1, SLICE2, "--use-rep", "spatial", "--epsilon", "-1"], "epsilon"),
        (["transport", SLICE1, SLICE2, "--use-rep", "X_pca"], "X_pca"),
    ]
    for args, needle in cases:
        line = one_line_error(run([*args, "--save-projection", str(out)]))
        assert needle in line, line
        assert not out.exists()
