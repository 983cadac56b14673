"""Numba's on-disk cache must never stop a command.

otbio's kernels are compiled with ``cache=True``. Numba then needs a writable cache
directory (``__pycache__`` beside the source, else the user's cache directory) when a kernel
is *decorated*, reads cache files when it is first called and writes them after compiling.
In a container with a read-only install and a read-only HOME, on a full disk, or with a
truncated cache file, each of these steps raises and every command dies.

:func:`install` (run once, when Numba is first imported: see :mod:`otbio._threading`) makes the three steps fail soft:

- no writable location: the cache moves to ``$TMPDIR/otbio-numba-cache-UID`` (the same
  folder every run; ``...-UID-1`` and so on when another user holds that name), else to a
  temporary directory removed at exit; when even that fails the kernels are compiled
  without a cache;
- a cache file that cannot be read (truncated, corrupt): a cache miss, the kernel is compiled;
- a cache file that cannot be written (full disk, read-only): the compiled kernel is used
  and not cached.

Each fallback says so once, as one ``otbio`` log warning. Nothing changes when the cache
works.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile

__all__ = ["install"]

log = logging.getLogger("otbio")
_said: set[str] = set()


def _say_once(key: str, msg: str) -> None:
    if key not in _said:
        _said.add(key)
        log.warning(msg)


#: A fallback cache folder made for this process only (removed at exit and on a signal).
temporary_dir: str | None = None


def _own_dir(path: str, uid: int) -> bool:
    """Whether ``path`` is (or can be made) a private cache folder of user ``uid``: a real
    directory, not a link, owned by ``uid``, writable by it and by no one else."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) or st.st_mode & 0o022:
            return False
        if hasattr(os, "getuid") and st.st_uid != uid:
            return False
        if not os.access(path, os.W_OK | os.X_OK):
            return False
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return False
    return True


def _fallback_dir() -> str | None:
    """A writable directory for the cache when Numba's own locations are not writable.

    ``$TMPDIR/otbio-numba-cache-UID``, or when that name is taken (another user's folder, a
    file) the first of ``...-UID-1`` to ``...-UID-8`` that is this user's: the same folder every
    run, so kernels are compiled once. When none is, a fresh folder removed when the process
    ends (the kernels are then compiled in every run)."""
    global temporary_dir
    import atexit
    import shutil

    uid = os.getuid() if hasattr(os, "getuid") else 0
    base = os.path.join(tempfile.gettempdir(), f"otbio-numba-cache-{uid}")
    for cand in (base, *(f"{base}-{k}" for k in range(1, 9))):
        if _own_dir(cand, uid):
            return cand
    try:
        temporary_dir = tempfile.mkdtemp(prefix=f"otbio-numba-cache-{uid}-tmp-")
    except OSError:
        return None
    atexit.register(shutil.rmtree, temporary_dir, True)
    return temporary_dir


def install() -> None:
    """Patch Numba's cache entry points once so that cache failures only cost compile time."""
    from numba.core import caching, config, dispatcher

    if getattr(dispatcher.Dispatcher.enable_caching, "_otbio", False):
        return
    enable_caching = dispatcher.Dispatcher.enable_caching
    load_overload = caching.Cache.load_overload
    save_overload = caching.Cache.save_overload

    def safe_enable_caching(self):
        try:
            return enable_caching(self)
        except RuntimeError as exc:  # "cannot cache function ...: no locator available"
            if "locator" not in str(exc):
                raise
        where = _fallback_dir()
        if where is not None:
            config.CACHE_DIR = where
            try:
                result = enable_caching(self)
            except RuntimeError:
                pass
            else:
                _say_once(
                    "dir",
                    "Numba's cache directory is not writable; caching compiled kernels in "
                    f"{where} (set NUMBA_CACHE_DIR to choose)",
                )
                return result
        _say_once("none", "no writable directory for Numba's cache; compiling kernels uncached")
        self._cache = caching.NullCache()

    def safe_load_overload(self, sig, target_context):
        try:
            return load_overload(self, sig, target_context)
        except Exception as exc:  # truncated or corrupt cache file: recompile
            try:  # and let the recompiled kernel write a fresh index
                os.unlink(self._cache_file._index_path)
            except (AttributeError, OSError):
                pass
            _say_once(
                "load",
                f"ignoring an unreadable Numba cache file ({type(exc).__name__}); recompiling",
            )
            return None

    def safe_save_overload(self, sig, data):
        try:
            return save_overload(self, sig, data)
        except Exception as exc:  # full disk, read-only cache: keep the compiled kernel
            _say_once("save", f"cannot write Numba's cache ({exc}); kernels stay uncached")
            return None

    safe_enable_caching._otbio = True
    dispatcher.Dispatcher.enable_caching = safe_enable_caching
    caching.Cache.load_overload = safe_load_overload
    caching.Cache.save_overload = safe_save_overload
