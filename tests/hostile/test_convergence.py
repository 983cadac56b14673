"""One convergence policy for every solver (issue 26, item 8): a result that did not converge
gives one ``otbio: warning:`` line on stderr (none under --quiet), is marked in its
``converged`` field, and fails with exit 1 and nothing written under
``--on-nonconvergence error``; a converged result (a perfect match in align) says nothing.

The helpers and fixtures are those of tests/test_hostile.py.
"""

from __future__ import annotations

import anndata as ad
import pandas as pd
import test_hostile as H
from test_hostile import DATA, _lot_copy, files, refused, run

# the fixtures of tests/test_hostile.py
work = H.work
lot_files = H.lot_files


def _warnings(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if "warning" in ln.lower()]


def test_reference_barycenter_convergence_line(work, lot_files):
    d = _lot_copy(lot_files, work)
    args = ["reference", d / "cells.h5ad", "--sample-key", "donor", "--use-rep", "X_pca",
            "--size", 16, "--method", "barycenter"]  # fmt: skip
    res = run(*args, "--max-iter", 1, "-o", d / "r.h5ad")
    assert res.exit_code == 0, res.output
    assert _warnings(res.stderr) == [
        "otbio: warning: the barycenter reference (--max-iter 1) did not converge; raise --max-iter"
    ], res.stderr
    assert not bool(ad.read_h5ad(d / "r.h5ad").uns["lot_reference"]["converged"])
    (d / "r.h5ad").unlink()
    res = run("--quiet", *args, "--max-iter", 1, "-o", d / "r.h5ad")
    assert res.exit_code == 0 and res.stderr == "", res.stderr
    (d / "r.h5ad").unlink()
    before = files(d)
    res = run(*args, "--max-iter", 1, "--on-nonconvergence", "error", "-o", d / "r.h5ad")
    refused(res, before, d, "did not converge", code=1)
    # enough iterations: converged, and silent
    res = run(*args, "--max-iter", 100, "-o", d / "r.h5ad")
    assert res.exit_code == 0 and not _warnings(res.stderr), res.stderr
    assert bool(ad.read_h5ad(d / "r.h5ad").uns["lot_reference"]["converged"])


def _table(stdout: str) -> pd.DataFrame:
    from io import StringIO

    return pd.read_csv(StringIO(stdout), sep="\t")


def test_align_converged_means_settled(work):
    d = work
    q, t = d / "query.pdb", d / "target.pdb"
    # a perfect match is converged although its Sinkhorn rounds stop at 20 iterations
    res = run("align", q, q)
    assert res.exit_code == 0, res.output
    tab = _table(res.stdout)
    assert tab["converged"].tolist() == [True] and tab["tm_score"].iloc[0] == 1.0
    assert not _warnings(res.stderr), res.stderr
    # related and unrelated targets at the default settings: settled, no line
    other = DATA / "protein" / "1hvr.pdb"
    res = run("align", q, t, other)
    assert res.exit_code == 0, res.output
    assert _table(res.stdout)["converged"].all() and not _warnings(res.stderr), res.stderr
    # rounds cut to 5 iterations: the unrelated target's pairs still move; one summary line
    res = run("align", q, t, other, "--round-iter", 5)
    assert res.exit_code == 0, res.output
    tab = _table(res.stdout)
    n_bad = int((~tab["converged"]).sum())
    assert n_bad >= 1
    assert _warnings(res.stderr) == [
        f"otbio: warning: {n_bad} of 2 alignments did not converge; the pairs still change "
        "with more iterations (converged False); raise --round-iter"
    ], res.stderr
    res = run("--quiet", "align", q, t, other, "--round-iter", 5)
    assert res.exit_code == 0 and res.stderr == "", res.stderr


def test_help_states_what_converged_means():
    for cmd in ("transport", "reference", "embed", "register"):
        text = " ".join(run(cmd, "--help").output.split())
        assert "converged False" in text, cmd
    text = " ".join(run("align", "--help").output.split())
    assert "converged (the alignment settled" in text
