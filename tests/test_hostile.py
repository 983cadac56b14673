"""Hostile inputs (issue 12): every failure is one ``Error:`` line, a documented exit code,
no input changed, and no output or temporary left behind.

Each numbered section follows the issue's list. Work happens in a temporary directory that
holds copies of the real test data; ``files(d)`` (names and contents of everything in it,
hidden files included) must be the same before and after a refused command.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
from click.testing import CliRunner

from otbio.cli import cli

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "test_data"
SLICE1 = DATA / "spatial" / "breast_st_slice1.h5ad"
SLICE2 = DATA / "spatial" / "breast_st_slice2.h5ad"
PDB_A = DATA / "protein" / "adk_open.pdb"
PDB_B = DATA / "protein" / "adk_closed.pdb"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def files(d: Path) -> dict[str, str]:
    return {
        str(p.relative_to(d)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(d.rglob("*"))
        if p.is_file()
    }


#: what a line that says how to fix the problem contains: an option, a list of what exists, or
#: an instruction (a verb the user can act on)
_FIX = re.compile(
    r"(?<![\w-])--?[a-zA-Z]"  # an option: -o, --sample-key
    r"|\((?:there|chains|samples there|var_names there|available)[: ]"  # what exists
    r"|\b(?:pass|use|set|give|choose|check|remove|free|rerun|run|write|raise|lower|fix|embed"
    r"|make|try|delete|rename|install|point|keep|split|add|drop|convert|select|name|wait"
    r"|unset|export|move|copy|increase|reduce|call|read|see|ask|leave|omit|rescale)\b",
    re.IGNORECASE,
)


def names_a_fix(line: str) -> bool:
    """Whether an ``Error:`` line tells the user what to do: an option to change, the values
    that exist, or an instruction."""
    return bool(_FIX.search(line.removeprefix("Error: ")))


def refused(res, before: dict, d: Path, text: str, code: int = 2) -> str:
    """One ``Error:`` line containing ``text`` and naming a fix, exit ``code``, the directory
    unchanged."""
    assert res.exit_code == code, (res.exit_code, res.output)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.stderr
    assert text in lines[0], lines[0]
    assert "internal error" not in lines[0]
    assert names_a_fix(lines[0]), f"the error names no fix: {lines[0]}"
    assert files(d) == before, "an input changed or an output/temporary was left"
    return lines[0]


@pytest.fixture
def work(tmp_path):
    """Copies of real inputs: two slices, two structures, small point clouds."""
    shutil.copy(SLICE1, tmp_path / "s1.h5ad")
    shutil.copy(SLICE2, tmp_path / "s2.h5ad")
    shutil.copy(PDB_A, tmp_path / "query.pdb")
    shutil.copy(PDB_B, tmp_path / "target.pdb")
    x = ad.read_h5ad(SLICE1).obsm["spatial"][:120].astype(float)
    y = ad.read_h5ad(SLICE2).obsm["spatial"][:150].astype(float)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    return tmp_path


@pytest.fixture(scope="module")
def lot_files(tmp_path_factory):
    """A small real embedding (3 donors of the pbmc cohort) and its cells."""
    import otbio.lot as L

    d = tmp_path_factory.mktemp("lot")
    cohort = ad.read_h5ad(DATA / "pbmc_cohort.h5ad")
    donors = sorted(cohort.obs["donor"].unique())[:3]
    keep = np.concatenate([np.flatnonzero(cohort.obs["donor"] == s)[:150] for s in donors])
    cells = cohort[keep].copy()
    ref = L.reference(cells, sample_key="donor", use_rep="X_pca", size=16, seed=0)
    emb = L.embed(cells, ref, sample_key="donor", jobs=1, progress=False)
    cells.write_h5ad(d / "cells.h5ad")
    ref.write_h5ad(d / "ref.h5ad")
    emb.write_h5ad(d / "emb.h5ad")
    narrow = cells.copy()
    narrow.obsm["X_pca"] = narrow.obsm["X_pca"][:, :20]  # the first 20 PCs, not all 50
    narrow.write_h5ad(d / "cells20.h5ad")
    other = cells.copy()
    other.obs["donor"] = ["x" + str(s) for s in other.obs["donor"]]
    other.write_h5ad(d / "cells_other.h5ad")
    return d


def _lot_copy(lot_files, tmp_path):
    for name in ("cells.h5ad", "ref.h5ad", "emb.h5ad", "cells20.h5ad", "cells_other.h5ad"):
        shutil.copy(lot_files / name, tmp_path / name)
    return tmp_path


# 1. an output equal to an input never destroys the input --------------------------------


def test_output_equal_to_input_is_refused(work, lot_files):
    d = _lot_copy(lot_files, work)
    os.symlink(d / "emb.h5ad", d / "link.h5ad")
    os.link(d / "cells.h5ad", d / "hard.h5ad")
    before = files(d)
    cases = [
        (["distances", d / "emb.h5ad", "-o", d / "emb.h5ad"], "is the input file"),
        (["reference", d / "cells.h5ad", "--sample-key", "donor", "-o", d / "hard.h5ad"], "input"),
        (["embed", d / "cells.h5ad", "--reference", d / "ref.h5ad", "-o", d / "ref.h5ad"], "input"),
        (["generate", d / "emb.h5ad", "--groupby", "condition", "-o", d / "link.h5ad"], "input"),
        (["align", d / "query.pdb", d / "target.pdb", "-o", d / "query.pdb"], "is the input"),
        (["stack", d / "s1.h5ad", d / "s2.h5ad", "-o", d / "s2.h5ad"], "is the input file"),
        (["register", d / "s1.h5ad", d / "s2.h5ad", "-o", d / "o.h5ad", "--plot", d / "o.h5ad"],
         "name the same file"),
    ]  # fmt: skip
    for args, text in cases:
        refused(run(*args), before, d, text)


# 2. wrong or non-finite numbers never give exit 0 ---------------------------------------


def test_non_finite_and_inconsistent_numbers(work, lot_files):
    d = _lot_copy(lot_files, work)
    np.save(d / "huge.npy", np.load(d / "x.npy") * 1e200)
    np.save(d / "complex.npy", np.load(d / "x.npy") * (1 + 1j))
    neg = ad.read_h5ad(d / "s1.h5ad")
    neg.X = neg.X.toarray() if hasattr(neg.X, "toarray") else np.asarray(neg.X)
    neg.X[0, :5] = -3.0
    neg.write_h5ad(d / "neg.h5ad")
    huge = ad.read_h5ad(d / "cells.h5ad")
    huge.obsm["X_pca"] = huge.obsm["X_pca"].astype(np.float64) * 1e200
    huge.write_h5ad(d / "huge.h5ad")
    genes = ad.read_h5ad(d / "s2.h5ad")
    genes.var_names = [f"other_{g}" for g in genes.var_names]
    genes.write_h5ad(d / "other_genes.h5ad")
    before = files(d)
    x, y, s1, s2 = d / "x.npy", d / "y.npy", d / "s1.h5ad", d / "s2.h5ad"
    cases = [
        (["distances", d / "emb.h5ad", "--exact", "--cells", d / "cells20.h5ad", "-o", d / "t.tsv"],
         "20 dimensions"),
        (["stack", s1, s2, "--z", "nan,1", "-o", d / "st.h5ad"], "--z"),
        (["stack", s1, d / "other_genes.h5ad", "--join", "inner", "-o", d / "st.h5ad"], "--join"),
        (["transport", d / "huge.npy", y, "--save-projection", d / "p.npy"], "overflow"),
        (["reference", d / "huge.h5ad", "--sample-key", "donor", "--use-rep", "X_pca",
          "-o", d / "r.h5ad"], "overflow"),
        (["reference", d / "cells.h5ad", "--sample-key", "donor", "--use-rep", "X_pca",
          "-o", d / "r.h5ad", "--size", "0"], "--size"),
        (["register", s1, s2, "--tol", "nan", "-o", d / "r.h5ad"], "--tol"),
        (["register", s1, s2, "--tol", "-1", "-o", d / "r.h5ad"], "--tol must be positive"),
        (["register", d / "neg.h5ad", s2, "-o", d / "r.h5ad"], "negative"),
        (["transport", d / "complex.npy", y], "complex"),
        (["transport", x, y, "--epsilon", "inf"], "--epsilon"),
    ]  # fmt: skip
    for args, text in cases:
        refused(run(*args), before, d, text)


# 3. several outputs: all or none ---------------------------------------------------------


def test_several_outputs_all_or_none(work, lot_files, monkeypatch):
    d = _lot_copy(lot_files, work)
    before = files(d)
    x, y = d / "x.npy", d / "y.npy"
    # a bad format of a later output is refused before any work
    cases = [
        (["embed", d / "cells.h5ad", "--reference", d / "ref.h5ad", "--sample-key", "donor",
          "-o", d / "e.h5ad", "--plot", d / "e.xyz"], "--plot"),
        (["register", d / "s1.h5ad", d / "s2.h5ad", "-o", d / "r.h5ad", "--plot", d / "r.xyz"],
         "unknown format"),
        (["align", d / "query.pdb", d / "target.pdb", "-o", d / "a.tsv", "--plot", d / "a.xyz"],
         "unknown format"),
        (["transport", x, y, "--save-projection", d / "p.npy", "--save-matches", d / "m.h5ad"],
         "unknown format"),
        (["generate", d / "emb.h5ad", "--groupby", "condition", "-o", d / "g.h5ad",
          "--save-check", d / "g.npy"], "unknown format"),
    ]  # fmt: skip
    for args, text in cases:
        refused(run(*args), before, d, text)
    # a failure while writing the second output (a full disk) leaves not even the first
    import otbio.io as io

    real = io.write_table

    def full_disk(df, path, **kw):
        real(df, path, **kw)
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(io, "write_table", full_disk)
    res = run("transport", x, y, "--save-projection", d / "p.npy", "--save-matches", d / "m.tsv")
    line = refused(res, before, d, "No space left on device", code=1)
    assert "cannot write" in line


# 4. interrupted writes leave nothing; orphans of killed runs are removed ------------------

_SLOW_WRITE = textwrap.dedent(
    """
    import sys, time, anndata
    real = anndata.AnnData.write_h5ad
    def slow(self, path, *a, **k):
        real(self, path, *a, **k)
        print("WRITING", path, flush=True)
        time.sleep(60)
    anndata.AnnData.write_h5ad = slow
    from otbio.cli import main
    sys.argv = ["otbio"] + sys.argv[1:]
    main()
    """
)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_mid_write_leaves_nothing(work, sig, code):
    d = work
    before = files(d)
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_WRITE, "stack", d / "s1.h5ad", d / "s2.h5ad",
         "-o", d / "out" / "st.h5ad"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()  # the temporary is written, the run is mid-command
        assert line.startswith("WRITING"), (line, proc.stderr.read() if proc.poll() else "")
        assert ".otbio-tmp-" in line and Path(line.split()[1]).exists()
        proc.send_signal(sig)
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = [ln for ln in proc.stderr.read().splitlines() if ln.strip()]
    assert rc == code, err
    assert len(err) == 1 and err[0].startswith("Error: interrupted"), err
    assert files(d) == before and not (d / "out").exists()


_MAIN = "import sys; from otbio.cli import main; sys.argv[0] = 'otbio'; main()"


def test_signal_mid_solve_is_prompt(work):
    """SIGINT while the Sinkhorn kernels run (a run that would never end) stops it at once."""
    d = work
    before = files(d)
    proc = subprocess.Popen(
        [sys.executable, "-c", _MAIN, "transport", d / "x.npy", d / "y.npy",
         "--epsilon", "1e-6", "--relative-epsilon", "none", "--tol", "1e-300",
         "--max-iter", "2000000000", "--save-projection", d / "p.npy"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    try:
        line = proc.stderr.readline()  # progress: the solver has run for about 2 s
        assert line.startswith("sinkhorn: iteration"), line
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = [ln for ln in proc.stderr.read().splitlines() if ln.startswith("Error")]
    assert rc == 130 and err == ["Error: interrupted by SIGINT; no output written"], (rc, err)
    assert files(d) == before


def test_orphans_of_dead_runs_are_removed(work):
    import otbio.io as io

    d = work
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    orphan = d / io.tmp_name("st.h5ad", 1, pid=int(dead.stdout))
    alive = d / io.tmp_name("st.h5ad", 1, pid=os.getppid())
    orphan.write_bytes(b"partial")
    alive.write_bytes(b"in progress")
    res = run("stack", d / "s1.h5ad", d / "s2.h5ad", "-o", d / "st.h5ad")
    assert res.exit_code == 0, res.output
    assert not orphan.exists() and alive.exists()
    assert not [p for p in d.iterdir() if p.name.startswith(io.TMP_PREFIX) and p != alive]
    assert ad.read_h5ad(d / "st.h5ad").n_obs == sum(ad.read_h5ad(s).n_obs for s in (SLICE1, SLICE2))


# 5. Numba's cache: unwritable, truncated, and not needed by stack -------------------------

_KERNEL = "import numba\n@numba.njit(cache=True)\ndef twice(x):\n    return 2 * x\n"


def test_numba_cache_failures_cost_only_compile_time(tmp_path):
    (tmp_path / "kmod.py").write_text(_KERNEL)
    (tmp_path / "afile").write_text("")
    env = {**ENV, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}", "TMPDIR": str(tmp_path)}
    code = "import otbio, kmod; print(kmod.twice(21))"
    # no writable cache location at all (read-only install and HOME): falls back, warns once
    nowhere = {**env, "NUMBA_CACHE_LOCATOR_CLASSES": "UserProvidedCacheLocator",
               "NUMBA_CACHE_DIR": str(tmp_path / "afile" / "sub")}  # fmt: skip
    r = subprocess.run([sys.executable, "-c", code], env=nowhere, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "42", r.stderr
    assert r.stderr.count("not writable") == 1
    # a truncated cache file: recompiled, with one warning
    cache = {**env, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-c", code], env=cache, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    index = list((tmp_path / "cache").rglob("*.nbi"))
    assert index
    for p in index + list((tmp_path / "cache").rglob("*.nbc")):
        p.write_bytes(p.read_bytes()[:20])
    r = subprocess.run([sys.executable, "-c", code], env=cache, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "42", r.stderr
    assert r.stderr.count("unreadable Numba cache") == 1
    # stack needs no kernel: with no cache location it neither imports nor compiles one
    stack = (
        "import sys\nfrom otbio.cli import cli\n"
        f"cli.main(['stack', {str(SLICE1)!r}, {str(SLICE2)!r}, '-o', {str(tmp_path / 'st.h5ad')!r}],"
        " standalone_mode=False)\nprint(any(m.startswith(('otbio.ot._kernels', 'otbio.ot._exp', 'otbio.ot._online', "
        "'otbio.ot._dense', 'otbio.register._core')) for m in sys.modules))"
    )
    r = subprocess.run([sys.executable, "-c", stack], env=nowhere, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr
    assert (tmp_path / "st.h5ad").exists()


# 6. --max-iter does not size memory -------------------------------------------------------


def test_huge_max_iter_allocates_nothing(work):
    d = work
    res = run("transport", d / "x.npy", d / "y.npy", "--max-iter", 10**12, "--tol", "1e-4")
    assert res.exit_code == 0, res.output
    assert "converged\tTrue" in res.stdout


# 7. bad values and unwritable locations: exit 2 (or 1), never "internal error" -----------


def test_bad_values_and_unwritable_locations(work):
    d = work
    np.save(d / "nocols.npy", np.zeros((10, 0)))
    same = (d / "query.pdb").read_text().splitlines()
    same = [ln[:30] + f"{1.0:8.3f}{2.0:8.3f}{3.0:8.3f}" + ln[54:] if ln.startswith("ATOM") else ln
            for ln in same]  # fmt: skip
    (d / "same.pdb").write_text("\n".join(same) + "\n")
    (d / "afile").write_text("not a directory")
    before = files(d)
    x, y = d / "x.npy", d / "y.npy"
    cases = [
        (["--seed", "-1", "transport", x, y], "--seed"),
        (["--seed", str(2**70), "transport", x, y], "--seed"),
        (["transport", d / "nocols.npy", y], "0 columns"),
        (["align", d / "same.pdb", d / "target.pdb", "-o", d / "a.tsv"], "coincide"),
        (["stack", d / "s1.h5ad", "-o", d / "afile" / "st.h5ad"], "is not a directory"),
        (["stack", d / "s1.h5ad", "-o", d / ("n" * 300 + ".h5ad")], "longer than 255 bytes"),
        (["stack", d / "s1.h5ad", "-o", d], "is a directory"),
    ]
    if os.geteuid() != 0:  # root writes anywhere
        (d / "ro").mkdir()
        (d / "ro").chmod(0o500)
        before = files(d)
        cases.append((["stack", d / "s1.h5ad", "-o", d / "ro" / "st.h5ad"], "cannot write"))
    for args, text in cases:
        refused(run(*args), before, d, text)


def test_full_disk_is_one_line(work, monkeypatch):
    """HDF5 can crash on a full disk mid-write: .h5ad outputs check the free space first."""
    import otbio.io as io

    d = work
    before = files(d)
    monkeypatch.setattr(io, "_free_bytes", lambda directory: 4096)
    res = run("stack", d / "s1.h5ad", d / "s2.h5ad", "-o", d / "out" / "st.h5ad")
    refused(res, before, d, "No space left on device", code=1)
    assert not (d / "out").exists()


# 8. an empty --samples list is an error, not "every sample" -------------------------------


def test_empty_samples_list(work, lot_files):
    d = _lot_copy(lot_files, work)
    before = files(d)
    for empty in ("", ",,,"):
        res = run("embed", d / "cells.h5ad", "--sample-key", "donor", "--reference",
                  d / "ref.h5ad", "--samples", empty, "-o", d / "e.h5ad")  # fmt: skip
        refused(res, before, d, "--samples")


# 9. one convergence line, right option names, no silent --topk, documented overwrite ------


def test_convergence_line_option_names_and_overwrite(work, lot_files):
    d = _lot_copy(lot_files, work)
    x, y = d / "x.npy", d / "y.npy"
    args = ["transport", x, y, "--epsilon", "1e-4", "--relative-epsilon", "none", "--max-iter", 3]
    res = run(*args)
    assert res.exit_code == 0, res.output
    warn = [ln for ln in res.stderr.splitlines() if "did not converge" in ln]
    assert len(warn) == 1 and warn[0].startswith("otbio: warning: "), res.stderr
    assert "ConvergenceWarning" not in res.stderr and ".py:" not in res.stderr
    res = run("--quiet", *args)
    assert res.exit_code == 0 and res.stderr == "", res.stderr
    # embed: the library's log line and the command's warning become one line
    res = run("embed", d / "cells.h5ad", "--sample-key", "donor", "--reference", d / "ref.h5ad",
              "--solver", "sinkhorn", "--max-iter", 2, "--epsilon", "1e-4", "-o", d / "e.h5ad")  # fmt: skip
    assert res.exit_code == 0, res.output
    warn = [ln for ln in res.stderr.splitlines() if "did not converge" in ln]
    assert warn == ["otbio: warning: 3 of 3 samples did not converge; raise --max-iter, loosen "
                    "--tol or raise --epsilon"], res.stderr  # fmt: skip
    (d / "e.h5ad").unlink()
    before = files(d)
    refused(run("transport", x, y, "--save-matches", d / "m.tsv", "--topk", -1), before, d,
            "--topk")  # fmt: skip
    refused(run("distances", d / "emb.h5ad", "--exact", "--cells", d / "cells_other.h5ad", "-o",
                d / "t.tsv"), before, d, "the cells the embedding was made from")  # fmt: skip
    refused(run("register", d / "s1.h5ad", d / "s2.h5ad", "--target-spatial-key", "nope",
                "-o", d / "r.h5ad"), before, d, "--target-spatial-key")  # fmt: skip
    # overwrite policy (README): an existing output is replaced, atomically and silently
    (d / "st.h5ad").write_text("old")
    res = run("stack", d / "s1.h5ad", d / "s2.h5ad", "-o", d / "st.h5ad")
    assert res.exit_code == 0, res.output
    assert ad.read_h5ad(d / "st.h5ad").n_obs > 0
    assert not [p for p in d.iterdir() if ".otbio-tmp-" in p.name]


def test_guard_costs_nothing_on_success(work):
    """Staged writes land under the final names with the usual permissions."""
    d = work
    res = run("transport", d / "x.npy", d / "y.npy", "--save-projection", d / "sub" / "p.npy",
              "--save-matches", d / "sub" / "m.tsv", "--topk", 2)  # fmt: skip
    assert res.exit_code == 0, res.output
    p = np.load(d / "sub" / "p.npy")
    assert p.shape == (120, 2) and np.isfinite(p).all()
    assert sorted(q.name for q in (d / "sub").iterdir()) == ["m.tsv", "p.npy"]
    umask = os.umask(0)
    os.umask(umask)
    assert (d / "sub" / "p.npy").stat().st_mode & 0o777 == 0o666 & ~umask
