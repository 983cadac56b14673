"""The engine's polynomial ``exp`` (float32 and float64), inlined into every kernel.

Numba's ``math.exp`` compiles to a scalar library call, about 7x slower; this one is a
polynomial with Cody-Waite range reduction that vectorises. The reduction rounds with an
explicit ``rint``, so it stays exact when inlined into callers compiled with any fast-math
flags. Fast-math inside the kernels is limited to ``{"reassoc", "contract", "arcp"}`` so
that ``log(0) = -inf`` from zero weights survives.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

__all__ = ["FASTMATH", "exp_f32", "exp_f64"]

FASTMATH = {"reassoc", "contract", "arcp"}


@intrinsic
def _bits_f64(typingctx, x):
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


@intrinsic
def _bits_f32(typingctx, x):
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471803691238
_LN2_LO = 1.9082149292705877e-10

# The reduction x = n ln2 + r rounds n with an explicit rint (one vroundpd), not with the
# classic "add and subtract 1.5 * 2**52" trick: under fastmath (reassoc/nsz, e.g. a caller
# compiled with fastmath=True into which this is inlined) LLVM may fold (t + S) - S to t,
# which left n fractional and gave relative errors of 0.4. rint cannot be folded away.


@njit(inline="always", fastmath=FASTMATH, cache=True)
def exp_f64(x):
    """exp(x) in float64, max relative error about 2e-16; 0 below -708, clamped above 709.

    Exact under any fastmath flags of the caller (see ``tests/ot/test_exp_fastmath.py``).
    """
    xc = min(max(x, -708.0), 709.0)
    n = np.rint(xc * _LOG2E)
    r = xc - n * _LN2_HI - n * _LN2_LO
    p = 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    scale = _bits_f64((np.int64(n) + 1023) << 52)
    res = p * scale
    return res if x > -708.0 else 0.0


@njit(inline="always", fastmath=FASTMATH, cache=True)
def exp_f32(x):
    """exp(x) in float32, max relative error about 1.5e-7; 0 below -87 (fastmath-proof)."""
    lo = np.float32(-87.0)
    xc = min(max(x, lo), np.float32(88.0))
    n = np.rint(xc * np.float32(_LOG2E))
    r = xc - n * np.float32(0.693145751953125) - n * np.float32(1.428606765330187e-06)
    p = np.float32(1.0 / 5040.0)
    p = p * r + np.float32(1.0 / 720.0)
    p = p * r + np.float32(1.0 / 120.0)
    p = p * r + np.float32(1.0 / 24.0)
    p = p * r + np.float32(1.0 / 6.0)
    p = p * r + np.float32(0.5)
    p = p * r + np.float32(1.0)
    p = p * r + np.float32(1.0)
    scale = _bits_f32((np.int32(n) + np.int32(127)) << np.int32(23))
    res = p * scale
    return res if x > lo else np.float32(0.0)


def _exp(x):
    """exp of a float32 or float64 scalar by the vectorising polynomial of its dtype."""
    return np.exp(x)


@overload(_exp, inline="always", jit_options={"fastmath": FASTMATH})
def _exp_ov(x):  # pragma: no cover - compile-time dispatch on dtype
    if isinstance(x, types.Float) and x.bitwidth == 32:
        return lambda x: exp_f32(x)
    return lambda x: exp_f64(x)
