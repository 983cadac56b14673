"""The README's worked examples run as written, on the bundled data, and print what it says.

A fenced block preceded by the comment ``<!-- example -->`` is run (``bash`` blocks with bash,
``python`` blocks with this Python) from a scratch folder that holds a link to test_data/, the
examples in README order sharing that folder (later ones use earlier outputs). What the README
says a command prints is checked against what it printed:

- ``# -> TEXT`` (after a command or on its own line under it, continued on ``#    MORE``
  lines) must appear in that block's output, white space folded; ``...`` separates fragments
  that must appear in that order;
- an unlabelled fenced block right after an example is that example's output: each of its
  lines must appear in the output, in order.

So every number the README prints is a number the code prints today.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MARK = "<!-- example -->"


def _blocks(text: str):
    """(language, code, expected-output block or None, line number) of each marked block."""
    lines = text.splitlines()
    out = []
    i = 0
    while i < len(lines):
        if lines[i].strip() == MARK:
            j = i + 1
            while not lines[j].startswith("```"):
                j += 1
            lang = lines[j][3:].strip()
            k = j + 1
            while not lines[k].startswith("```"):
                k += 1
            code = "\n".join(lines[j + 1 : k])
            expected = None
            n = k + 1
            while n < len(lines) and not lines[n].strip():
                n += 1
            if n < len(lines) and lines[n].strip() == "```":  # an unlabelled block: the output
                m = n + 1
                while not lines[m].startswith("```"):
                    m += 1
                expected = [ln for ln in lines[n + 1 : m] if ln.strip()]
            out.append((lang, code, expected, j + 1))
            i = k
        i += 1
    return out


def _claims(code: str) -> list[str]:
    """The ``# -> ...`` claims of a block (on their own line or after code), a claim on its
    own line continued by the ``#    ...`` lines under it."""
    claims: list[str] = []
    open_claim = False
    for ln in code.splitlines():
        s = ln.strip()
        if "# ->" in s:
            claims.append(s.split("# ->", 1)[1].strip())
            open_claim = s.startswith("# ->")
        elif open_claim and re.match(r"#\s{2,}\S", s):
            claims[-1] += " " + s[1:].strip()
        else:
            open_claim = False
    return claims


def _fold(s: str) -> str:
    return " ".join(s.split())


def _contains_in_order(haystack: str, parts: list[str]) -> bool:
    pos = 0
    for p in parts:
        k = haystack.find(p, pos)
        if k < 0:
            return False
        pos = k + len(p)
    return True


BLOCKS = _blocks(README.read_text())


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    d = tmp_path_factory.mktemp("readme")
    (d / "test_data").symlink_to(ROOT / "test_data")
    bindir = d / ".bin"
    bindir.mkdir()
    otbio = bindir / "otbio"  # the otbio of this Python and this checkout
    otbio.write_text(
        f'#!/bin/sh\nexec "{sys.executable}" -c "from otbio.cli import main; main()" "$@"\n'
    )
    otbio.chmod(0o755)
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("OTBIO_DEBUG", None)
    return d, env


def test_the_readme_marks_its_examples():
    langs = [b[0] for b in BLOCKS]
    assert langs.count("bash") >= 6 and langs.count("python") >= 2, langs


@pytest.mark.slow
@pytest.mark.parametrize("lang,code,expected,line", BLOCKS, ids=[f"line{b[3]}" for b in BLOCKS])
def test_readme_example(scratch, lang, code, expected, line):
    d, env = scratch
    if lang == "bash":
        cmd = ["bash", "-euo", "pipefail", "-c", code]
    else:
        cmd = [sys.executable, "-c", code]
    r = subprocess.run(cmd, cwd=d, env=env, capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"README line {line}: exit {r.returncode}\n{out[-3000:]}"
    folded = _fold(out)
    for claim in _claims(code):
        parts = [_fold(p) for p in claim.split("...") if p.strip()]
        assert _contains_in_order(folded, parts), (
            f"README line {line} claims {claim!r}; printed:\n{out[-3000:]}"
        )
    if expected:
        parts = [_fold(e) for e in expected]
        assert _contains_in_order(folded, parts), (
            f"README line {line}: the output block does not match; printed:\n{out[-3000:]}"
        )
