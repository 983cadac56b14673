"""Backends that stream the entropic plan: Numba on the CPU, CuPy (or NumPy) in row blocks.

A backend answers four questions about the kernel ``K_ij = exp(alpha_i + beta_j - c_ij / eps)``
of a :class:`~otbio.ot.PointCloud` without storing it:

- ``lse(geom, beta, eps)``: :math:`\\log \\sum_j \\exp(\\beta_j - c_{ij}/\\varepsilon)` per row;
- ``apply(geom, alpha, beta, eps, v)``: :math:`\\sum_j K_{ij} v_j`, row sums, argmax and
  the transport cost :math:`\\sum_j K_{ij} c_{ij}` per row;
- ``topk(geom, alpha, beta, eps, k)``: the k largest entries of each row;
- ``max_cost(geom)``: :math:`\\max_{ij} c_{ij}`.

The array backend is written against the NumPy API and runs unchanged on CuPy arrays
(``device="cuda"``); on NumPy it serves as an independent check of the same formulas.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from otbio._errors import InputError
from otbio.ot import _kernels as K

if TYPE_CHECKING:
    from otbio.ot._geometry import PointCloud

__all__ = ["ArrayBackend", "CPUBackend", "cuda_available", "get_backend", "resolve_device"]


def _nblocks() -> int:
    """Row blocks per kernel launch: a few per thread, for load balance."""
    import numba

    return 4 * numba.get_num_threads()


def _tile(geom: PointCloud) -> int:
    """Columns per tile so that the scores and the tile of ``y`` stay in L1/L2 cache."""
    return max(64, min(geom.shape[1], (8192 // max(1, geom.x.shape[1] + 1)) // 8 * 8))


class CPUBackend:
    """Numba-parallel online kernels (``otbio.ot._kernels``)."""

    name = "cpu"
    xp = np

    @staticmethod
    def asarray(a):
        return np.asarray(a)

    @staticmethod
    def to_numpy(a):
        return np.asarray(a)

    def _prep(self, geom: PointCloud, beta, eps: float):
        dt = geom.dtype
        code = geom.kernel_code
        yt = geom._cache.get("yt")
        if yt is None:
            yt = np.ascontiguousarray(geom.y.T)
            geom._cache["yt"] = yt
        inv = 1.0 / eps
        if code == 0:
            xx, yy = geom.sq_norms()
            yt_s = np.ascontiguousarray(yt * dt.type(2.0 * inv))
            h = np.ascontiguousarray(beta - yy * inv, dtype=dt)
            xoff = np.ascontiguousarray(-xx * inv, dtype=dt)
        else:
            yt_s = yt
            h = np.ascontiguousarray(beta, dtype=dt)
            xoff = np.zeros(geom.x.shape[0], dtype=dt)
        return yt_s, h, xoff, code, dt.type(inv)

    def lse(self, geom: PointCloud, beta, eps: float, guess=None) -> np.ndarray:
        """Row-wise log-sum-exp; ``guess`` (n,), owned by the caller, holds the shifts.

        A Sinkhorn solve passes one buffer per side: the previous call's values are the
        shifts of this one (iterates move little) and the kernel writes the new ones back; a
        row whose shift is off is redone exactly inside the kernel. The geometry itself is
        never written to with per-solve state, so one PointCloud can serve several threads.
        """
        yt, h, xoff, code, scale = self._prep(geom, beta, eps)
        n, m = geom.shape
        out = np.empty(n, dtype=geom.dtype)
        if guess is None:
            guess = np.full(n, np.nan, dtype=geom.dtype)
        tile = _tile(geom)
        lo, hi = (1e-5, 1e37) if geom.dtype == np.float32 else (1e-10, 1e300)
        K.lse_rows(geom.x, yt, h, xoff, code, scale, guess, out, _nblocks(), tile, lo, hi)
        return out

    def apply(self, geom: PointCloud, alpha, beta, eps: float, v=None, want_cost=False):
        yt, h, xoff, code, scale = self._prep(geom, beta, eps)
        dt = geom.dtype
        n, m = geom.shape
        alpha = np.ascontiguousarray(alpha + xoff, dtype=dt)
        vt = (
            np.zeros((0, m), dtype=dt)
            if v is None
            else np.ascontiguousarray(np.asarray(v, dtype=dt).reshape(m, -1).T)
        )
        if want_cost:
            if code == 0:
                xx, yy = geom.sq_norms()
                ccoef = np.concatenate([[eps], xx, yy]).astype(dt)
            else:
                ccoef = np.zeros(1 + n + m, dtype=dt)
                ccoef[0] = eps
        else:
            ccoef = np.zeros(1, dtype=dt)
        out_dot = np.empty((n, vt.shape[0]), dtype=dt)
        out_sum = np.empty(n, dtype=dt)
        out_cost = np.zeros(n, dtype=dt)
        out_arg = np.empty(n, dtype=np.int64)
        K.apply_rows(
            geom.x,
            yt,
            h,
            alpha,
            code,
            scale,
            vt,
            ccoef,
            out_dot,
            out_sum,
            out_cost,
            out_arg,
            _nblocks(),
            _tile(geom),
        )
        return {"dot": out_dot, "sum": out_sum, "cost": out_cost, "argmax": out_arg}

    def topk(self, geom: PointCloud, alpha, beta, eps: float, k: int):
        yt, h, xoff, code, scale = self._prep(geom, beta, eps)
        n, m = geom.shape
        k = min(int(k), m)
        alpha = np.ascontiguousarray(alpha + xoff, dtype=geom.dtype)
        idx = np.empty((n, k), dtype=np.int64)
        val = np.empty((n, k), dtype=geom.dtype)
        K.topk_rows(geom.x, yt, h, alpha, code, scale, k, idx, val, _nblocks())
        return idx, val

    def max_cost(self, geom: PointCloud) -> float:
        dt = geom.dtype
        zero_beta = np.zeros(geom.y.shape[0], dtype=dt)
        yt, h, xoff, code, scale = self._prep(geom, zero_beta, 1.0)
        out = np.empty(geom.x.shape[0], dtype=dt)
        K.min_score_rows(geom.x, yt, h, code, scale, out, _nblocks())
        # scores are -c_ij (codes 1-3) or 2 x.y - |y|^2 = |x|^2 - c_ij (code 0)
        return float(np.max(-out - xoff))


class ArrayBackend:
    """Row-block implementation on any NumPy-compatible array module (CuPy for GPUs).

    Each block of rows holds a (block x m) score matrix, sized so that it stays under
    ``block_bytes``; nothing of size n x m exists unless a block covers every row.
    """

    def __init__(self, xp: Any, name: str, block_bytes: int = 1 << 28) -> None:
        self.xp = xp
        self.name = name
        self.block_bytes = block_bytes

    def asarray(self, a):
        return self.xp.asarray(a)

    def to_numpy(self, a):
        if self.xp is np:
            return np.asarray(a)
        return self.xp.asnumpy(a)

    def _dev(self, geom: PointCloud):
        key = ("dev", self.name)
        if key not in geom._cache:
            xp = self.xp
            x = xp.asarray(geom.x)
            y = xp.asarray(geom.y)
            geom._cache[key] = (x, y, (x * x).sum(1), (y * y).sum(1))
        return geom._cache[key]

    def _blocks(self, geom: PointCloud):
        n, m = geom.shape
        rows = max(1, min(n, self.block_bytes // (8 * m * 3)))
        for s in range(0, n, rows):
            yield slice(s, min(n, s + rows))

    def _cost(self, geom: PointCloud, sl: slice):
        xp = self.xp
        x, y, xx, yy = self._dev(geom)
        xb = x[sl]
        code = geom.kernel_code
        if code == 0:
            return xp.maximum(xx[sl, None] + yy[None, :] - 2.0 * (xb @ y.T), 0.0)
        c = xp.zeros((xb.shape[0], y.shape[0]), dtype=x.dtype)
        for k in range(x.shape[1]):
            diff = xb[:, k, None] - y[None, :, k]
            if code == 1:
                c += xp.abs(diff)
            elif code == 2:
                c += xp.maximum(diff, 0.0)
            else:
                c += xp.maximum(-diff, 0.0)
        return c

    def lse(self, geom: PointCloud, beta, eps: float, guess=None):  # noqa: ARG002
        xp = self.xp
        out = xp.empty(geom.shape[0], dtype=geom.dtype)
        beta = xp.asarray(beta)
        for sl in self._blocks(geom):
            s = beta[None, :] - self._cost(geom, sl) / eps
            mx = s.max(axis=1)
            out[sl] = mx + xp.log(xp.exp(s - mx[:, None]).sum(axis=1))
        return out

    def apply(self, geom: PointCloud, alpha, beta, eps: float, v=None, want_cost=False):
        xp = self.xp
        n, m = geom.shape
        alpha = xp.asarray(alpha)
        beta = xp.asarray(beta)
        vv = xp.zeros((m, 0), dtype=geom.dtype) if v is None else xp.asarray(v).reshape(m, -1)
        out = {
            "dot": xp.empty((n, vv.shape[1]), dtype=geom.dtype),
            "sum": xp.empty(n, dtype=geom.dtype),
            "cost": xp.zeros(n, dtype=geom.dtype),
            "argmax": xp.empty(n, dtype=xp.int64),
        }
        for sl in self._blocks(geom):
            c = self._cost(geom, sl)
            s = alpha[sl, None] + beta[None, :] - c / eps
            w = xp.exp(s)
            out["dot"][sl] = w @ vv
            out["sum"][sl] = w.sum(axis=1)
            out["argmax"][sl] = s.argmax(axis=1)
            if want_cost:
                out["cost"][sl] = (w * c).sum(axis=1)
        return out

    def topk(self, geom: PointCloud, alpha, beta, eps: float, k: int):
        xp = self.xp
        n, m = geom.shape
        k = min(int(k), m)
        idx = xp.empty((n, k), dtype=xp.int64)
        val = xp.empty((n, k), dtype=geom.dtype)
        alpha = xp.asarray(alpha)
        beta = xp.asarray(beta)
        for sl in self._blocks(geom):
            s = alpha[sl, None] + beta[None, :] - self._cost(geom, sl) / eps
            order = xp.argsort(-s, axis=1)[:, :k]
            idx[sl] = order
            val[sl] = xp.take_along_axis(s, order, axis=1)
        return idx, val

    def max_cost(self, geom: PointCloud) -> float:
        return float(max(float(self._cost(geom, sl).max()) for sl in self._blocks(geom)))


_BACKENDS: dict[str, Any] = {}


def cuda_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def resolve_device(device: str) -> str:
    """Map ``cpu``/``cuda``/``auto`` to the device that will run."""
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device == "cuda" and not cuda_available():
        msg = "`device` cuda was asked for but CuPy or a CUDA device is not available; install otbio[gpu] or use `device` cpu"
        raise InputError(msg)
    if device not in ("cpu", "cuda", "numpy"):
        msg = f"unknown device '{device}'; choose cpu, cuda or auto"
        raise InputError(msg)
    return device


def get_backend(device: str = "cpu"):
    """The backend for ``device`` (``cpu``, ``cuda``, ``auto``, or ``numpy`` for checks)."""
    device = resolve_device(device)
    if device not in _BACKENDS:
        if device == "cpu":
            _BACKENDS[device] = CPUBackend()
        elif device == "numpy":
            _BACKENDS[device] = ArrayBackend(np, "numpy")
        else:
            import cupy

            _BACKENDS[device] = ArrayBackend(cupy, "cuda")
    return _BACKENDS[device]
