"""Hostile numbers (issue 26, items 3-7, 11, the numeric part of 13 and the messages of 14):
NaN, inf, empty and absurd-scale inputs are refused up front with one ``Error:`` line and exit
2, inputs unchanged and nothing left behind; what is accepted is written the way its name says.

The helpers and fixtures (``run``, ``files``, ``refused``, ``work``, ``lot_files``) are those
of tests/test_hostile.py.
"""

from __future__ import annotations

import gzip
import os
import signal
import subprocess
import sys
import time

import anndata as ad
import numpy as np
import pandas as pd
import test_hostile as H
from test_hostile import DATA, ENV, _lot_copy, files, refused, run

# the fixtures of tests/test_hostile.py
work = H.work
lot_files = H.lot_files


def _edit(src, dst, fn):
    a = ad.read_h5ad(src)
    fn(a)
    a.write_h5ad(dst)


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


# 3 (and 13). NaN, inf or no samples in an embedding: every LOT analysis refuses it ---------


def test_non_finite_or_empty_embedding_is_refused(work, lot_files):
    d = _lot_copy(lot_files, work)

    def nan(a):
        x = np.asarray(a.X, dtype=np.float64).copy()
        x[1, 5] = np.nan
        a.X = x

    def inf(a):
        x = np.asarray(a.X, dtype=np.float64).copy()
        x[0, 0] = np.inf
        a.X = x

    _edit(d / "emb.h5ad", d / "nan.h5ad", nan)
    _edit(d / "emb.h5ad", d / "inf.h5ad", inf)
    ad.read_h5ad(d / "emb.h5ad")[:0].copy().write_h5ad(d / "empty.h5ad")
    _edit(d / "emb.h5ad", d / "w.h5ad", lambda a: a.obs.__setitem__("w", [1.0, np.nan, 1.0]))
    before = files(d)
    for emb, text in (("nan.h5ad", "NaN"), ("inf.h5ad", "infinite"), ("empty.h5ad", "0 samples")):
        e = d / emb
        for args in (
            ["distances", e, "-o", d / "t.tsv"],
            ["barycenter", e, "--groupby", "condition", "-o", d / "b.h5ad"],
            ["generate", e, "--groupby", "condition", "-o", d / "g.h5ad"],
            ["classify", e, "--groupby", "condition", "--n-splits", 2, "-o", d / "c"],
        ):
            line = refused(run(*args), before, d, text)
            if emb == "nan.h5ad":
                assert "donor02" in line, line  # names the sample
    # NaN in the sample weights of barycenter
    refused(run("barycenter", d / "w.h5ad", "--groupby", "condition", "--weight-key", "w",
                "-o", d / "b.h5ad"), before, d, "NaN")  # fmt: skip


# 4. embed refuses another representation than the reference's ------------------------------


def test_embed_checks_the_representation(work, lot_files):
    d = _lot_copy(lot_files, work)

    def other(a):
        a.obsm["X_other"] = a.obsm["X_pca"][:, ::-1].copy()  # same width, other coordinates

    def old(a):  # a reference that does not record its representation
        del a.uns["lot_reference"]["params"]["use_rep"]

    _edit(d / "cells.h5ad", d / "cells_x.h5ad", other)
    _edit(d / "ref.h5ad", d / "ref_old.h5ad", old)
    before = files(d)
    args = ["embed", d / "cells_x.h5ad", "--sample-key", "donor", "-o", d / "e.h5ad"]
    line = refused(run(*args, "--reference", d / "ref.h5ad", "--use-rep", "X_other"), before, d,
                   "the reference was made from --use-rep X_pca")  # fmt: skip
    assert "--use-rep X_other" in line
    # the reference's own representation, named or left out, is accepted
    res = run(*args, "--reference", d / "ref.h5ad", "--use-rep", "X_pca")
    assert res.exit_code == 0, res.output
    # an old reference without the record: the width check, and a note at -v (a process of
    # its own: the log handler of an earlier in-process run holds another stderr)
    r = subprocess.run([sys.executable, "-c", H._MAIN, "-v", *map(str, args), "--reference",
                        str(d / "ref_old.h5ad"), "--use-rep", "X_other"],
                       capture_output=True, text=True, env=ENV)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "does not record its representation" in r.stderr
    assert ad.read_h5ad(d / "e.h5ad").uns["lot"]["params"]["use_rep"] == "X_other"


# 5. transport: float32 overflow and an epsilon that overflows are refused up front ----------


def test_transport_refuses_overflow(work):
    d = work
    np.save(d / "xb.npy", np.load(d / "x.npy") * 1e18)
    np.save(d / "yb.npy", np.load(d / "y.npy") * 1e18)
    before = files(d)
    x, y = d / "x.npy", d / "y.npy"
    cases = [
        (["transport", d / "xb.npy", d / "yb.npy", "--dtype", "float32"], "overflow float32"),
        (["transport", x, y, "--epsilon", "1e308", "--relative-epsilon", "max"],
         "--epsilon 1e+308 times the max cost"),
        (["transport", x, y, "--epsilon", "1e308"], "overflows to inf"),
    ]  # fmt: skip
    for args, text in cases:
        refused(run(*args), before, d, text)
    # the same clouds in float64, and the moderate ones in float32, give finite answers
    for args in (["transport", d / "xb.npy", d / "yb.npy"], ["transport", x, y, "--dtype",
                 "float32"]):  # fmt: skip
        res = run(*args)
        assert res.exit_code == 0, res.output
        out = dict(ln.split("\t") for ln in res.stdout.splitlines())
        assert np.isfinite(float(out["cost"])) and float(out["cost"]) > 0
        assert np.isfinite(float(out["epsilon"])) and out["converged"] == "True"


# 6. reference: an absurd scale is refused; a short result is one warning line ---------------


def test_reference_cannot_collapse_silently(work, lot_files):
    d = _lot_copy(lot_files, work)

    def far(a):
        x = np.asarray(a.obsm["X_pca"], dtype=np.float64).copy()
        x[0, 0] = 1e90  # k-means would return 2 points instead of 16
        a.obsm["X_pca"] = x

    def same(a):
        a.obsm["X_pca"] = np.ones_like(a.obsm["X_pca"])

    _edit(d / "cells.h5ad", d / "far.h5ad", far)
    _edit(d / "cells.h5ad", d / "same.h5ad", same)
    before = files(d)
    args = ["reference", "--sample-key", "donor", "--use-rep", "X_pca", "--size", 16]
    refused(run(*args, d / "far.h5ad", "-o", d / "r.h5ad"), before, d, "a cell lies 1e+90")
    # all cells identical: one point, said in one line (in a process of its own: the log
    # handler of an earlier in-process run holds another stderr)
    cmd = [sys.executable, "-c", H._MAIN, *map(str, args), str(d / "same.h5ad"), "-o",
           str(d / "r.h5ad")]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr
    warn = [ln for ln in _lines(r.stderr) if "warning" in ln.lower()]
    assert warn == ["otbio: warning: the reference has 1 point instead of the 16 requested: "
                    "the pooled cells take only 1 distinct position(s)"], r.stderr  # fmt: skip
    assert "KMeans" not in r.stderr and "sklearn" not in r.stderr
    assert ad.read_h5ad(d / "r.h5ad").n_obs == 1
    (d / "r.h5ad").unlink()
    r = subprocess.run(cmd[:3] + ["--quiet"] + cmd[3:], capture_output=True, text=True, env=ENV)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    # ordinary cells give the size asked for, without a warning
    res = run(*args, d / "cells.h5ad", "-o", d / "r.h5ad")
    assert res.exit_code == 0 and "warning" not in res.stderr, res.stderr
    assert ad.read_h5ad(d / "r.h5ad").n_obs == 16


# 7. compressed tables as named; a sample named twice -----------------------------------------


def test_table_format_follows_the_name_and_samples_are_unique(work, lot_files):
    d = _lot_copy(lot_files, work)
    for name, sep in (("d.csv.gz", ","), ("d.tsv.bz2", "\t"), ("d.csv.xz", ","), ("d.csv", ",")):
        res = run("distances", d / "emb.h5ad", "-o", d / name)
        assert res.exit_code == 0, res.output
        df = pd.read_csv(d / name, sep=sep)  # pandas decompresses by the name
        assert list(df.columns) == ["sample_a", "sample_b", "lot"] and len(df) == 3
        assert np.isfinite(df["lot"]).all() and (df["lot"] > 0).all()
    with gzip.open(d / "d.csv.gz", "rt") as fh:  # really gzip, really commas
        assert fh.readline().strip() == "sample_a,sample_b,lot"
    before = files(d)
    for spec in (["donor01,donor01"], ["donor01", "--samples", "donor02,donor01"]):
        res = run("embed", d / "cells.h5ad", "--sample-key", "donor", "--reference",
                  d / "ref.h5ad", "-o", d / "e.h5ad", "--samples", *spec)  # fmt: skip
        refused(res, before, d, "--samples names 'donor01' 2 times")


# 11. classify: C bounded up front; SIGTERM ends a native fit --------------------------------

_NO_C_BOUND = (
    "import sys\nimport otbio.lot._classify as C\nC.C_RANGE = (0.0, float('inf'))\n"
    "from otbio.cli import main\nsys.argv = ['otbio'] + sys.argv[1:]\nmain()\n"
)


def _cohort_embedding(d):
    """An embedding of all 24 donors (60 cells each, 8 reference points): classify needs
    both conditions in every fold."""
    import otbio.lot as L

    cohort = ad.read_h5ad(DATA / "pbmc_cohort.h5ad")
    keep = np.concatenate([np.flatnonzero(cohort.obs["donor"] == s)[:60]
                           for s in sorted(cohort.obs["donor"].unique())])  # fmt: skip
    cells = cohort[keep].copy()
    ref = L.reference(cells, sample_key="donor", use_rep="X_pca", size=8, seed=0)
    L.embed(cells, ref, sample_key="donor", jobs=1).write_h5ad(d / "emb24.h5ad")
    return d / "emb24.h5ad"


def test_classify_bounds_C_and_sigterm_ends_the_fit(work):
    d = work
    emb = _cohort_embedding(d)
    before = files(d)
    args = ["classify", emb, "--groupby", "condition", "--classifier", "logistic-l2",
            "--n-permutations", 0, "--n-repeats", 1, "-o", d / "c"]  # fmt: skip
    t0 = time.perf_counter()
    refused(run(*args, "--C", "1e308"), before, d, "--C must lie between 1e-06 and 1e+06")
    assert time.perf_counter() - t0 < 30
    # without the bound, liblinear never returns at C = 1e308: SIGTERM still ends the command
    proc = subprocess.Popen(
        [sys.executable, "-c", _NO_C_BOUND, *map(str, args), "--C", "1e308"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    try:
        time.sleep(8)  # start-up (about 3 s here) and into the first fit
        assert proc.poll() is None, proc.stderr.read()
        proc.send_signal(signal.SIGTERM)
        t0 = time.perf_counter()
        rc = proc.wait(timeout=20)
        waited = time.perf_counter() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    err = [ln for ln in proc.stderr.read().splitlines() if ln.startswith("Error")]
    assert rc == 143 and waited < 5, (rc, waited)
    assert err == ["Error: interrupted by SIGTERM; no output written"], err
    assert files(d) == before


# 13 (numeric part). register: absurd parameters refused up front; float16 X cast -----------


def test_register_numbers(work):
    d = work
    s1, s2 = d / "s1.h5ad", d / "s2.h5ad"
    before = files(d)
    for opt, value, text in (("--gamma", "1e300", "--gamma must lie between"),
                             ("--lambda", "1e300", "--lambda must lie between"),
                             ("--eta", "1e300", "--eta must lie between"),
                             ("--beta", "1e-300", "--beta must lie between")):  # fmt: skip
        t0 = time.perf_counter()
        refused(run("register", s1, s2, opt, value, "-o", d / "r.h5ad"), before, d, text)
        assert time.perf_counter() - t0 < 20

    def half(a):
        x = a.X.toarray() if hasattr(a.X, "toarray") else np.asarray(a.X)
        a.X = x.astype(np.float16)

    _edit(s1, d / "s1_f16.h5ad", half)
    res = run("register", d / "s1_f16.h5ad", s2, "--rigid-only", "--n-starts", 1, "-o",
              d / "r.h5ad")  # fmt: skip
    assert res.exit_code == 0, res.output
    out = ad.read_h5ad(d / "r.h5ad")
    assert np.isfinite(out.obsm["spatial_registered"]).all()


# 14. messages name the option as typed and what exists --------------------------------------


def test_messages_name_what_exists(work, lot_files):
    d = _lot_copy(lot_files, work)
    (d / "a").mkdir()
    (d / "b").mkdir()
    os.link(d / "cells.h5ad", d / "a" / "cells.h5ad")
    os.link(d / "cells.h5ad", d / "b" / "cells.h5ad")
    _edit(d / "cells.h5ad", d / "nopca.h5ad", lambda a: a.obsm.pop("X_pca"))
    before = files(d)
    line = refused(run("register", d / "s1.h5ad", d / "s2.h5ad", "--lambda", "-1", "-o",
                       d / "r.h5ad"), before, d, "--lambda")  # fmt: skip
    assert "lambda_" not in line
    line = refused(run("barycenter", d / "emb.h5ad", "--groupby", "nope", "-o", d / "b.h5ad"),
                   before, d, "'n_cells'")  # fmt: skip
    assert "--n-cells" not in line
    for cmd in (["distances", d / "emb.h5ad", "--exact", "--cells", d / "nopca.h5ad", "-o",
                 d / "t.tsv"],
                ["barycenter", d / "emb.h5ad", "--groupby", "condition", "--exact", "--cells",
                 d / "nopca.h5ad", "-o", d / "b.h5ad"]):  # fmt: skip
        line = refused(run(*cmd), before, d, "pass the cells the embedding was made from")
        assert "use_rep" not in line and "--use-rep" not in line
    line = refused(run("embed", d / "cells.h5ad", "--sample-key", "donor", "--reference",
                       d / "ref.h5ad", "--solver", "sinkhorn", "--epsilon", "1e308",
                       "-o", d / "e.h5ad"), before, d, "--epsilon 1e+308 times")  # fmt: skip
    assert "got inf" not in line
    line = refused(run("reference", d / "a" / "cells.h5ad", d / "b" / "cells.h5ad",
                       "--sample-key", "donor", "--use-rep", "X_pca", "-o", d / "r.h5ad"),
                   before, d, "appears in both")  # fmt: skip
    assert f"{d / 'a' / 'cells'} and {d / 'b' / 'cells'}" in line, line
