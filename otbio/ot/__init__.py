"""The optimal-transport engine of otbio.

Geometry, solver and result are separate objects (as in OTT-JAX): a :class:`PointCloud`
holds two clouds and a cost evaluated online, :class:`Sinkhorn` solves the entropic problem
and returns a :class:`SinkhornOutput` whose methods stream the plan (``plan_dot``,
``barycentric_projection``, ``plan_argmax``, ``plan_topk``) without building it.
Exact OT goes through POT's network simplex (:func:`emd`: dense, or sparse with column
generation for large problems), many problems run side by side
with :func:`map_batch`, and :func:`barycenter` computes free-support Wasserstein barycenters.

Nothing here imports AnnData, gemmi or Click.
"""

from __future__ import annotations

from otbio import _threading  # noqa: F401
from otbio.ot._backend import cuda_available, get_backend, resolve_device
from otbio.ot._barycenter import BarycenterOutput, barycenter
from otbio.ot._exact import ExactOutput, emd, map_batch
from otbio.ot._geometry import COSTS, PointCloud
from otbio.ot._sinkhorn import Sinkhorn, SinkhornOutput, resolve_epsilon, sinkhorn

__all__ = [
    "COSTS",
    "BarycenterOutput",
    "ExactOutput",
    "PointCloud",
    "Sinkhorn",
    "SinkhornOutput",
    "barycenter",
    "cuda_available",
    "emd",
    "get_backend",
    "map_batch",
    "resolve_device",
    "resolve_epsilon",
    "sinkhorn",
]
