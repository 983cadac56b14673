"""Long native calls that a signal can still end.

Python runs signal handlers in the main thread, between bytecodes: while the main thread is
inside a native call (liblinear, a BLAS routine), SIGTERM and SIGINT wait for it to return,
which can be never (liblinear with ``C = 1e308``). :func:`interruptible` runs the work in a
worker thread instead; the main thread only waits, in short sleeps, so the command's handlers
(otbio.cli._outputs: remove the temporaries, one line, exit 143 / 130) run at once. The
native libraries concerned release the GIL while they compute.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["interruptible"]

T = TypeVar("T")


def interruptible(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, run so that signals reach the main thread's handlers.

    Called from another thread than the main one it simply calls ``fn``.
    """
    if threading.current_thread() is not threading.main_thread():
        return fn(*args, **kwargs)
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    t = threading.Thread(target=work, name="otbio-work", daemon=True)
    t.start()
    while t.is_alive():
        t.join(0.05)  # wakes often enough for a pending signal handler to run
    if "error" in box:
        raise box["error"]
    return box["value"]
