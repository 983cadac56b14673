"""The optimal-transport engine of otbio.

Geometry, solver and result are separate objects (as in OTT-JAX): a :class:`PointCloud`
holds two clouds and a cost evaluated online, :class:`Sinkhorn` solves the entropic problem
and returns a :class:`SinkhornOutput` whose methods stream the plan (``plan_dot``,
``barycentric_projection``, ``plan_argmax``, ``plan_topk``) without building it.
Exact OT goes through POT's network simplex (:func:`emd`: dense, or sparse with column
generation for large problems), many problems run side by side
with :func:`map_batch`, and :func:`barycenter` computes free-support Wasserstein barycenters.

For the applications: :data:`SINKHORN_DEFAULTS` (the defaults of every entry point),
:data:`DENSE_MAX_ENTRIES` (the size up to which the CPU Sinkhorn takes its dense route), and
the streamed reductions :func:`logsumexp`, :func:`warm_start`, :func:`kernel_apply` and
:func:`kernel_topk`.

Nothing here imports AnnData, gemmi or Click; submodules are imported on first use, so
``otbio.ot.SINKHORN_DEFAULTS`` costs no Numba compilation and no POT import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from otbio import _threading  # noqa: F401

__all__ = [
    "COSTS",
    "DENSE_MAX_ENTRIES",
    "SINKHORN_DEFAULTS",
    "BarycenterOutput",
    "ExactOutput",
    "PointCloud",
    "Sinkhorn",
    "SinkhornDefaults",
    "SinkhornOutput",
    "barycenter",
    "cuda_available",
    "emd",
    "get_backend",
    "kernel_apply",
    "kernel_topk",
    "logsumexp",
    "map_batch",
    "resolve_device",
    "resolve_epsilon",
    "sinkhorn",
    "warm_start",
]

_WHERE = {
    "cuda_available": "_backend",
    "get_backend": "_backend",
    "resolve_device": "_backend",
    "BarycenterOutput": "_barycenter",
    "barycenter": "_barycenter",
    "DENSE_MAX_ENTRIES": "_defaults",
    "SINKHORN_DEFAULTS": "_defaults",
    "SinkhornDefaults": "_defaults",
    "ExactOutput": "_exact",
    "emd": "_exact",
    "map_batch": "_exact",
    "COSTS": "_geometry",
    "PointCloud": "_geometry",
    "kernel_apply": "_reductions",
    "kernel_topk": "_reductions",
    "logsumexp": "_reductions",
    "warm_start": "_reductions",
    "Sinkhorn": "_sinkhorn",
    "SinkhornOutput": "_sinkhorn",
    "resolve_epsilon": "_sinkhorn",
    "sinkhorn": "_sinkhorn",
}

if TYPE_CHECKING:  # pragma: no cover
    from otbio.ot._backend import cuda_available, get_backend, resolve_device
    from otbio.ot._barycenter import BarycenterOutput, barycenter
    from otbio.ot._defaults import DENSE_MAX_ENTRIES, SINKHORN_DEFAULTS, SinkhornDefaults
    from otbio.ot._exact import ExactOutput, emd, map_batch
    from otbio.ot._geometry import COSTS, PointCloud
    from otbio.ot._reductions import kernel_apply, kernel_topk, logsumexp, warm_start
    from otbio.ot._sinkhorn import Sinkhorn, SinkhornOutput, resolve_epsilon, sinkhorn


def __getattr__(name: str):
    """Import the submodule holding ``name`` on first use."""
    mod = _WHERE.get(name)
    if mod is None:
        msg = f"module 'otbio.ot' has no attribute '{name}'"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(f"otbio.ot.{mod}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
