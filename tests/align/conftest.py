"""Shared fixtures of the alignment tests: the bundled protein structures."""

from __future__ import annotations

from pathlib import Path

import pytest

from otbio.align import read_structure

DATA = Path(__file__).resolve().parents[2] / "test_data" / "protein"
CHAINS = sorted(p for p in (DATA / "chains").glob("*.pdb.gz") if p.name[0].isdigit())


@pytest.fixture(scope="session")
def data():
    return DATA


@pytest.fixture(scope="session")
def chains():
    return [read_structure(p) for p in CHAINS]


@pytest.fixture(scope="session")
def adk():
    return read_structure(DATA / "adk_open.pdb"), read_structure(DATA / "adk_closed.pdb")
