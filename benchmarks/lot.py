"""LOT embedding benchmark: otbio (exact in threads, entropic) vs the serial POT route.

Cohort: ``--n-samples`` samples of ``--n-cells`` cells in ``--dim`` dimensions, drawn from the
real PBMCs of ``scanpy.datasets.pbmc68k_reduced`` (first ``dim`` PCs, with replacement, plus a
small Gaussian jitter so that cells are distinct; every other sample has a raised share of
CD14+ monocytes). Reference: k-means with ``--ref-size`` points (otbio.lot.reference_from_arrays,
200 cells per sample pooled); its cost is reported but not part of the embedding times.

Routes, each in a fresh process (so that peak memory, ru_maxrss, is its own):
- ``pot``: the plain serial route of pyLOT/CytoLOT: per sample ``ot.dist`` + ``ot.emd`` +
  barycentric projection ``P @ x / r``.
- ``exact``: ``otbio.lot.embed_arrays(solver="exact", jobs=J)`` (``otbio.ot.emd``: POT's
  sparse network simplex by column generation, certified optimal, in ``J`` threads).
- ``sinkhorn``: ``otbio.lot.embed_arrays(solver="sinkhorn", epsilon=E)`` (relative to the mean
  cost, epsilon scaling 0.5, tol 1e-4), samples one after the other.

Errors are relative Frobenius errors of the LOT vectors against the POT route, on the samples
both ran. Run: ``python benchmarks/lot.py`` (full size) or with smaller sizes; ``--append``
writes the table to its section of benchmarks/RESULTS.md (benchmarks/_results.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def make_cohort(base, labels, n_samples, n_cells, seed):
    rng = np.random.default_rng(seed)
    sd = base.std(0)
    mono = np.flatnonzero(labels == "CD14+ Monocyte")
    other = np.flatnonzero(labels != "CD14+ Monocyte")
    clouds = []
    for i in range(n_samples):
        if i % 2 == 0:
            idx = rng.integers(0, base.shape[0], n_cells)
        else:
            n_m = int(0.4 * n_cells)
            idx = np.concatenate(
                [
                    mono[rng.integers(0, mono.size, n_m)],
                    other[rng.integers(0, other.size, n_cells - n_m)],
                ]
            )
        x = base[idx] + rng.normal(size=(n_cells, base.shape[1])) * (0.1 * sd)
        clouds.append(np.ascontiguousarray(x))
    return clouds


def child(args) -> None:
    """One route in this process; writes V and timings to args.result."""
    d = np.load(args.data, allow_pickle=True)
    base, labels, z, r = d["base"], d["labels"], d["z"], d["r"]
    clouds = make_cohort(base, labels, args.n_samples, args.n_cells, args.seed)
    mode, n_run = args.child, args.child_samples
    clouds = clouds[:n_run]
    w = np.full(args.n_cells, 1.0 / args.n_cells)
    times, vs, extra = [], None, {}
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        if mode == "pot":
            import ot

            out = []
            for x in clouds:
                plan = ot.emd(r, w, ot.dist(z, x))
                out.append(((plan @ x / r[:, None]) - z) * np.sqrt(r)[:, None])
            v = np.stack(out)
        else:
            import otbio.lot as L

            t, fits = L.embed_arrays(
                z,
                r,
                clouds,
                [w] * len(clouds),
                solver=mode,
                epsilon=args.epsilon[0],
                tol=1e-4,
                max_iter=3000,
                jobs=args.jobs,
                progress=False,
            )
            v = (t - z) * np.sqrt(r)[None, :, None]
            extra = {
                "n_iter_median": float(np.median([f.n_iter for f in fits])),
                "converged": int(sum(f.converged for f in fits)),
            }
        times.append(time.perf_counter() - t0)
        vs = v
    np.save(args.result + ".npy", vs.reshape(len(clouds), -1))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB on Linux
    Path(args.result).write_text(
        json.dumps({"times": times, "peak_mib": peak, "n": len(clouds), **extra})
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n-samples", type=int, default=100)
    ap.add_argument("--n-cells", type=int, default=5000)
    ap.add_argument("--dim", type=int, default=30)
    ap.add_argument("--ref-size", type=int, default=1000)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1, help="runs per route (median reported)")
    ap.add_argument(
        "--pot-samples",
        type=int,
        default=None,
        help="samples run by the POT route (default all; time scaled to all)",
    )
    ap.add_argument(
        "--sinkhorn-samples",
        type=int,
        default=10,
        help="samples run by the entropic mode (time scaled to all)",
    )
    ap.add_argument(
        "--epsilon",
        type=float,
        nargs="+",
        default=[0.005],
        help="relative epsilons of the entropic mode",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--append", action="store_true", help="rewrite its section of RESULTS.md")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--child-samples", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--data", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return

    import scanpy as sc

    import otbio.lot as L

    src = sc.datasets.pbmc68k_reduced()
    base = np.ascontiguousarray(src.obsm["X_pca"][:, : args.dim], dtype=np.float64)
    labels = src.obs["bulk_labels"].astype(str).to_numpy()
    clouds = make_cohort(base, labels, args.n_samples, args.n_cells, args.seed)
    t0 = time.perf_counter()
    z, r, _ = L.reference_from_arrays(
        clouds, method="kmeans", size=args.ref_size, cells_per_sample=200, seed=args.seed
    )
    t_ref = time.perf_counter() - t0
    del clouds
    print(f"reference: {z.shape[0]} points, {t_ref:.1f} s", file=sys.stderr)
    tmp = Path(tempfile.mkdtemp(prefix="lotbench"))
    data = tmp / "data.npz"
    np.savez(data, base=base, labels=labels, z=z, r=r)
    n_pot = args.pot_samples or args.n_samples

    def run(mode, n, eps=0.0):
        res = str(tmp / f"{mode}_{eps}.json")
        cmd = [
            sys.executable,
            __file__,
            "--child",
            mode,
            "--child-samples",
            str(n),
            "--data",
            str(data),
            "--result",
            res,
            "--n-samples",
            str(args.n_samples),
            "--n-cells",
            str(args.n_cells),
            "--dim",
            str(args.dim),
            "--jobs",
            str(args.jobs),
            "--repeats",
            str(args.repeats),
            "--seed",
            str(args.seed),
            "--epsilon",
            str(eps or 0.005),
        ]
        subprocess.run(cmd, check=True, env={**os.environ, "OTBIO_JOBS": str(args.jobs)})
        out = json.loads(Path(res).read_text())
        out["v"] = np.load(res + ".npy")
        print(
            f"{mode} {eps or ''}: {np.median(out['times']):.1f} s for {n} samples", file=sys.stderr
        )
        return out

    pot = run("pot", n_pot)
    ex = run("exact", args.n_samples)
    sks = [
        (e, run("sinkhorn", min(args.sinkhorn_samples, args.n_samples), e)) for e in args.epsilon
    ]

    def err(v):
        m = min(v.shape[0], pot["v"].shape[0])
        return float(np.linalg.norm(v[:m] - pot["v"][:m]) / np.linalg.norm(pot["v"][:m]))

    def total(res):  # wall time scaled to the whole cohort when a route ran a subset
        return float(np.median(res["times"])) * args.n_samples / res["n"]

    t_pot = total(pot)
    rows = [("POT route (serial ot.emd + projection)", pot, t_pot, 0.0, "")]
    rows.append((f"otbio exact (jobs={args.jobs})", ex, total(ex), err(ex["v"]), ""))
    for e, res in sks:
        note = (
            f"median {res['n_iter_median']:.0f} iterations, {res['converged']}/{res['n']} converged"
        )
        rows.append(
            (f"otbio sinkhorn (epsilon {e} x mean cost)", res, total(res), err(res["v"]), note)
        )
    cmd = "python benchmarks/lot.py " + " ".join(sys.argv[1:])
    lines = [
        "",
        f"## LOT embedding (`otbio embed`): {args.n_samples} samples x {args.n_cells} cells, d={args.dim}, reference {z.shape[0]} points",
        "",
        f"Command: `{cmd}`  ",
        f"Machine: {os.cpu_count()} CPUs visible, jobs={args.jobs}, {platform.python_version()}, shared with other sessions "
        f"(load average at the end {os.getloadavg()[0]:.1f}). Cells: pbmc68k_reduced PCs with jitter. "
        f"Reference (k-means) took {t_ref:.1f} s, not included. Times: median of {args.repeats} run(s); a route run "
        f"on fewer samples than the cohort is scaled to the cohort (samples run column).",
        "",
        "| route | samples run | time for cohort (s) | s / sample | speed-up vs POT | rel. Frobenius error vs exact | peak RSS (MiB) | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, res, t, e, note in rows:
        lines.append(
            f"| {name} | {res['n']} | {t:.1f} | {t / args.n_samples:.2f} | {t_pot / t:.2f}x | {e:.2e} | {res['peak_mib']:.0f} | {note} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.append:
        from _results import write_section

        write_section("lot", text)


if __name__ == "__main__":
    main()
