"""Exceptions and warnings shared by every part of otbio."""

from __future__ import annotations

__all__ = ["ConvergenceWarning", "InputError", "OtbioError", "listing", "not_found"]


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


def listing(names, n: int = 6) -> str:
    """A few of ``names`` for a message, quoted: ``'a', 'b', 'c', ... (12 in all)``, or ``none``
    (quoted so that the command line never reads a column such as 'n_cells' as an option)."""
    names = [f"'{x}'" for x in names]
    if not names:
        return "none"
    head = ", ".join(names[:n])
    return head if len(names) <= n else f"{head}, ... ({len(names)} in all)"


def not_found(what: str, key: str, where: str, available, param: str) -> InputError:
    """The error for a missing key: what was asked, what exists, and the fix.

    ``param`` names the option as the library knows it (``sample_key``, ```groupby```) or as
    the command line spells it (``--color-key``); the command line translates the former.
    """
    return InputError(
        f"{what} '{key}' not found in {where} (there: {listing(available)}); "
        f"set {param} to one of those"
    )
