"""Shared docstring text: scanpy's ``_doc_params``.

The three science entry points (``align``, ``classify``, ``register_points``) read as their
stages; their long reference text (parameters, maths, examples) sits in a module constant
beside them and fills a ``{name}`` placeholder of the docstring, so ``help()`` shows it whole.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)


def doc_params(**parts: str) -> Callable[[F], F]:
    """Fill the ``{name}`` placeholders of the decorated function's docstring with ``parts``."""

    def deco(f: F) -> F:
        if f.__doc__ is not None:  # None under python -OO
            for key, text in parts.items():
                f.__doc__ = f.__doc__.replace("{" + key + "}", text)
        return f

    return deco
