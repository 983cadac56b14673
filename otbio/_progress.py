"""Progress on stderr: a bar on a terminal, a line about every 10% in a log file.

Library code calls :func:`progress` only when its caller passed ``progress=True``; it never
reads the command line's settings (the CLI passes ``progress=not --quiet``).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

__all__ = ["logger", "progress"]

logger = logging.getLogger("otbio")
T = TypeVar("T")


def progress(
    items: Iterable[T], *, total: int | None = None, desc: str = "", show: bool = True
) -> Iterator[T]:
    """Yield ``items`` and report progress on stderr.

    A terminal gets a one-line bar redrawn in place; a log file (stderr not a terminal) gets
    a plain line at about every 10%, at most one a second (items that finish together give
    one line, not a burst), and always the last, so that batch logs show that work is moving. Nothing is
    shown with ``show=False`` or for a single item (the items are still yielded).
    """
    if total is None:
        try:
            total = len(items)  # type: ignore[arg-type]
        except TypeError:
            total = None
    if total == 1:  # one item: a progress line says nothing (and would come before its error)
        show = False
    tty = sys.stderr.isatty()
    step = max(1, (total or 10) // 10)
    t0 = time.perf_counter()
    last = 0.0  # when the last log line was written (a run under a second prints only the last)
    i = 0
    for i, item in enumerate(items, 1):
        yield item
        if not show:
            continue
        el = time.perf_counter() - t0
        if tty or (i % step == 0 and el - last >= 1.0) or i == total:
            last = el
            tot = f"/{total}" if total else ""
            msg = f"{desc}: {i}{tot} ({el:.1f} s)"
            if tty:
                sys.stderr.write("\r" + msg)
                if i == total:
                    sys.stderr.write("\n")
            else:
                sys.stderr.write(msg + "\n")
            sys.stderr.flush()
    if show and tty and total and i != total:
        sys.stderr.write("\n")
