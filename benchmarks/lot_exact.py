"""Exact OT per LOT sample: otbio's solver against POT's ``ot.emd``, over reference size x cells.

For each reference size k (k-means of pooled cells) and cells per sample n, one sample of real
PBMC cells (``scanpy.datasets.pbmc68k_reduced``, first 30 PCs with replacement plus a small
jitter, as benchmarks/lot.py) is transported exactly from the reference:

- POT: ``ot.emd(r, w, ot.dist(z, x))`` (dense network simplex; the route of pyLOT/CytoLOT);
- otbio cold: ``otbio.ot.emd(z, x, r, w)`` (auto: column generation from 250,000 entries);
- otbio warm: the same with ``f0`` = the reference potential of another sample of the cohort,
  as ``otbio embed`` does for every sample after its first batch.

Single-threaded problems: the CPU time of the process (``time.process_time``) is reported,
median of ``--repeats`` (1 when POT takes more than 2 s), and it is what an idle core would take;
wall time on a shared machine is inflated. The three costs must agree to 1e-9 (relative).

``--whole-process``: instead, ``otbio embed`` (default exact solver, every core) against a
serial POT script (read the same h5ad with anndata, per sample ``ot.dist`` + ``ot.emd`` +
projection, save the vectors), both as whole processes alternating, on ``--n-samples`` samples
of ``--n-cells`` cells against a ``--ref-size`` k-means reference made by ``otbio reference``
(not timed); medians of ``--repeats``, wall and CPU seconds.

Run:  python benchmarks/lot_exact.py [--refs 64 250 500 1000 2000] [--cells 500 3000 10000 20000]
      [--repeats 3] [--append]
      python benchmarks/lot_exact.py --whole-process [--n-samples 40 --n-cells 3000
      --ref-size 500] [--repeats 3] [--append]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def cpu(fn, repeats):
    ts, out = [], None
    for _ in range(repeats):
        t = time.process_time()
        out = fn()
        ts.append(time.process_time() - t)
    return float(np.median(ts)), out


POT_EMBED = """
import sys, numpy as np, anndata as ad, ot
cells, ref = ad.read_h5ad(sys.argv[1]), ad.read_h5ad(sys.argv[2])
z = np.asarray(ref.X, dtype=np.float64)
r = np.asarray(ref.obs["weight"], dtype=np.float64)
x_all = np.asarray(cells.obsm["X_pca"], dtype=np.float64)
s = cells.obs["sample"].astype(str).to_numpy()
out = []
for name in dict.fromkeys(s):
    x = x_all[s == name]
    w = np.full(len(x), 1.0 / len(x))
    p = ot.emd(r / r.sum(), w, ot.dist(z, x))
    out.append(((p @ x / p.sum(1)[:, None]) - z) * np.sqrt(r)[:, None])
np.save(sys.argv[3], np.stack(out))
"""


def whole_process(args) -> list[str]:
    """``otbio embed`` vs the serial POT route, whole processes, alternating."""
    import resource
    import subprocess
    import tempfile

    import anndata as ad
    import scanpy as sc

    src = sc.datasets.pbmc68k_reduced()
    base = np.ascontiguousarray(src.obsm["X_pca"][:, :30], dtype=np.float64)
    rng = np.random.default_rng(0)
    sd = base.std(0)
    n, k = args.n_samples * args.n_cells, args.n_cells
    x = base[rng.integers(0, len(base), n)] + 0.1 * sd * rng.normal(size=(n, 30))
    cells = ad.AnnData(np.zeros((n, 1), dtype=np.float32))
    cells.obsm["X_pca"] = x
    cells.obs["sample"] = [f"s{i:03d}" for i in range(args.n_samples) for _ in range(k)]
    cli = [sys.executable, "-c", "from otbio.cli import main; main()"]
    times = {"otbio embed": [], "POT serial": []}
    with tempfile.TemporaryDirectory() as d:
        cells.write_h5ad(f"{d}/cells.h5ad")
        subprocess.run([*cli, "reference", f"{d}/cells.h5ad", "--sample-key", "sample",
                        "--use-rep", "X_pca", "--size", str(args.ref_size), "--seed", "0",
                        "-o", f"{d}/ref.h5ad", "--quiet"], check=True)  # fmt: skip
        ref = ad.read_h5ad(f"{d}/ref.h5ad")
        if "weight" not in ref.obs:
            msg = f"reference obs columns {list(ref.obs)}: no 'weight'"
            raise SystemExit(msg)
        cmds = {
            "otbio embed": [*cli, "embed", f"{d}/cells.h5ad", "--sample-key", "sample",
                            "--use-rep", "X_pca", "--reference", f"{d}/ref.h5ad",
                            "-o", f"{d}/emb.h5ad", "--quiet"],
            "POT serial": [sys.executable, "-c", POT_EMBED, f"{d}/cells.h5ad", f"{d}/ref.h5ad",
                           f"{d}/pot.npy"],
        }  # fmt: skip
        subprocess.run(cmds["otbio embed"], check=True)  # warm the caches
        for _ in range(args.repeats):
            for name, cmd in cmds.items():
                r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                t = time.perf_counter()
                subprocess.run(cmd, check=True)
                wall = time.perf_counter() - t
                r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu_s = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
                times[name].append((wall, cpu_s))
                print(name, times[name][-1], file=sys.stderr, flush=True)
        emb = ad.read_h5ad(f"{d}/emb.h5ad")
        v_pot = np.load(f"{d}/pot.npy").reshape(args.n_samples, -1)
        v = np.asarray(emb.X, dtype=np.float64)
        diff = float(np.linalg.norm(v - v_pot) / np.linalg.norm(v_pot))
    w = {kk: float(np.median([t[0] for t in vv])) for kk, vv in times.items()}
    c = {kk: float(np.median([t[1] for t in vv])) for kk, vv in times.items()}
    return [
        "",
        f"### Whole process: `otbio embed` vs the serial POT route ({time.strftime('%Y-%m-%d')})",
        "",
        f"Command: `python benchmarks/lot_exact.py --whole-process --n-samples {args.n_samples}"
        f" --n-cells {args.n_cells} --ref-size {args.ref_size} --repeats {args.repeats}`."
        f" {args.n_samples} samples x {args.n_cells} cells (pbmc68k PCs, 30-d, jitter), k-means"
        f" reference of {args.ref_size} (`otbio reference`, not timed); whole processes"
        f" alternating, medians of {args.repeats}; load average {os.getloadavg()[0]:.1f} at"
        f" the end. Embeddings agree to {diff:.1e} (relative Frobenius).",
        "",
        "| route | wall s | CPU s |",
        "|---|---|---|",
        *[f"| {kk} | {w[kk]:.2f} | {c[kk]:.2f} |" for kk in w],
        "",
        f"POT / otbio: {w['POT serial'] / w['otbio embed']:.2f}x wall,"
        f" {c['POT serial'] / c['otbio embed']:.2f}x CPU.",
        "",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--refs", type=int, nargs="+", default=[64, 250, 500, 1000, 2000])
    ap.add_argument("--cells", type=int, nargs="+", default=[500, 3000, 10000, 20000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-entries", type=float, default=4e7, help="skip larger k x n")
    ap.add_argument("--append", action="store_true")
    ap.add_argument("--whole-process", action="store_true")
    ap.add_argument("--n-samples", type=int, default=40)
    ap.add_argument("--n-cells", type=int, default=3000)
    ap.add_argument("--ref-size", type=int, default=500)
    args = ap.parse_args()
    if args.whole_process:
        text = "\n".join(whole_process(args))
        print(text)
        if args.append:
            from _results import write_section

            write_section("lot_exact.whole-process", text)
        return
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import ot
    import scanpy as sc

    import otbio.lot as L
    import otbio.ot as O

    src = sc.datasets.pbmc68k_reduced()
    base = np.ascontiguousarray(src.obsm["X_pca"][:, :30], dtype=np.float64)
    rng = np.random.default_rng(0)
    sd = base.std(0)

    def sample(n):
        return base[rng.integers(0, len(base), n)] + 0.1 * sd * rng.normal(size=(n, 30))

    O.emd(base[:50], base[50:120])  # compile / load the kernels
    rows = []
    for k in args.refs:
        pool = [sample(200) for _ in range(10)]
        z, r, _ = L.reference_from_arrays(pool, method="kmeans", size=k, seed=0)
        for n in args.cells:
            if k * n > args.max_entries:
                continue
            w = np.full(n, 1.0 / n)
            prev, x = sample(n), sample(n)
            f0 = O.emd(z, prev, r, w).f

            def pot(z=z, r=r, w=w, x=x):
                return ot.emd2(r, w, ot.dist(z, x), numItermax=10**8)

            t_pot, cost_pot = cpu(pot, 1)
            reps = args.repeats if t_pot < 2 else 1
            if reps > 1:
                t_pot, cost_pot = cpu(pot, reps)
            t_cold, cold = cpu(lambda z=z, x=x, r=r, w=w: O.emd(z, x, r, w), reps)
            t_warm, warm = cpu(lambda z=z, x=x, r=r, w=w, f0=f0: O.emd(z, x, r, w, f0=f0), reps)
            err = max(abs(cold.cost - cost_pot), abs(warm.cost - cost_pot)) / abs(cost_pot)
            row = dict(k=k, n=n, pot=t_pot, cold=t_cold, warm=t_warm, method=warm.method, err=err)
            rows.append(row)
            print(row, file=sys.stderr, flush=True)
    lines = [
        "",
        f"## LOT exact solver per sample: otbio vs POT `ot.emd` ({time.strftime('%Y-%m-%d')})",
        "",
        f"Command: `python benchmarks/lot_exact.py {' '.join(sys.argv[1:])}`".replace(
            " --append", ""
        ),
        "CPU seconds per problem (one thread each; median of up to"
        f" {args.repeats}), load average {os.getloadavg()[0]:.1f} at the end. POT: `ot.dist` +"
        " `ot.emd2`; otbio cold: `otbio.ot.emd` (cost matrix + auto method); warm: with `f0`"
        " from another sample against the same reference (what `otbio embed` does after its"
        " first batch). Ratio < 1: otbio faster. Costs agree within the relative error shown.",
        "",
        "| ref k | cells n | POT s | otbio cold s | otbio warm s | warm / POT | method | rel. cost"
        " diff |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r_ in rows:
        lines.append(
            f"| {r_['k']} | {r_['n']} | {r_['pot']:.3f} | {r_['cold']:.3f} | {r_['warm']:.3f} |"
            f" {r_['warm'] / r_['pot']:.2f} | {r_['method']} | {r_['err']:.1e} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.append:
        from _results import write_section

        write_section("lot_exact", text)


if __name__ == "__main__":
    main()
