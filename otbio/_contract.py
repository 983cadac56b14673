"""The AnnData contract shared by every tool (docs/conventions.md, "AnnData contract").

- A tool that annotates an AnnData it is given takes ``key_added`` (where the result goes;
  the other keys it writes are derived from it) and ``copy=False`` (modify in place; with
  ``copy=True`` the input is left untouched and a new AnnData is returned).
- A tool that builds a new AnnData writes under one documented ``uns`` key.
- Either way, the parameters the tool ran with (defaults and data-driven choices resolved)
  are in ``uns[key]['params']``; results stay beside them in ``uns[key]``.
- ``params`` holds only what h5ad and JSON can store: str, bool, int, float, lists of
  those and nested dicts. A parameter left at None is not written.

Files written by earlier versions kept some parameters flat in ``uns[key]``;
:func:`with_params` reads both layouts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["annotate", "clean_params", "with_params"]


def _clean(v: Any) -> Any:
    if isinstance(v, Mapping):
        return clean_params(v)
    if isinstance(v, np.ndarray):
        return _clean(v.tolist())
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.str_):
        return str(v)
    if v is None or isinstance(v, (str, bool, int, float)):
        return v
    return str(v)  # paths and other objects: their text


def clean_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` as plain Python that h5ad and JSON store: None dropped, tuples and
    arrays as lists, NumPy scalars as Python scalars, other objects as their text."""
    return {str(k): _clean(v) for k, v in params.items() if v is not None}


def with_params(
    entry: Mapping[str, Any], legacy: Iterable[str] = (), *, empty: Iterable[str] = ()
) -> dict[str, Any]:
    """A ``uns`` entry in the current layout: results at the top, parameters under ``params``.

    Entries written before the contract kept their parameters flat: the keys named in
    ``legacy`` are moved under ``params`` (those named in ``empty`` dropped when ``""`` or
    empty, which meant None then). A current entry is returned as a shallow copy.
    """
    out = dict(entry)
    p = out.get("params")
    if isinstance(p, Mapping):
        out["params"] = dict(p)
        return out
    empty = set(empty)
    params = {}
    for k in legacy:
        if k in out:
            v = out.pop(k)
            if k in empty and (v is None or (np.ndim(v) == 0 and str(v) == "") or np.size(v) == 0):
                continue
            params[k] = v
    out["params"] = params
    return out


def annotate(adata: AnnData, copy: bool) -> AnnData:
    """The AnnData a tool writes into: ``adata`` itself, or a copy with ``copy=True``."""
    return adata.copy() if copy else adata
