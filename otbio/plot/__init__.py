"""Figures that the commands write with ``--plot`` (matplotlib, imported lazily).

Each application keeps its figures in its own private module here; they take arrays and
tables, never AnnData, and return a matplotlib Figure that the caller saves with
:func:`otbio.io.save_figure`.
"""

from __future__ import annotations

__all__: list[str] = []

from otbio.plot._align import alignment_figure  # noqa: E402, F401
from otbio.plot._lot import lot_embedding_figure  # noqa: E402, F401
from otbio.plot._lot_analysis import classifier_figure  # noqa: E402, F401
from otbio.plot._register import registration_figure  # noqa: E402, F401
