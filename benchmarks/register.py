"""Benchmark `otbio register`: accuracy against PASTE on known warps, and scale.

Usage:
    python benchmarks/register.py --paste-python /tmp/paste-venv/bin/python \
        --seeds 0 1 2 --scale 10000 50000 --repeats 1 --append

PASTE (paste-bio) needs an old stack (numpy<2 scipy<1.12 pot==0.9.1 anndata<0.11
scanpy<1.11): it runs in its own virtual environment, as a subprocess, never in otbio's
environment. Every run is a separate process so that its peak memory (ru_maxrss) is its own.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

OTBIO_JOB = textwrap.dedent(
    """
    import json, resource, sys, time
    import anndata as ad, numpy as np
    import otbio.register
    from otbio._settings import settings
    settings.quiet = True
    src = ad.read_h5ad(sys.argv[1]); tgt = ad.read_h5ad(sys.argv[2])
    t = time.perf_counter()
    out, res = otbio.register(src, tgt, seed=0)
    el = time.perf_counter() - t
    np.save(sys.argv[3], out.obsm["spatial_registered"])
    print(json.dumps({"time": el, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "n_iter": res.n_iter}))
    """
)

PASTE_JOB = textwrap.dedent(
    """
    import json, resource, sys, time, warnings
    warnings.filterwarnings("ignore")
    import anndata as ad, numpy as np, paste as pst
    src = ad.read_h5ad(sys.argv[1]); tgt = ad.read_h5ad(sys.argv[2])
    t = time.perf_counter()
    pi = pst.pairwise_align(src, tgt, use_gpu=False)
    new = pst.stack_slices_pairwise([src, tgt], [pi])
    el = time.perf_counter() - t
    # stack_slices_pairwise centres the source and moves the target rigidly onto it;
    # recover that rigid map (B = A R^T + t, exact) and invert it to put the source in the
    # target frame
    a = np.asarray(tgt.obsm["spatial"], float); b = np.asarray(new[1].obsm["spatial"], float)
    ac, bc = a - a.mean(0), b - b.mean(0)
    u, _, vt = np.linalg.svd(bc.T @ ac); rot = u @ vt; t = b.mean(0) - a.mean(0) @ rot.T
    rigid = (np.asarray(new[0].obsm["spatial"], float) - t) @ rot
    bary = (pi @ np.asarray(tgt.obsm["spatial"])) / pi.sum(1, keepdims=True)
    np.save(sys.argv[3], rigid); np.save(sys.argv[3] + ".bary.npy", bary)
    print(json.dumps({"time": el, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    """
)

SCALE_JOB = textwrap.dedent(
    """
    import json, resource, sys, time
    import numpy as np
    from otbio._settings import settings
    from otbio.register import register_points, synthetic_tissue, known_warp, score
    settings.quiet = True
    n = int(sys.argv[1]); ds = int(sys.argv[2]) or None
    y, f = synthetic_tissue(n, 20, seed=0)
    x = known_warp(y, seed=1, amp=0.04, length=1.0)
    t = time.perf_counter()
    r = register_points(x, y, f, f, downsample=ds, seed=0, band=0)
    el = time.perf_counter() - t
    m = score(y, r.registered, x, true_positions=x)
    m.update(time=el, peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
             n_iter=r.n_iter, truth_knn=__import__("otbio.register", fromlist=["x"]).knn_preservation(y, x))
    print(json.dumps(m))
    """
)


def _run(python: str, code: str, *args: str) -> dict:
    r = subprocess.run([python, "-c", code, *args], capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "failed")
    return json.loads(r.stdout.strip().splitlines()[-1])


def accuracy(paste_python: str | None, seeds: list[int], repeats: int) -> list[str]:
    import anndata as ad

    sys.path.insert(0, str(ROOT / "tests" / "register"))
    from conftest import make_warped

    from otbio.register import score

    src = ad.read_h5ad(ROOT / "test_data/spatial/breast_st_slice1.h5ad")
    y = np.asarray(src.obsm["spatial"], dtype=float)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src.write_h5ad(tmp / "s.h5ad")
        for seed in seeds:
            tgt, truth = make_warped(src, seed)
            tgt.write_h5ad(tmp / "t.h5ad")
            tools = [("otbio register", sys.executable, OTBIO_JOB)]
            if paste_python:
                tools.append(("PASTE rigid", paste_python, PASTE_JOB))
            for name, py, job in tools:
                runs = [
                    _run(py, job, str(tmp / "s.h5ad"), str(tmp / "t.h5ad"), str(tmp / "o.npy"))
                    for _ in range(repeats)
                ]
                reg = np.load(tmp / "o.npy")
                m = score(y, reg, tgt.obsm["spatial"], true_positions=truth)
                t = float(np.median([r["time"] for r in runs]))
                mem = float(np.median([r["peak_mb"] for r in runs]))
                rows.append((seed, name, m, t, mem))
                if name == "PASTE rigid":
                    bary = np.load(str(tmp / "o.npy") + ".bary.npy")
                    mb = score(y, bary, tgt.obsm["spatial"], true_positions=truth)
                    rows.append((seed, "PASTE barycentric", mb, t, mem))
    out = [
        "| seed | method | RMSE before | RMSE after | RMSE cut | kNN pres. (k=10) | fold-free | dist. corr. | time (s) | peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for seed, name, m, t, mem in rows:
        out.append(
            f"| {seed} | {name} | {m['rmse_before']:.3f} | {m['rmse_after']:.3f} | "
            f"{m['rmse_reduction']:.3f} | {m['knn_preservation']:.3f} | "
            f"{m['fold_free_fraction']:.4f} | {m['distance_correlation']:.4f} | {t:.2f} | {mem:.0f} |"
        )
    return out


def scale(sizes: list[int], downsample: int, repeats: int) -> list[str]:
    out = [
        "| cells (each slice) | landmarks | iterations | time (s) | peak MB | RMSE cut | kNN pres. | truth kNN pres. | fold-free |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n in sizes:
        ds = downsample if n > downsample else 0
        runs = [_run(sys.executable, SCALE_JOB, str(n), str(ds)) for _ in range(repeats)]
        m = runs[0]
        t = float(np.median([r["time"] for r in runs]))
        mem = float(np.median([r["peak_mb"] for r in runs]))
        out.append(
            f"| {n} | {ds or n} | {m['n_iter']} | {t:.1f} | {mem:.0f} | {m['rmse_reduction']:.3f} | "
            f"{m['knn_preservation']:.3f} | {m['truth_knn']:.3f} | {m['fold_free_fraction']:.4f} |"
        )
        print(out[-1], flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--paste-python", default=None, help="python of a venv with paste-bio")
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    ap.add_argument("--scale", type=int, nargs="*", default=[10000, 50000])
    ap.add_argument("--downsample", type=int, default=1500)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--append", action="store_true", help="append the tables to RESULTS.md")
    args = ap.parse_args()
    cmd = "python benchmarks/register.py " + " ".join(sys.argv[1:])
    lines = [
        "",
        "## Registration (`otbio register`)",
        "",
        f"Command: `{cmd}` (2 shared cores).",
        "",
    ]
    if args.seeds:
        lines += [
            "Known warps of breast_st_slice1 (GP displacement + rotation + translation, counts "
            "thinned by half, 10% of spots dropped); medians over repeats; PASTE = paste-bio "
            "1.4.0 `pairwise_align` + `stack_slices_pairwise` in its own venv.",
            "",
            *accuracy(args.paste_python, args.seeds, args.repeats),
            "",
        ]
        print("\n".join(lines), flush=True)
    if args.scale:
        lines += [
            f"Scale: synthetic tissues, 20 features, known warp; feature-sensitive downsampling "
            f"to {args.downsample} landmarks and GP interpolation to every cell.",
            "",
            *scale(args.scale, args.downsample, args.repeats),
            "",
        ]
    text = "\n".join(lines)
    print(text)
    if args.append:
        with open(ROOT / "benchmarks" / "RESULTS.md", "a") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
