"""One current section per benchmark in benchmarks/RESULTS.md, rewritten by its own script.

A section is the text between ``<!-- section: NAME -->`` and ``<!-- end: NAME -->``. NAME is the
script's name (``register``), or the script's name, a dot and the part it measured
(``register.sweep``, ``engine.whole-process``) when a script writes several tables.

``write_section(name, markdown)`` replaces that text with ``markdown`` and a line saying where
and on what it was measured (commit, machine, load, date). The text it replaces is not lost: it
is appended, verbatim, to ``benchmarks/history/RESULTS-<YYYY-MM-DD>.md`` (today's date, UTC)
under a line naming the section. A section not yet in the file is added after the last section
of the same script, else at the end.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
HISTORY = HERE / "history"


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- section: {name} -->", f"<!-- end: {name} -->"


def provenance(root: Path = HERE.parent) -> str:
    """``Commit: `abc1234` (+ local changes) ... machine, load, date`` of the running checkout."""

    def git(*args: str) -> str:
        try:
            r = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return r.stdout.strip() if r.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = " (+ local changes)" if git("status", "--porcelain", "--untracked-files=no") else ""
    try:
        load = f"{os.getloadavg()[0]:.1f}"
    except OSError:
        load = "n/a"
    return (
        f"Commit: `{commit}`{dirty}. Machine: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, load average {load} when written; "
        f"written {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC."
    )


def _with_provenance(markdown: str, line: str) -> str:
    """``markdown`` with ``line`` after its first heading (or first, without a heading)."""
    lines = markdown.strip("\n").splitlines()
    for i, ln in enumerate(lines):
        if ln.startswith("#"):
            rest = lines[i + 1 :]
            return "\n".join(
                [*lines[: i + 1], "", line, *([""] if rest and rest[0] else []), *rest]
            )
    return "\n".join([line, "", *lines])


def write_section(
    name: str,
    markdown: str,
    *,
    results: Path = RESULTS,
    history: Path = HISTORY,
    stamp: bool = True,
) -> Path:
    """Make ``markdown`` the current section ``name`` of ``results``; the old text goes to
    ``history``. Returns the path of ``results``. ``stamp`` adds the provenance line."""
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"bad section name {name!r}")
    results, history = Path(results), Path(history)
    body = _with_provenance(markdown, provenance()) if stamp else markdown.strip("\n")
    begin, end = _markers(name)
    block = f"{begin}\n{body}\n{end}"
    text = results.read_text() if results.exists() else "# Benchmark results\n"
    pattern = re.compile(re.escape(begin) + r"\n?(.*?)\n?" + re.escape(end), re.S)
    found = pattern.search(text)
    if found:
        old = found.group(1).strip("\n")
        if old:
            history.mkdir(parents=True, exist_ok=True)
            day = time.strftime("%Y-%m-%d", time.gmtime())
            page = history / f"RESULTS-{day}.md"
            head = "" if page.exists() else f"# Benchmark results replaced on {day}\n"
            with open(page, "a") as fh:
                fh.write(
                    f"{head}\n<!-- section {name}, replaced {time.strftime('%H:%M', time.gmtime())}"
                    f" UTC by {Path(sys.argv[0]).name or 'python'} -->\n{old}\n"
                )
        text = text[: found.start()] + block + text[found.end() :]
    else:
        script = name.split(".")[0]
        last = None
        for m in re.finditer(r"<!-- end: ([A-Za-z0-9_.-]+) -->", text):
            if m.group(1).split(".")[0] == script:
                last = m
        if last is not None:
            text = text[: last.end()] + "\n\n" + block + text[last.end() :]
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
    tmp = results.with_name(f".{results.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, results)
    return results
