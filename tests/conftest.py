"""Shared fixtures: paths to the bundled real data."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = ROOT / "test_data"

# The signal tests send Ctrl-C (SIGINT) to the commands they start, as a terminal does to its
# foreground job. A suite launched from a background job or under nohup inherits SIGINT
# ignored, every child would inherit that too, and otbio rightly keeps an ignored signal
# ignored: give the session the foreground disposition its children are meant to have.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def test_data() -> Path:
    return TEST_DATA
