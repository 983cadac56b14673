"""Protein substructure alignment and search by entropic optimal transport.

After PLASMA (Wang et al., "Fast and Interpretable Protein Substructure Alignment via
Optimal Transport", arXiv:2510.11752, ICLR 2026): residue features of a query (motif,
domain, chain) and a target are compared with the hinge (query containment) cost, the
engine's log-domain Sinkhorn gives a residue-level plan, its entries above a threshold are
the residue pairs, and a score in [0, 1] combines a cosine of transported features with the
continuity of the plan's diagonals. otbio computes the features from the coordinates (no
language model needed) or takes user embeddings (``.npy``, with a PLASMA-PF mode), refines
the plan with a superposition of the pairs, and checks it with the Kabsch RMSD and the
TM-score (Zhang & Skolnick 2004).

>>> from otbio.align import read_structure, align
>>> lid = read_structure("test_data/protein/adk_open.pdb::122-159")
>>> res = align(lid, read_structure("test_data/protein/adk_closed.pdb"))
>>> res.n_pairs, res.score > 0.5
(38, True)
"""

from __future__ import annotations

from otbio.align._align import Alignment, align, features_of
from otbio.align._features import Features, geometric_features, load_embedding
from otbio.align._index import StructureIndex, index, open_index
from otbio.align._search import (
    list_targets,
    read_structures,
    score_table,
    search,
    write_superposed,
)
from otbio.align._structure import Structure, parse_selection, read_structure
from otbio.align._superpose import kabsch, tm_superpose

__all__ = [
    "Alignment",
    "Features",
    "Structure",
    "StructureIndex",
    "align",
    "features_of",
    "geometric_features",
    "index",
    "kabsch",
    "list_targets",
    "load_embedding",
    "open_index",
    "parse_selection",
    "read_structure",
    "read_structures",
    "score_table",
    "search",
    "tm_superpose",
    "write_superposed",
]
