"""The signals that end a command, and their handlers before a command runs.

:func:`install_early_handlers` runs first in the ``otbio`` console script
(:mod:`otbio._entry`), so that SIGINT (Ctrl-C), SIGHUP (a closed terminal) and SIGTERM during
the imports and the option checks give one ``Error: interrupted by ...`` line and the usual
exit status (128 + the signal number) instead of a traceback. Once a command runs, the full
handler of :mod:`otbio.cli._outputs` takes over (it also removes the staged outputs).
Importing this module changes nothing.
"""

from __future__ import annotations

import os
import signal

__all__ = ["SIGNALS", "install_early_handlers"]

#: The signals that end a command cleanly, with their names and exit statuses.
SIGNALS = {
    signal.SIGINT: ("SIGINT", 130),
    signal.SIGTERM: ("SIGTERM", 143),
    signal.SIGHUP: ("SIGHUP", 129),
}


def _early(signum, frame) -> None:  # pragma: no cover - exercised in a subprocess
    name, code = SIGNALS.get(signum, ("signal", 128 + signum))
    try:
        os.write(2, f"Error: interrupted by {name}; no output written\n".encode())
    finally:
        os._exit(code)


_early._otbio_early = True


def install_early_handlers() -> None:
    """Handle SIGINT, SIGTERM and SIGHUP from here on (main thread only). A signal that is
    ignored (``nohup``, a background job) stays ignored; otbio's command handler stays."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    for s in SIGNALS:
        h = signal.getsignal(s)
        if h is signal.SIG_IGN:
            continue  # nohup, or a background job of a shell: ignored signals stay ignored
        if not getattr(h, "_otbio", False):
            signal.signal(s, _early)
