"""Engine benchmark: otbio's online log-domain Sinkhorn side by side with POT.

Run:  python benchmarks/engine.py [--sizes 1000 4000 16000] [--repeats 3] [--append]

Measures, on uniform random clouds in d = 10 (float64 unless said):
1. time per Sinkhorn iteration (both half-steps) for otbio, POT ``sinkhorn_log`` and POT's
   kernel-domain ``sinkhorn``; throughput in (i, j) terms per second, counting the 2 n m
   terms of one iteration; POT is skipped where its dense matrices would not fit;
2. otbio's extra peak memory at n = m = 100,000 (a subprocess, a few iterations);
3. time to a transport cost within 1% of ``ot.emd2`` at n = 4000: otbio with epsilon
   scaling against POT's fastest solver to the same accuracy;
4. a float32 row;
5. ``--sweep``: iterations to the default tolerance over epsilon = 0.001-0.1 x the mean cost
   on four data sets (uniform cube, two bundled donors, two clustered clouds), with epsilon
   scaling off, with the fixed schedule of otbio 0.1 (10 iterations per level) and with the
   default (adaptive) schedule; ``--sweep-only`` runs only this table.
Medians of ``--repeats`` runs. With ``--append`` the table replaces its section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import ot

import otbio.ot as O

D = 10
MEM_BUDGET = 8e9  # bytes POT may use (it allocates about 4 dense n x m float64 arrays)


def clouds(n, m, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, D)).astype(dtype), rng.random((m, D)).astype(dtype)


def med(ts):
    return float(np.median(ts))


def otbio_iter_time(x, y, iters, repeats):
    """Seconds per iteration at a fixed iteration count (tolerance never reached)."""
    solver = O.Sinkhorn(
        epsilon=0.05, relative_epsilon="mean", tol=1e-30, max_iter=iters, warn=False
    )
    geom = O.PointCloud(x, y)
    solver(geom)  # compile and warm the shifts
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        solver(O.PointCloud(x, y))
        ts.append((time.perf_counter() - t) / (iters + 1))  # +1: the closing cost pass
    return med(ts)


def pot_iter_time(x, y, method, iters, repeats):
    n, m = len(x), len(y)
    a, b = np.full(n, 1 / n), np.full(m, 1 / m)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        mat = ot.dist(x, y)
        t1 = time.perf_counter()
        ot.sinkhorn(a, b, mat, 0.05 * mat.mean(), method=method, numItermax=iters, stopThr=0.0)
        ts.append((time.perf_counter() - t1) / iters)
        del mat, t0
    return med(ts)


def iteration_table(sizes, repeats):
    rows = []
    for n in sizes:
        x, y = clouds(n, n)
        iters = 50 if n <= 4000 else 10
        t_otbio = otbio_iter_time(x, y, iters, repeats)
        fits = 4 * n * n * 8 < MEM_BUDGET
        t_log = (
            pot_iter_time(x, y, "sinkhorn_log", 5 if n <= 4000 else 3, repeats) if fits else None
        )
        t_ker = pot_iter_time(x, y, "sinkhorn", iters, repeats) if fits else None
        x32, y32 = clouds(n, n, np.float32)
        t32 = otbio_iter_time(x32, y32, iters, repeats)
        rows.append(dict(n=n, otbio=t_otbio, otbio32=t32, pot_log=t_log, pot_kernel=t_ker))
        print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


def peak_memory(n, iters=2):
    code = textwrap.dedent(
        f"""
        import resource, numpy as np, otbio.ot as O
        rng = np.random.default_rng(0)
        x = rng.random(({n}, {D})); y = rng.random(({n}, {D}))
        # compile on a small problem first so that the JIT's memory is not counted
        O.Sinkhorn(epsilon=0.05, max_iter=2, warn=False)(O.PointCloud(x[:100], y[:100]))
        O.sinkhorn(x[:100], y[:100], epsilon=0.05).barycentric_projection()
        def status(key):
            for line in open("/proc/self/status"):
                if line.startswith(key):
                    return int(line.split()[1])
        open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to now
        base = status("VmRSS:")
        out = O.Sinkhorn(epsilon=0.05, relative_epsilon="mean", max_iter={iters}, tol=1e-30,
                         warn=False)(O.PointCloud(x, y))
        proj = out.barycentric_projection()
        peak = status("VmHWM:")
        print((peak - base) / 1024)
        """
    )
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(res.stdout.split()[-1]), time.perf_counter() - t


def time_to_accuracy(n, repeats):
    """Fastest time to a cost within 1% of emd2, for otbio and for POT's solvers."""
    x, y = clouds(n, n, seed=1)
    a = b = np.full(n, 1 / n)
    t = time.perf_counter()
    mat = ot.dist(x, y)
    exact = ot.emd2(a, b, mat, numItermax=10_000_000)
    t_emd = time.perf_counter() - t
    results = {"emd2": (t_emd, 0.0)}
    mean_c = float(mat.mean())
    # POT's kernel-domain solver (the fastest per iteration): the largest regularisation and
    # loosest stopping threshold that reach 1%. POT's sinkhorn_log costs about 28x more per
    # iteration than otbio and needs as many iterations, so it cannot be POT's best here.
    found = False
    for rel in (0.01, 0.005, 0.004, 0.003, 0.002):
        for thr in (1e-3, 1e-4, 1e-5, 1e-6):
            t = time.perf_counter()
            with np.errstate(all="ignore"):
                p = ot.sinkhorn(a, b, mat, rel * mean_c, method="sinkhorn", stopThr=thr,
                                numItermax=20000, warn=False)  # fmt: skip
            cost = float((p * mat).sum())
            el = time.perf_counter() - t
            err = (cost - exact) / exact
            # the same feasibility as otbio's stop: L1 marginal error at most 1e-2
            viol = float(np.abs(p.sum(1) - a).sum() + np.abs(p.sum(0) - b).sum())
            print(
                f"POT sinkhorn rel={rel} thr={thr}: err {err:.4f}, marginal error {viol:.1e}"
                f" in {el:.2f} s",
                file=sys.stderr,
            )
            if np.isfinite(err) and abs(err) < 0.01 and viol <= 1e-2:
                results[f"POT sinkhorn kernel (eps={rel} x mean C, stopThr={thr})"] = (el, err)
                found = True
                break
            if not np.isfinite(err):
                break
        if found:
            break
    del mat
    # otbio: epsilon scaling down to the largest epsilon that reaches 1%
    best = None
    for rel in (0.005, 0.004, 0.003, 0.002):
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            out = O.sinkhorn(x, y, epsilon=rel, relative_epsilon="mean", tol=1e-2,
                             epsilon_scaling=0.5, scaling_iter=1, max_iter=5000, warn=False)  # fmt: skip
            ts.append(time.perf_counter() - t)
        err = (out.cost - exact) / exact
        print(
            f"otbio rel={rel}: err {err:.4f} in {med(ts):.2f} s ({out.n_iter} it)", file=sys.stderr
        )
        if abs(err) < 0.01:
            best = (
                f"otbio (eps={rel} x mean C, scaling 0.5 x1 per level, tol 1e-2 on the L1 marginal error)",
                med(ts),
                err,
                out.n_iter,
            )
            break
    return exact, results, best


POT_SCRIPT = """
import sys, numpy as np, ot
x, y = np.load(sys.argv[1]), np.load(sys.argv[2])
a, b = np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y))
m = ot.dist(x, y)
p, log = ot.sinkhorn(a, b, m, float(sys.argv[3]), method="sinkhorn_log", stopThr=float(sys.argv[4]),
                     numItermax=1000, log=True)
print("cost", float((p * m).sum()), "iterations", log["niter"])
"""


def whole_process(n, repeats, tol=1e-6):
    """``otbio transport`` and a POT ``sinkhorn_log`` script as whole processes, alternating:
    n = m points in the unit cube (d = 10), the same absolute epsilon (1% of the largest
    cost), stopping at ``tol`` (otbio: L1 marginal error, POT: L2 error of a marginal)."""
    import resource
    import tempfile

    x, y = clouds(n, n)
    eps = 0.01 * float(ot.dist(x, y).max())
    cli = "from otbio.cli import main; main()"
    out = {"otbio": [], "POT": []}
    with tempfile.TemporaryDirectory() as d:
        pa, pb = f"{d}/x.npy", f"{d}/y.npy"
        np.save(pa, x)
        np.save(pb, y)
        cmds = {
            "otbio": [sys.executable, "-c", cli, "transport", pa, pb, "--epsilon", repr(eps),
                      "--relative-epsilon", "none", "--tol", repr(tol)],
            "POT": [sys.executable, "-c", POT_SCRIPT, pa, pb, repr(eps), repr(tol)],
        }  # fmt: skip
        subprocess.run(cmds["otbio"], check=True, capture_output=True)  # warm the caches
        for _ in range(repeats):
            for k, cmd in cmds.items():
                r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                t = time.perf_counter()
                res = subprocess.run(cmd, check=True, capture_output=True, text=True)
                wall = time.perf_counter() - t
                r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
                out[k].append((wall, cpu, (res.stdout + res.stderr).strip().splitlines()[-3:]))
                print(k, out[k][-1], file=sys.stderr, flush=True)
    return eps, out


def whole_lines(n, eps, out, tol, repeats):
    w = {k: med([r[0] for r in v]) for k, v in out.items()}
    c = {k: med([r[1] for r in v]) for k, v in out.items()}
    return [
        "",
        f"### Whole process: `otbio transport` vs POT `sinkhorn_log` ({time.strftime('%Y-%m-%d')})",
        "",
        f"Command: `python benchmarks/engine.py --whole-process-only --whole-n {n}"
        f" --repeats {repeats}`. n = m = {n} uniform points in d = {D}, absolute epsilon"
        f" {eps:.4g} (1% of the largest cost) on both sides, tol {tol:g} (otbio: L1 marginal"
        " error; POT: stopThr on its L2 marginal error); every process alternates, medians of"
        f" {repeats}; load average {os.getloadavg()[0]:.1f} at the end.",
        "",
        "| route | wall s | CPU s | last output |",
        "|---|---|---|---|",
        *[f"| {k} | {w[k]:.2f} | {c[k]:.2f} | {' / '.join(out[k][-1][2])[:160]} |" for k in out],
        "",
        f"POT / otbio: {w['POT'] / w['otbio']:.1f}x wall, {c['POT'] / c['otbio']:.1f}x CPU.",
        "",
    ]


SWEEP_RELS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)


def sweep_datasets(n):
    """Uniform cube; two bundled donors (PCA); 8 Gaussian clusters, well apart and overlapping."""
    import anndata as ad

    rng = np.random.default_rng(0)
    out = {f"uniform cube, {n} x {n}, d = {D}": (rng.random((n, D)), rng.random((n, D)))}
    cohort = ad.read_h5ad(Path(__file__).parents[1] / "test_data" / "pbmc_cohort.h5ad")
    donor = cohort.obs["donor"].astype(str).to_numpy()
    ids = list(dict.fromkeys(donor))
    x = np.asarray(cohort.obsm["X_pca"], dtype=np.float64)
    a, b = x[donor == ids[0]], x[donor == ids[1]]
    out[f"two bundled donors, {len(a)} x {len(b)}, d = {x.shape[1]}"] = (a, b)
    for label, scale, spread in (("well apart", 3.0, 0.3), ("overlapping", 1.5, 0.5)):
        cen = rng.normal(size=(8, D)) * scale
        pts = tuple(cen[rng.integers(0, 8, n)] + spread * rng.normal(size=(n, D)) for _ in "xy")
        out[f"8 clusters {label}, {n} x {n}, d = {D}"] = pts
    return out


def epsilon_sweep(n):
    """Iterations (to the default tol and max_iter) with scaling off, fixed and adaptive."""
    schedules = {
        "off": dict(epsilon_scaling=None),
        "fixed": dict(epsilon_scaling=0.5, scaling_iter=10),
        "default": {},
    }
    rows = []
    for name, (x, y) in sweep_datasets(n).items():
        for rel in SWEEP_RELS:
            row = {"data": name, "rel": rel}
            for key, kw in schedules.items():
                t = time.perf_counter()
                out = O.sinkhorn(x, y, epsilon=rel, relative_epsilon="mean", warn=False, **kw)
                row[key] = (out.n_iter, out.converged, time.perf_counter() - t, out.cost)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def sweep_lines(rows, n):
    def it(v):
        return f"{v[0]}" if v[1] else f"{v[0]} (not converged)"

    lines = [
        "",
        f"### Epsilon scaling: iterations over an epsilon sweep ({time.strftime('%Y-%m-%d')})",
        "",
        f"Command: `python benchmarks/engine.py --sweep-only --sweep-n {n}`",
        f"Defaults otherwise (tol {O.SINKHORN_DEFAULTS.tol:g} on the L1 marginal error,"
        f" max_iter {O.SINKHORN_DEFAULTS.max_iter}, factor {O.SINKHORN_DEFAULTS.epsilon_scaling}"
        "). *off*: no scaling; *fixed*: 10 iterations per level from the mean cost (otbio"
        " 0.1's default); *default*: the adaptive schedule (target epsilon first for"
        " 10 iterations; unless its marginal error is then below 0.05 and still falling fast,"
        " cold scaling leaving each level at marginal error 3e-3). Ratio: default / the better"
        " of off and fixed (converged ones only).",
        "",
        "| data | epsilon / mean cost | off | fixed | default | ratio | default s |",
        "|---|---|---|---|---|---|---|",
    ]
    worst, lost = 0.0, []
    for r in rows:
        done = [r[k][0] for k in ("off", "fixed") if r[k][1]]
        d = r["default"]
        if done and d[1]:
            ratio = d[0] / min(done)
            worst = max(worst, ratio)
            rs = f"{ratio:.2f}"
        else:
            rs = "-" if not done else "not converged"
        if r["off"][1] and not d[1]:
            lost.append(f"{r['data']} at {r['rel']}")
        lines.append(
            f"| {r['data']} | {r['rel']} | {it(r['off'])} | {it(r['fixed'])} | {it(d)} | {rs} |"
            f" {d[2]:.2f} |"
        )
    lines += [
        "",
        f"Worst ratio {worst:.2f}; rows that converge without scaling but not with the default:"
        f" {', '.join(lost) if lost else 'none'}.",
        "",
    ]
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--memory-n", type=int, default=100_000)
    ap.add_argument("--accuracy-n", type=int, default=4000)
    ap.add_argument("--append", action="store_true")
    ap.add_argument("--sweep", action="store_true", help="add the epsilon-scaling sweep")
    ap.add_argument("--sweep-only", action="store_true", help="only the epsilon-scaling sweep")
    ap.add_argument("--sweep-n", type=int, default=1000)
    ap.add_argument("--whole-process-only", action="store_true",
                    help="only `otbio transport` vs a POT script, whole processes")  # fmt: skip
    ap.add_argument("--whole-n", type=int, default=4000)
    args = ap.parse_args()
    if args.whole_process_only:
        eps, out = whole_process(args.whole_n, args.repeats)
        text = "\n".join(whole_lines(args.whole_n, eps, out, 1e-6, args.repeats))
        print(text)
        if args.append:
            from _results import write_section

            write_section("engine.whole-process", text)
        return
    if args.sweep_only:
        text = "\n".join(sweep_lines(epsilon_sweep(args.sweep_n), args.sweep_n))
        print(text)
        if args.append:
            from _results import write_section

            write_section("engine.sweep", text)
        return

    rows = iteration_table(args.sizes, args.repeats)
    mem_mb, mem_t = peak_memory(args.memory_n)
    exact, pot_res, best = time_to_accuracy(args.accuracy_n, args.repeats)

    def fmt(t):
        return "skipped (does not fit)" if t is None else f"{t * 1e3:.2f}"

    lines = [
        "",
        f"## Engine: Sinkhorn per iteration, memory, time to 1% of emd2 ({time.strftime('%Y-%m-%d')})",
        "",
        f"Command: `python benchmarks/engine.py {' '.join(sys.argv[1:])}`".replace(" --append", ""),
        f"Machine: {platform.processor() or platform.machine()}, 2 cores; d = {D}, uniform clouds,"
        f" float64 unless said; medians of {args.repeats} runs.",
        "",
        "| n = m | otbio ms/iter | otbio Gpair/s | POT sinkhorn_log ms/iter | speed-up vs log"
        " | POT sinkhorn (kernel) ms/iter | ratio vs kernel | otbio float32 ms/iter | float32 Gpair/s"
        " | float32 / float64 throughput |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        n = r["n"]
        gp = 2 * n * n / r["otbio"] / 1e9
        gp32 = 2 * n * n / r["otbio32"] / 1e9
        sl = f"{r['pot_log'] / r['otbio']:.1f}x" if r["pot_log"] else "-"
        sk = f"{r['pot_kernel'] / r['otbio']:.2f}x" if r["pot_kernel"] else "-"
        lines.append(
            f"| {n} | {r['otbio'] * 1e3:.2f} | {gp:.2f} | {fmt(r['pot_log'])} | {sl} | "
            f"{fmt(r['pot_kernel'])} | {sk} | {r['otbio32'] * 1e3:.2f} | {gp32:.2f} | {gp32 / gp:.2f}x |"
        )
    lines += [
        "",
        f"Peak extra memory, n = m = {args.memory_n}: {mem_mb:.0f} MB"
        f" (2 iterations + projection, {mem_t:.0f} s wall incl. start-up).",
        "",
        f"Time to a cost within 1% of `ot.emd2` at n = {args.accuracy_n} (exact cost {exact:.5f}):",
        "",
        "| solver | time s | relative error |",
        "|---|---|---|",
    ]
    for name, (t, err) in pot_res.items():
        lines.append(f"| {'POT ' if name == 'emd2' else ''}{name} | {t:.2f} | {err:+.4f} |")
    if best:
        lines.append(f"| {best[0]} | {best[1]:.2f} | {best[2]:+.4f} |")
        pot_best = min(t for t, _ in pot_res.values())
        lines.append("")
        lines.append(f"otbio / POT best time: {best[1] / pot_best:.2f}")
    if args.sweep:
        lines += sweep_lines(epsilon_sweep(args.sweep_n), args.sweep_n)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.append:
        from _results import write_section

        write_section("engine", text)


if __name__ == "__main__":
    main()
