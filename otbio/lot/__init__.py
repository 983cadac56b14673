"""Linearized optimal transport (LOT) embeddings of single-cell samples.

Each sample (patient, donor, well) is a weighted cloud of cells :math:`(X_i, w_i)` in a
representation (``obsm['X_pca']`` or chosen variables of ``X``). LOT transports one shared
reference measure :math:`(z, r)` (support ``z`` of shape (k, d), weights ``r`` summing to one)
onto each sample and keeps the barycentric projection

.. math::
    T_i(z_k) = \\frac{1}{r_k} \\sum_j P^{(i)}_{kj} x_j, \\qquad
    v_i = \\big((T_i(z_k) - z_k)\\sqrt{r_k}\\big)_{k=1..k}

as one vector of fixed length ``k * d``. Then :math:`\\|v_i - v_j\\|` approximates
:math:`W_2(\\mu_i, \\mu_j)` (exactly for translations) and :math:`z_k + v_{ik}/\\sqrt{r_k}`
with mass :math:`r_k` maps a vector back to a point cloud, so averages, linear classifiers
and interpolations of vectors act on distributions (Wang et al. 2013; Moosmüller and
Cloninger 2023; Wang, Ke, Bhaskar, Krishnaswamy and Cloninger 2025, arXiv 2510.22033).

Python API (each also a CLI command ``otbio <name>``)
------------------------------------------------------
- :func:`reference`: cells -> reference AnnData (``otbio reference``).
- :func:`embed`: cells + reference -> embedding AnnData (``otbio embed``);
  :func:`embed_arrays` is the array-level function underneath.
- :func:`concat`: join embedding shards made against the same reference (``otbio concat``).
- :func:`barycenter`: LOT barycenters of groups of samples as cells (``otbio barycenter``).
- :func:`distances`: pairwise LOT (and optionally exact W2) distances (``otbio distances``).
- :func:`to_cloud`: one LOT vector -> point cloud ``z + v / sqrt(r)`` with weights ``r``.
- :func:`classify`, :func:`predict`, :func:`save_model`, :func:`load_model`: linear
  classifiers on LOT vectors read back in cell space (``otbio classify``).
- :func:`generate`, :func:`check_synthetic`: synthetic samples (``otbio generate``).
- :func:`pbmc_cohort`: the deterministic 24-sample cohort of ``test_data/pbmc_cohort.h5ad``;
  :func:`state_shift_cohort`: cohorts whose conditions differ in the state of one cell
  type, composition unchanged (benchmarks/lot_classify.py).
- :func:`reference_id`, :func:`check_same_reference`: the reference fingerprint.

Reference AnnData (written by ``otbio reference``, read by ``--reference``)
---------------------------------------------------------------------------
- ``X``: float64 (k, d), the support points :math:`z_k`.
- ``obs_names``: ``"z0" .. "z{k-1}"``; ``obs['weight']``: float64 (k,), :math:`r_k`, sums to 1.
- ``var_names``: the d dimension names: the ``vars`` given, or ``"{use_rep}_{j}"``
  (e.g. ``X_pca_1`` ... ``X_pca_50``, counted from 1 as PC1 ... PC50).
- ``obs[celltype_key]`` (only with ``--celltype-key``): the majority label of the pooled cells
  nearest to each support point (a categorical), to name reference points.
- ``uns['lot_reference']`` (dict): ``reference_id`` (str, see below), ``n_samples`` (int),
  ``cells_per_sample`` (int, cells drawn from every sample to pool), ``samples`` (list of
  str), ``converged`` (bool: the barycenter fixed point reached its tolerance; True for
  the other methods), ``otbio_version``; when the input had ``varm['PCs']`` and ``use_rep='X_pca'``:
  ``loadings`` float (n_genes, d) and ``genes`` (list of str), so that a direction in PCA
  space can be read as genes (``loadings @ direction``); only genes with finite loadings
  (scanpy writes NaN rows for genes outside the PCA, which cannot be read back).
  ``params`` (dict, the AnnData contract of docs/conventions.md): ``method``
  (kmeans|barycenter|sample|gaussian), ``size`` (int, as asked), ``use_rep`` or ``vars``,
  ``sample_key``, ``weight_key``, ``celltype_key``, ``stratify`` (bool), ``min_points``
  (when stratified), ``cells_per_sample`` (when given), ``seed``, ``max_iter``; a
  parameter left at None is absent. ``use_rep`` / ``vars`` name the representation:
  :func:`embed` refuses cells given by another one. Files written before the contract kept these flat in
  ``uns['lot_reference']`` (``stratified_by`` for the stratifying column); they are still read.

Embedding AnnData (written by ``otbio embed`` / ``otbio concat``)
-----------------------------------------------------------------
- ``X``: float64 (n_samples, k*d), row-major over reference points:
  ``X[i, k*d + j]`` is coordinate ``j`` of :math:`v_{ik}`; ``X[i].reshape(k, d)`` gives the
  per-reference-point displacements (scaled by :math:`\\sqrt{r_k}`). With ``raw_map``
  (``--raw-map``), ``X[i].reshape(k, d)`` is :math:`T_i(z)` itself (pyLOT convention).
- ``obs_names``: sample ids (str). ``obs``: every column of the cells' obs that is constant
  within each sample (e.g. ``condition``), plus ``n_cells`` (int), ``lot_converged``
  (bool), ``lot_n_iter`` (int, Sinkhorn iterations; only with the sinkhorn solver), ``lot_cost`` (float, transport cost
  :math:`W_2^2` (exact) or :math:`\\langle P, C \\rangle` (sinkhorn) from the reference).
- ``var_names``: ``"z{k}:{dim}"``; ``var['ref_point']`` (int k), ``var['dim']`` (str).
- ``uns['lot']`` (dict):
  ``reference`` float64 (k, d) support, ``reference_weights`` float64 (k,),
  ``reference_id`` (str), ``reference_params`` (the reference's
  ``uns['lot_reference']['params']``), ``dims`` (list of d str),
  ``epsilon_abs`` float (n_samples,)
  (absolute epsilon used per sample; zeros for exact),
  ``convergence`` (dict of arrays in obs order: ``sample`` str, ``converged`` bool,
  ``n_iter`` int, ``marginal_error`` float, ``cost`` float), ``otbio_version``;
  ``loadings`` / ``genes`` copied from the reference when present;
  ``reference_labels`` (dict column -> str array (k,)) copied from the reference's label
  columns (``--celltype-key``) when present; and ``params``: ``use_rep`` (or ``vars``),
  ``sample_key``, ``weight_key`` (absent = uniform), ``solver`` (``"exact"`` |
  ``"sinkhorn"``), ``raw_map`` (bool), and for sinkhorn ``epsilon`` (as given),
  ``relative_epsilon``, ``epsilon_scaling``, ``tol``, ``max_iter``.
  Embeddings written before the contract kept the parameters flat in ``uns['lot']``; every
  reader (:func:`concat`, :func:`barycenter`, :func:`distances`, :func:`classify`,
  :func:`generate`) accepts them, and :func:`concat` writes the current layout.
  After subsetting rows, the ``obs`` columns ``lot_*`` stay aligned; ``uns`` arrays do not.

Reference fingerprint: ``reference_id`` is the first 16 hex digits of the SHA-256 of the
support (float64, C order) followed by the weights (float64); :func:`concat` and the model
commands refuse embeddings whose ids differ.

Barycenter AnnData (``otbio barycenter``): one row per support point (or resampled cell)
and group; ``X`` float64 (rows, d) in the representation's coordinates (also in
``obsm[use_rep]`` when the embedding used ``use_rep``), ``var_names`` = dims,
``obs['group']`` (str), ``obs['weight']`` (mass within its group, sums to 1 per group),
``obs['method']`` (``"lot"`` or ``"exact"``), ``uns['lot_barycenter']`` (reference_id,
groups, n_samples per group; with ``--exact`` also ``w2_lot_to_exact``, the W2 distance
between the LOT and the exact barycenter per group; ``params``: groupby, weights, n_cells,
exact, seed, max_iter).

Distances table (``otbio distances``): TSV with columns ``sample_a``, ``sample_b``,
``lot`` (and ``exact_w2`` with ``--exact``), one row per unordered pair.
"""

from __future__ import annotations

from otbio.lot._classify import (
    classify,
    cross_validate,
    load_model,
    predict,
    save_model,
    transport_labels,
)
from otbio.lot._cohort import pbmc_cohort, state_shift_cohort
from otbio.lot._embed import SampleFit, embed, embed_arrays, lot_vector, to_cloud
from otbio.lot._format import check_same_reference, reference_id
from otbio.lot._generate import check_synthetic, generate, mixing_weights
from otbio.lot._ops import (
    barycenter,
    concat,
    distance_matrix,
    distances,
    embedding_arrays,
    exact_w2_matrix,
)
from otbio.lot._reference import reference, reference_from_arrays

__all__ = [
    "SampleFit",
    "check_synthetic",
    "classify",
    "cross_validate",
    "generate",
    "mixing_weights",
    "transport_labels",
    "load_model",
    "predict",
    "save_model",
    "barycenter",
    "check_same_reference",
    "concat",
    "distance_matrix",
    "distances",
    "embed",
    "embed_arrays",
    "embedding_arrays",
    "exact_w2_matrix",
    "lot_vector",
    "pbmc_cohort",
    "reference",
    "reference_from_arrays",
    "reference_id",
    "state_shift_cohort",
    "to_cloud",
]
