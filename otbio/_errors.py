"""Exceptions and warnings shared by every part of otbio."""

from __future__ import annotations

__all__ = ["ConvergenceWarning", "InputError", "OtbioError"]


class OtbioError(Exception):
    """Base class of the errors otbio raises on purpose.

    The command line turns it into one line on stderr and exit status 1.
    """


class InputError(OtbioError, ValueError):
    """Bad input data: a missing file or key, NaN, an empty sample, a wrong shape.

    The command line turns it into one line on stderr and exit status 2.
    """


class ConvergenceWarning(UserWarning):
    """A solver stopped at its iteration limit before reaching its tolerance."""
