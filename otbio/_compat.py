"""Renamed keyword arguments of the public Python API, kept for one release with a warning."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

__all__ = ["renamed_kwargs"]


def renamed_kwargs(renames: dict[str, str | tuple[str, Callable]]):
    """Accept the old keyword names of a function for one release, with a FutureWarning.

    ``renames`` maps an old name to the new one, or to ``(new, convert)`` when the value
    changed too (``temperature=T`` became ``epsilon=1/T``).
    """

    def deco(f):
        @functools.wraps(f)
        def wrapper(*args, **kwargs):
            for old, new in renames.items():
                if old not in kwargs:
                    continue
                new, convert = new if isinstance(new, tuple) else (new, None)
                value = kwargs.pop(old)
                if new in kwargs:
                    msg = f"{f.__name__}() got both {old!r} (renamed) and {new!r}; pass {new!r}"
                    raise TypeError(msg)
                warnings.warn(
                    f"{f.__name__}(): {old!r} is renamed {new!r} and will be removed",
                    FutureWarning,
                    stacklevel=2,
                )
                kwargs[new] = convert(value) if convert is not None and value is not None else value
            return f(*args, **kwargs)

        return wrapper

    return deco
