"""Shared fixtures: paths to the bundled real data."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = ROOT / "test_data"


@pytest.fixture(scope="session")
def test_data() -> Path:
    return TEST_DATA
