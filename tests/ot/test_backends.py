"""Kernels, backends, threading layer and caching."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from numba import njit

import otbio.ot as O
from otbio.ot import _kernels as K
from otbio.ot._backend import ArrayBackend, get_backend

try:
    import cupy  # noqa: F401

    HAS_GPU = O.cuda_available()
except Exception:  # pragma: no cover
    HAS_GPU = False
needs_cupy = pytest.mark.skipif(not HAS_GPU, reason="needs CuPy and a CUDA device")


@njit(fastmath=K.FASTMATH)
def _exp64(x, out):
    for i in range(x.shape[0]):
        out[i] = K.exp_f64(x[i])


@njit(fastmath=K.FASTMATH)
def _exp32(x, out):
    for i in range(x.shape[0]):
        out[i] = K.exp_f32(x[i])


@pytest.mark.fast
def test_polynomial_exp_accuracy():
    x = np.linspace(-700, 700, 200_001)
    out = np.empty_like(x)
    _exp64(x, out)
    assert np.max(np.abs(out / np.exp(x) - 1)) < 1e-15
    special = np.array([-np.inf, -1000.0, 0.0])
    out = np.empty_like(special)
    _exp64(special, out)
    np.testing.assert_array_equal(out, [0.0, 0.0, 1.0])
    x32 = np.linspace(-80, 80, 100_001).astype(np.float32)
    out32 = np.empty_like(x32)
    _exp32(x32, out32)
    assert np.max(np.abs(out32 / np.exp(x32.astype(np.float64)) - 1)) < 3e-7


@pytest.mark.parametrize("cost", ["sqeuclidean", "l1", "hinge"])
def test_array_backend_agrees_with_numba(cost):
    """The CuPy code path's formulas, run on NumPy, agree with the Numba kernels."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(70, 4))
    y = rng.normal(size=(50, 4))
    a = rng.random(70)
    a[0] = 0
    kw = dict(cost=cost, epsilon=0.2, relative_epsilon="mean", tol=1e-12, max_iter=20000)
    cpu = O.sinkhorn(x, y, a, **kw)
    arr = O.sinkhorn(x, y, a, device="numpy", **kw)
    np.testing.assert_allclose(arr.f[1:], cpu.f[1:], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(arr.cost, cpu.cost, rtol=1e-10)
    np.testing.assert_allclose(arr.plan_dot(y), cpu.plan_dot(y), rtol=1e-9, atol=1e-14)
    np.testing.assert_array_equal(arr.plan_topk(3)[0][1:], cpu.plan_topk(3)[0][1:])
    be = ArrayBackend(np, "numpy", block_bytes=8 * 50 * 3 * 7)  # force many row blocks
    g = O.PointCloud(x, y, cost)
    beta = rng.normal(size=50)
    np.testing.assert_allclose(be.lse(g, beta, 0.3), get_backend("cpu").lse(g, beta, 0.3))
    assert be.max_cost(g) == pytest.approx(g.max_cost(), rel=1e-12)


@needs_cupy
@pytest.mark.needs_cupy
@pytest.mark.parametrize("reg_m", [None, 1.0])
def test_cuda_agrees_with_cpu(reg_m):  # pragma: no cover - needs a GPU
    rng = np.random.default_rng(1)
    x = rng.random((3000, 10))
    y = rng.random((2000, 10))
    kw = dict(epsilon=0.05, relative_epsilon="mean", reg_m=reg_m, tol=1e-10, max_iter=5000)
    cpu = O.sinkhorn(x, y, **kw)
    gpu = O.sinkhorn(x, y, device="cuda", **kw)
    np.testing.assert_allclose(gpu.f, cpu.f, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(gpu.cost, cpu.cost, rtol=1e-6)
    np.testing.assert_allclose(gpu.plan_dot(y), cpu.plan_dot(y), rtol=1e-6, atol=1e-12)


def test_lse_shift_fallback_handles_bad_guesses():
    """A stale shift far from the answer must not change the result."""
    rng = np.random.default_rng(2)
    g = O.PointCloud(rng.normal(size=(40, 3)), rng.normal(size=(30, 3)))
    be = get_backend("cpu")
    beta = rng.normal(size=30)
    first = be.lse(g, beta, 0.01)  # cold: exact maxima
    bad = np.array([1e6, -1e6, 0.0, np.nan] * 10)
    np.testing.assert_allclose(be.lse(g, beta, 0.01, guess=bad), first, rtol=1e-14)
    assert "lse_guess" not in g._cache  # no per-solve state on the (frozen) geometry


def _run(code: str, env=None) -> str:
    res = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_threading_layer_is_workqueue_after_a_parallel_kernel():
    """Numba's threading layer must not fight OpenBLAS: workqueue, not OpenMP (the timing
    effect itself is measured by benchmarks/blas_after_kernel.py, not here)."""
    out = _run(
        """
        import numpy as np
        import otbio.ot as O
        from otbio._threading import threading_layer_name
        x = np.random.default_rng(0).random((3000, 10))
        O.sinkhorn(x, x[::-1], max_iter=20, warn=False, dense=False)
        print(threading_layer_name())
        """
    )
    assert out.split() == ["workqueue"]


def test_second_process_loads_cached_parallel_kernels():
    """Kernels that one process compiled (this one, the suite's, which then writes Numba's
    cache or has it already) are loaded from the cache by a second process, parallel ones
    (lse_rows, apply_rows) included. A second cold compile in a fresh cache folder would
    cost half a minute of CI for the same check."""
    code = """
        import numpy as np
        import otbio.ot as O
        from otbio.ot import _kernels as K
        x = np.random.default_rng(0).random((50, 3))
        O.sinkhorn(x, x + 1, epsilon=0.1, dense=False, relative_epsilon=None, epsilon_scaling=None).plan_dot(x)
        O.sinkhorn(x, x + 1, epsilon=0.1, cost="l1", relative_epsilon=None, epsilon_scaling=None).plan_dot(x)  # the dense route
        hits = lambda f: sum(f.stats.cache_hits.values())
        print(hits(K.lse_rows), hits(K.apply_rows), hits(K.dense_sinkhorn), hits(K.cost_dense))
        """
    exec(textwrap.dedent(code), {"print": lambda *a: None})  # compiled (or loaded) here
    second = _run(code).split()  # the same Numba cache location (environment inherited)
    assert len(second) == 4 and all(int(h) >= 1 for h in second), second
