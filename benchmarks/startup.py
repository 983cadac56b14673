"""Cold-process start-up of every ``otbio`` command on a tiny input.

Every Snakemake rule and every array task is one process, so start-up counts. For each
command this runs ``python -m otbio.cli ...`` as a fresh process ``--repeats`` times and
reports the median and worst wall time of the whole process and, for the commands that reach
an OT solver, the time from process launch to the first solver call (the first call of a
Numba kernel of ``otbio.ot._kernels`` or of ``otbio.ot.emd`` / ``map_batch``), measured by
an import hook that wraps those functions when their module is first imported (nothing is
imported early). Goal: under 0.5 s to the first kernel call for transport, embed and align.

Run:  python benchmarks/startup.py [--repeats 5] [--append]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "test_data"

PROBE = r"""
import importlib.abc, importlib.machinery, os, sys, time
OUT = os.environ["OTBIO_PROBE_FILE"]
TARGETS = {
    "otbio.ot._kernels": None,  # every dispatcher of __all__ (and _dense_rebase)
    "otbio.ot._exact": ("emd", "map_batch"),
}
done = [False]

def mark():
    if not done[0]:
        done[0] = True
        with open(OUT, "w") as fh:
            fh.write(repr(time.time()))

def wrap(f):
    def inner(*a, **k):
        mark()
        return f(*a, **k)
    return inner

class Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in TARGETS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        run = spec.loader.exec_module
        def exec_module(module):
            run(module)
            names = TARGETS[name] or (*module.__all__, "_dense_rebase")
            for n in names:
                setattr(module, n, wrap(getattr(module, n)))
        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, Finder())
from otbio.cli import main
sys.argv[0] = "otbio"
main()
"""


def _tiny_inputs(d: Path) -> dict[str, str]:
    """Tiny real inputs: 24 donors x 20 cells of the bundled cohort, 200-point clouds, ..."""
    import anndata as ad
    import numpy as np

    cohort = ad.read_h5ad(DATA / "pbmc_cohort.h5ad")
    donor = cohort.obs["donor"].astype(str).to_numpy()
    keep = np.concatenate([np.flatnonzero(donor == s)[:20] for s in dict.fromkeys(donor)])
    cells = cohort[keep].copy()
    cells.write_h5ad(d / "cells.h5ad")
    x = np.asarray(cohort.obsm["X_pca"])
    np.save(d / "a.npy", x[:200, :10])
    np.save(d / "b.npy", x[200:400, :10])
    s1, s2 = (ad.read_h5ad(DATA / "spatial" / f"breast_st_slice{i}.h5ad") for i in (1, 2))
    s1[:150].copy().write_h5ad(d / "s1.h5ad")
    s2[:150].copy().write_h5ad(d / "s2.h5ad")
    p = {k: str(d / v) for k, v in [("cells", "cells.h5ad"), ("a", "a.npy"), ("b", "b.npy"),
                                    ("s1", "s1.h5ad"), ("s2", "s2.h5ad")]}  # fmt: skip
    p["ref"], p["emb"], p["emb2"] = str(d / "ref.h5ad"), str(d / "emb.h5ad"), str(d / "emb2.h5ad")
    p["out"] = str(d / "out")
    return p


def commands(p: dict[str, str]) -> list[tuple[str, list[str]]]:
    prot = DATA / "protein"
    return [
        ("transport", ["transport", p["a"], p["b"]]),
        ("reference", ["reference", p["cells"], "--sample-key", "donor", "--use-rep", "X_pca",
                       "--size", "32", "-o", p["ref"]]),
        ("embed", ["embed", p["cells"], "--sample-key", "donor", "--reference", p["ref"],
                   "-o", p["emb"]]),
        ("embed (sinkhorn)", ["embed", p["cells"], "--sample-key", "donor", "--reference",
                              p["ref"], "--solver", "sinkhorn", "-o", p["emb2"]]),
        ("concat", ["concat", p["emb"], "-o", p["out"] + "_concat.h5ad"]),
        ("barycenter", ["barycenter", p["emb"], "--groupby", "condition", "--n-cells", "50",
                        "-o", p["out"] + "_bary.h5ad"]),
        ("distances", ["distances", p["emb"], "-o", p["out"] + "_dist.tsv"]),
        ("classify", ["classify", p["emb"], "--groupby", "condition", "--n-splits", "3",
                      "--n-repeats", "1", "-o", p["out"] + "_classify"]),
        ("generate", ["generate", p["emb"], "--groupby", "condition", "--n-samples", "2",
                      "--n-cells", "50", "-o", p["out"] + "_gen.h5ad"]),
        ("register", ["register", p["s1"], p["s2"], "--max-iter", "5", "-o",
                      p["out"] + "_reg.h5ad"]),
        ("stack", ["stack", p["s1"], p["s2"], "-o", p["out"] + "_stack.h5ad"]),
        ("align", ["align", f"{prot}/adk_open.pdb::122-159", str(prot / "adk_closed.pdb")]),
    ]  # fmt: skip


def run_once(args: list[str], probe: Path) -> tuple[float, float | None]:
    env = dict(os.environ, OTBIO_PROBE_FILE=str(probe), PYTHONPATH=str(ROOT))
    probe.unlink(missing_ok=True)
    t0 = time.time()
    res = subprocess.run(
        [sys.executable, "-c", PROBE, "--quiet", *args], env=env, capture_output=True, text=True
    )
    t1 = time.time()
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {res.stderr.strip()[-500:]}")
    first = float(probe.read_text()) - t0 if probe.exists() else None
    return t1 - t0, first


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--append", action="store_true", help="append the table to RESULTS.md")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        p = _tiny_inputs(d)
        probe = d / "probe.txt"
        rows = []
        for name, cmd in commands(p):
            run_once(cmd, probe)  # warm the Numba disk cache and the page cache once
            runs = [run_once(cmd, probe) for _ in range(args.repeats)]
            wall = [w for w, _ in runs]
            first = [f for _, f in runs if f is not None]
            rows.append((name, statistics.median(wall), max(wall),
                         statistics.median(first) if first else None,
                         max(first) if first else None))  # fmt: skip
            print(rows[-1], file=sys.stderr, flush=True)
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    lines = [
        "",
        "## Start-up: cold process per command (tiny inputs)",
        "",
        f"Command: `python benchmarks/startup.py --repeats {args.repeats}` (from the repository "
        f"root). Machine: {platform.machine()}, {os.cpu_count()} cores shared with other "
        "sessions (timings noisy). Seconds, median (worst) of the runs, after one warm-up run "
        "(Numba disk cache filled). First solver call: from process launch to the first call of "
        "an otbio Numba kernel or of otbio.ot.emd/map_batch (- when the command runs none). "
        "Goal: < 0.5 s to the first kernel call for transport, embed, align.",
        "",
        "| command | whole process | first solver call |",
        "|---|---|---|",
        *[f"| {n} | {fmt(m)} ({fmt(w)}) | {fmt(fm)} ({fmt(fw)}) |" for n, m, w, fm, fw in rows],
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.append:
        with open(Path(__file__).with_name("RESULTS.md"), "a") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
