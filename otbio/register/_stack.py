"""Stack registered sections into one AnnData with 3-D coordinates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

from otbio._contract import clean_params
from otbio._errors import InputError, not_found

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["stack_sections"]


def stack_sections(
    sections: Sequence[AnnData],
    *,
    spatial_keys: Sequence[str],
    z: Sequence[float],
    names: Sequence[str],
    join: Literal["outer", "inner"] = "outer",
) -> AnnData:
    """Concatenate sections placed in one frame and add a z coordinate per section.

    Parameters
    ----------
    sections
        The sections, in order (e.g. each registered onto the reference section's frame).
    spatial_keys
        ``obsm`` key of the in-frame 2-D coordinates of each section (one per section).
    z
        The height of each section.
    names
        Section names, stored in ``obs['section']``.
    join
        Genes kept: the union (``outer``, missing values 0) or the intersection.

    Returns
    -------
    AnnData with ``obs['section']`` (categorical, in order), ``obs['z']``,
    ``obsm['spatial_3d']`` = ``[x, y, z]``, ``obsm['spatial']`` the in-frame 2-D coordinates,
    and ``uns['stack']['params']`` (spatial_keys, z, names, join).
    """
    import anndata as ad
    import pandas as pd

    n = len(sections)
    if n == 0:
        msg = "stack needs at least one section"
        raise InputError(msg)
    if not (len(spatial_keys) == len(z) == len(names) == n):
        msg = (
            f"{n} sections but {len(spatial_keys)} spatial keys, {len(z)} z values and "
            f"{len(names)} names; give one of each per section"
        )
        raise InputError(msg)
    if len(set(names)) != n:
        msg = "section names must be unique"
        raise InputError(msg)
    parts = []
    coords = []
    for sec, key, name in zip(sections, spatial_keys, names):
        if key not in sec.obsm:
            raise not_found("obsm key", key, f"section '{name}'", sec.obsm.keys(), "--spatial-keys")
        c = np.asarray(sec.obsm[key], dtype=np.float64)
        if c.ndim != 2 or c.shape[1] != 2:
            msg = f"section '{name}': obsm['{key}'] must be 2-D coordinates, got shape {c.shape}"
            raise InputError(msg)
        if not np.isfinite(c).all():
            msg = f"section '{name}': obsm['{key}'] contains NaN or infinite values"
            raise InputError(msg)
        coords.append(c)
        part = ad.AnnData(X=sec.X, obs=sec.obs.copy(), var=pd.DataFrame(index=sec.var_names))
        part.obs_names = [f"{name}:{o}" for o in sec.obs_names]
        parts.append(part)
    out = ad.concat(parts, join=join, fill_value=0)
    zz = np.concatenate([np.full(len(c), float(v)) for c, v in zip(coords, z)])
    xy = np.concatenate(coords)
    out.obs["section"] = pd.Categorical(
        np.concatenate([[nm] * len(c) for c, nm in zip(coords, names)]), categories=list(names)
    )
    out.obs["z"] = zz
    out.obsm["spatial"] = xy
    out.obsm["spatial_3d"] = np.column_stack([xy, zz])
    out.uns["stack"] = {
        "params": clean_params(
            {
                "spatial_keys": [str(k) for k in spatial_keys],
                "z": [float(v) for v in z],
                "names": [str(n) for n in names],
                "join": join,
            }
        )
    }
    return out
