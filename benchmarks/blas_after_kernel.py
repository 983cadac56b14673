"""BLAS speed right after a parallel otbio kernel, per Numba threading layer.

Numba's OpenMP layer keeps worker threads spinning after a parallel kernel; on a small
machine they compete with OpenBLAS and a matrix-vector product right after a kernel ran
7-40x slower. otbio selects the ``workqueue`` layer (``otbio._threading``). This script
measures ``A @ v`` (2000 x 2000) before and after one online Sinkhorn of 3000 points, in a
fresh process per layer, median and worst of ``--repeats`` runs.

Run:  python benchmarks/blas_after_kernel.py [--repeats 5] [--append]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import textwrap

import numpy as np

CODE = textwrap.dedent(
    """
    import time, numpy as np
    import otbio.ot as O
    from otbio._threading import threading_layer_name
    rng = np.random.default_rng(0)
    A = rng.random((2000, 2000)); v = rng.random(2000)
    def t_matvec():
        best = []
        for _ in range(7):
            t = time.perf_counter()
            for _ in range(20):
                A @ v
            best.append(time.perf_counter() - t)
        return min(best)
    x = rng.random((3000, 10))
    before = t_matvec()
    O.sinkhorn(x, x[::-1], max_iter=20, warn=False, dense=False)
    print(threading_layer_name(), t_matvec() / before)
    """
)


def one(layer: str | None) -> tuple[str, float]:
    env = dict(os.environ)
    if layer is not None:
        env["NUMBA_THREADING_LAYER"] = layer
    out = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, env=env, check=True
    ).stdout.split()
    return out[0], float(out[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--append", action="store_true", help="rewrite its section of RESULTS.md")
    args = ap.parse_args()
    rows = []
    for layer in (None, "omp"):
        try:
            got = [one(layer) for _ in range(args.repeats)]
        except subprocess.CalledProcessError:
            print(f"threading layer {layer} is not available here", file=sys.stderr)
            continue
        name = got[0][0]
        ratios = np.array([r for _, r in got])
        rows.append((layer or "otbio default", name, np.median(ratios), ratios.max()))
    lines = [
        "",
        "## BLAS after a parallel kernel (threading layer)",
        "",
        f"Command: `python benchmarks/blas_after_kernel.py --repeats {args.repeats}` "
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared with other sessions). "
        "Ratio: time of 20 x (2000 x 2000 matvec) after one online Sinkhorn / before "
        "(1.0 = not slowed).",
        "",
        "| setting | layer | median ratio | worst ratio |",
        "|---|---|---|---|",
        *[f"| {s} | {n} | {m:.2f} | {w:.2f} |" for s, n, m, w in rows],
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.append:
        from _results import write_section

        write_section("blas_after_kernel", text)


if __name__ == "__main__":
    main()
