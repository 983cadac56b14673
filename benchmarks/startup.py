"""Cold-process start-up of every ``otbio`` command on a tiny input.

Every Snakemake rule and every array task is one process, so start-up counts. For each
command this runs ``python -c PROBE ...`` (``otbio.cli.main`` behind an import hook) as a
fresh process ``--repeats`` times and reports the median and worst wall time of the whole
process and, for the commands that reach a solver:

- *first kernel call*: from process launch to the first call of an otbio Numba kernel or of
  ``otbio.ot.emd`` / ``map_batch`` (the hook wraps ``numba``'s ``Dispatcher._compile_for_args``,
  which every kernel goes through on its first call, and the two exact entry points, when
  their modules are first imported: nothing is imported early);
- *first solver return*: when that first call returned, i.e. including loading the kernel
  from Numba's disk cache (and Numba's one-off target set-up) or importing POT.

Wall times on a shared machine are inflated by the other processes; the CPU time of the
process up to the first kernel call (``time.process_time``) is given beside them, and is
close to what an idle machine's wall time would be for these single-threaded phases. The
floor rows time the same interpreter doing nothing, importing NumPy, importing Numba, and
importing Numba and calling one cached kernel. Goal: under 0.5 s to the first kernel call for
transport, embed and align.

``--baseline DIR`` (a checkout of another revision, e.g. ``git worktree add /tmp/base main``)
alternates every run between that tree and this one, so that both see the same load, and
reports both.

Run:  python benchmarks/startup.py [--repeats 5] [--only transport embed align]
      [--baseline DIR] [--append]
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
import atexit, importlib.abc, importlib.machinery, os, sys, time
OUT = os.environ["OTBIO_PROBE_FILE"]
marks = {}

def mark(tag):
    if tag not in marks:
        marks[tag] = (time.time(), time.process_time())
        with open(OUT, "w") as fh:
            fh.write(repr(marks))

def around(f):
    def inner(*a, **k):
        mark("call")
        try:
            return f(*a, **k)
        finally:
            mark("return")
    return inner

def patch(name, module):
    if name == "numba.core.dispatcher":
        module.Dispatcher._compile_for_args = around(module.Dispatcher._compile_for_args)
    else:
        for n in ("emd", "map_batch"):
            setattr(module, n, around(getattr(module, n)))

class Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in ("numba.core.dispatcher", "otbio.ot._exact"):
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        run = spec.loader.exec_module
        def exec_module(module):
            run(module)
            patch(name, module)
        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, Finder())
atexit.register(mark, "exit")
from otbio.cli import main
sys.argv[0] = "otbio"
main()
"""

FLOORS = [
    ("python (no import)", "pass"),
    ("python + import numpy", "import numpy"),
    ("python + import numba", "import numba"),
    ("python + numba + 1 cached kernel", "import numba, kmod; kmod.twice(21.0)"),
]
_KERNEL = "import numba\n@numba.njit(cache=True)\ndef twice(x):\n    return 2 * x\n"


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


def run_once(
    args: list[str], probe: Path, root: Path = ROOT
) -> tuple[float, dict[str, tuple[float, float]]]:
    env = dict(os.environ, OTBIO_PROBE_FILE=str(probe), PYTHONPATH=str(root))
    probe.unlink(missing_ok=True)
    t0 = time.time()
    res = subprocess.run(
        [sys.executable, "-c", PROBE, "--quiet", *args], env=env, capture_output=True, text=True
    )
    t1 = time.time()
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {res.stderr.strip()[-500:]}")
    marks = eval(probe.read_text()) if probe.exists() else {}  # noqa: S307 (our own repr)
    return t1 - t0, {k: (w - t0, c) for k, (w, c) in marks.items()}


def run_floor(code: str, d: Path) -> tuple[float, float]:
    """Wall and CPU seconds of ``python -c code`` (CPU measured inside, at its end)."""
    env = dict(os.environ, PYTHONPATH=str(d))
    t0 = time.time()
    res = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport time; print(time.process_time())"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return time.time() - t0, float(res.stdout.split()[-1])


def _med(v: list[float]) -> float | None:
    return statistics.median(v) if v else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--only", nargs="+", metavar="COMMAND", help="run only these commands")
    ap.add_argument("--baseline", type=Path, help="another checkout, run alternately with this one")
    ap.add_argument("--append", action="store_true", help="rewrite its section of RESULTS.md")
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        p = _tiny_inputs(d)
        probe = d / "probe.txt"
        (d / "kmod.py").write_text(_KERNEL)
        floors = []
        for name, code in FLOORS:
            run_floor(code, d)  # warm the page cache and the kernel's disk cache
            runs = [run_floor(code, d) for _ in range(args.repeats)]
            floors.append((name, [w for w, _ in runs], [c for _, c in runs]))
            print(name, runs, file=sys.stderr, flush=True)
        rows = []
        for name, cmd in commands(p):
            if args.only and name not in args.only and name.split()[0] not in args.only:
                if name in ("reference", "embed"):  # their outputs are later commands' inputs
                    run_once(cmd, probe)
                continue
            trees = {"": ROOT}
            if args.baseline:
                trees = {" (baseline)": args.baseline.resolve(), " (this tree)": ROOT}
            for root in trees.values():  # warm the Numba disk cache and the page cache once
                run_once(cmd, probe, root)
            all_runs = {label: [] for label in trees}
            for _ in range(args.repeats):  # alternate the trees: both see the same load
                for label, root in trees.items():
                    all_runs[label].append(run_once(cmd, probe, root))
            for label, runs in all_runs.items():
                wall = [w for w, _ in runs]
                call_w = [m["call"][0] for _, m in runs if "call" in m]
                call_c = [m["call"][1] for _, m in runs if "call" in m]
                ret_w = [m["return"][0] for _, m in runs if "return" in m]
                ret_c = [m["return"][1] for _, m in runs if "return" in m]
                cpu = [m["exit"][1] for _, m in runs if "exit" in m]
                rows.append((name + label, wall, cpu, call_w, call_c, ret_w, ret_c))
                print(name + label, runs, file=sys.stderr, flush=True)
    load1 = os.getloadavg()[0]

    def mw(v: list[float]) -> str:  # median (worst)
        return "-" if not v else f"{_med(v):.2f} ({max(v):.2f})"

    def m(v: list[float]) -> str:
        return "-" if not v else f"{_med(v):.2f}"

    only = f" --only {' '.join(args.only)}" if args.only else ""
    only += f" --baseline {args.baseline}" if args.baseline else ""
    lines = [
        "",
        "## Start-up: cold process per command (tiny inputs)",
        "",
        f"Command: `python benchmarks/startup.py --repeats {args.repeats}{only}` (from the "
        f"repository root). Machine: {platform.machine()}, {os.cpu_count()} cores shared with "
        f"other sessions, load average {load0:.1f} at the start and {load1:.1f} at the end "
        "(wall times inflated). Seconds, median (worst) of the runs, after one warm-up run "
        "(Numba disk cache filled); CPU = the process's CPU time (median), close to an idle "
        "machine's wall time. First kernel call: from process launch to the first call of an "
        "otbio Numba kernel or of otbio.ot.emd/map_batch; first return: when that call "
        "returned (kernel loaded from the cache, or POT imported). Goal: < 0.5 s to the first "
        "kernel call for transport, embed, align.",
        "",
        "| command | whole process | CPU | first kernel call | CPU | first return | CPU |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {n} | {mw(w)} | {m(c)} | {mw(cw)} | {m(cc)} | {mw(rw)} | {m(rc)} |"
            for n, w, c, cw, cc, rw, rc in rows
        ],
        "",
        "Floor (same interpreter, same runs): wall median (worst), CPU median.",
        "",
        "| floor | wall | CPU |",
        "|---|---|---|",
        *[f"| {n} | {mw(w)} | {m(c)} |" for n, w, c in floors],
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.append:
        from _results import write_section

        write_section("startup.ab" if args.baseline else "startup", text)


if __name__ == "__main__":
    main()
