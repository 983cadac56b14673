"""The worked examples of the README and of the docs/*.md pages run as written, on the bundled
data, and print what they say.

A fenced block preceded by the comment ``<!-- example -->`` is run (``bash`` blocks with bash,
``python`` blocks with this Python) from a scratch folder that holds a link to test_data/; each
page (README.md, then every docs/*.md) has its own folder, shared by its examples in page order
(later ones use earlier outputs). A block that repeats an example run elsewhere is left
unmarked. What a page says a command prints is checked against what it printed:

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
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
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


def _page(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


BLOCKS = [(_page(p), *b) for p in PAGES for b in _blocks(p.read_text())]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A function giving each page its own scratch folder (made on first use) and the env."""
    env = _env(tmp_path_factory.mktemp("bin"))
    folders: dict[str, Path] = {}

    def folder(page: str) -> Path:
        if page not in folders:
            d = tmp_path_factory.mktemp(page.replace("/", "_").replace(".", "_"))
            (d / "test_data").symlink_to(ROOT / "test_data")
            folders[page] = d
        return folders[page]

    return folder, env


def _env(d: Path) -> dict:
    """The environment of every example: this checkout's otbio first on PATH."""
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
    return env


def test_the_readme_marks_its_examples():
    readme = [b[1] for b in BLOCKS if b[0] == "README.md"]
    assert readme.count("bash") >= 4, readme
    langs = [b[1] for b in BLOCKS]
    assert langs.count("bash") >= 8 and langs.count("python") >= 3, langs


def test_the_docs_links_resolve():
    """Every relative link and image of the README and the docs pages names a file that exists."""
    bad = []
    for p in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", p.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            path = target.split("#", 1)[0]
            if path and not (p.parent / path).exists():
                bad.append(f"{_page(p)}: {target}")
    assert not bad, bad


@pytest.mark.slow
@pytest.mark.parametrize(
    "page,lang,code,expected,line", BLOCKS, ids=[f"{b[0]}:line{b[4]}" for b in BLOCKS]
)
def test_readme_example(scratch, page, lang, code, expected, line):
    folder, env = scratch
    d = folder(page)
    if lang == "bash":
        cmd = ["bash", "-euo", "pipefail", "-c", code]
    else:
        cmd = [sys.executable, "-c", code]
    r = subprocess.run(cmd, cwd=d, env=env, capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"{page} line {line}: exit {r.returncode}\n{out[-3000:]}"
    folded = _fold(out)
    for claim in _claims(code):
        parts = [_fold(p) for p in claim.split("...") if p.strip()]
        assert _contains_in_order(folded, parts), (
            f"{page} line {line} claims {claim!r}; printed:\n{out[-3000:]}"
        )
    if expected:
        parts = [_fold(e) for e in expected]
        assert _contains_in_order(folded, parts), (
            f"{page} line {line}: the output block does not match; printed:\n{out[-3000:]}"
        )
