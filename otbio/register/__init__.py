"""Elastic registration of spatial-transcriptomics slices (``otbio register``).

BCPD with an expression term, the Domain Elastic Transform (DET):

- O. Hirose, "A Bayesian formulation of coherent point drift", IEEE TPAMI 43(7), 2021
  (BCPD; reference implementation ``ohirose/bcpd``, MIT licence);
- O. Hirose and E. Rodola, "Domain Elastic Transform: Bayesian function registration for
  high-dimensional scientific data", arXiv:2603.21235, 2026.

``otbio.register(source, target, ...)`` (this module is callable) is
:func:`otbio.register.register`: it writes the registered coordinates into ``source``
(``copy=True`` for a new AnnData) and returns the ``RegistrationResult``. :func:`register_points` is the array-level fit; ``result.transform(points)`` applies a
fitted map to new cells; :func:`score` and its parts measure the result.
"""

from __future__ import annotations

import sys
import types

from otbio.register._api import joint_features, register, registration_keys, spatial_coords
from otbio.register._core import RegistrationResult, register_points
from otbio.register._deform import interpolate_displacement
from otbio.register._downsample import feature_sensitive_sample
from otbio.register._metrics import (
    distance_correlation,
    fold_free_fraction,
    knn_preservation,
    label_transfer_accuracy,
    rmse,
    score,
    top1_correspondence,
)
from otbio.register._synth import known_warp, smooth_warp, synthetic_tissue, warped_pair

__all__ = [
    "RegistrationResult",
    "distance_correlation",
    "feature_sensitive_sample",
    "fold_free_fraction",
    "interpolate_displacement",
    "joint_features",
    "knn_preservation",
    "known_warp",
    "label_transfer_accuracy",
    "register",
    "register_points",
    "registration_keys",
    "rmse",
    "score",
    "smooth_warp",
    "spatial_coords",
    "synthetic_tissue",
    "top1_correspondence",
    "warped_pair",
]


class _CallableModule(types.ModuleType):
    """Lets ``otbio.register(source, target, ...)`` call :func:`register`."""

    def __call__(self, *args, **kwargs):
        return register(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
