"""The kernels' polynomial exp stays exact when inlined into a ``fastmath=True`` caller."""

from __future__ import annotations

import warnings

import numpy as np
from numba import njit

from otbio.ot import _kernels as K


@njit(fastmath=True)
def _exp64_fast(xs, out):
    for i in range(xs.size):
        out[i] = K.exp_f64(xs[i])


@njit(fastmath=True)
def _exp32_fast(xs, out):
    for i in range(xs.size):
        out[i] = K.exp_f32(xs[i])


@njit(fastmath={"nsz", "reassoc"})
def _exp64_nsz(xs, out):
    for i in range(xs.size):
        out[i] = K.exp_f64(xs[i])


def _inputs(lo, hi, dtype):
    rng = np.random.default_rng(0)
    xs = np.concatenate([rng.uniform(lo, hi, 20000), np.linspace(lo, hi, 4001), [0.0, -0.5, 0.5]])
    return xs.astype(dtype)


def test_exp_f64_under_fastmath_caller():
    xs = _inputs(-700.0, 700.0, np.float64)
    for fn in (_exp64_fast, _exp64_nsz):
        out = np.empty_like(xs)
        fn(xs, out)
        rel = np.abs(out / np.exp(xs) - 1.0).max()
        assert rel < 1e-12, (fn.__name__, rel)


def test_exp_f32_under_fastmath_caller():
    xs = _inputs(-80.0, 80.0, np.float32)
    out = np.empty_like(xs)
    _exp32_fast(xs, out)
    rel = np.abs(out.astype(np.float64) / np.exp(xs.astype(np.float64)) - 1.0).max()
    assert rel < 1e-6, rel


def test_kernel_import_installs_no_global_warning_filter():
    import otbio.ot._kernels  # noqa: F401

    assert not [f for f in warnings.filters if "_exp_ov" in str(f[1] and f[1].pattern)]
