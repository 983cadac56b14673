"""docs/conventions.md against the code: every command's --help and the public signatures."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from otbio.cli import cli

DOC = Path(__file__).resolve().parents[1] / "docs" / "conventions.md"


def _table(title: str) -> list[list[str]]:
    text = DOC.read_text()
    part = text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]
    rows = [ln for ln in part.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in r.strip("|").split("|")] for r in rows[2:]]


def _options_table():
    """(CLI option, commands, Python name or None, functions) per row."""
    out = []
    for idea, py, opt, _key, cmds in _table("Options"):
        option = re.match(r"`(--[\w-]+)`", opt).group(1)
        name = None
        funcs: list[str] = []
        m = re.match(r"`(\w+)`(?: \(([^)]*)\))?", py)
        if m:
            name = m.group(1)
            funcs = [f.split(";")[0].strip() for f in (m.group(2) or "").split(",")]
            funcs = [f for f in funcs if re.fullmatch(r"\w+\.\w+(\.\w+)?", f)]
        out.append((option, [c.strip() for c in cmds.split(",")], name, funcs, idea))
    return out


def _help_options(name: str) -> set[str]:
    r = CliRunner().invoke(cli, [name, "--help"])
    assert r.exit_code == 0, r.output
    section = r.output.split("Options:", 1)[1]
    # option lines start at the first indent ("  -o, --output TEXT  ..."); help text is deeper
    return {m.group(2) for m in re.finditer(r"(?m)^  (-\w, )?(--[\w-]+)", section)}


def test_every_option_of_every_command_is_in_the_table():
    table = _options_table()
    listed: dict[str, set[str]] = {}
    for option, cmds, *_ in table:
        for c in cmds:
            listed.setdefault(c, set()).add(option)
    assert set(listed) <= set(cli.commands), set(listed) - set(cli.commands)
    for name in cli.commands:
        shown = _help_options(name) - {"--help"}
        want = listed.get(name, set())
        assert shown == want, (
            name,
            "missing in docs:",
            shown - want,
            "not in --help:",
            want - shown,
        )


def test_python_names_follow_the_options():
    for option, _cmds, name, funcs, idea in _options_table():
        if name is None:
            continue
        base = option[2:].replace("-", "_")
        if option not in ("--features", "--rigid-only", "--affine", "--no-expression"):
            assert name.rstrip("_") == base, (idea, name, option)
        assert funcs, f"{option}: name the functions that take {name}"
        for f in funcs:
            parts = f.split(".")
            obj = importlib.import_module(f"otbio.{parts[0]}")
            for p in parts[1:]:
                obj = getattr(obj, p)
            assert name in inspect.signature(obj).parameters, (f, name)


def test_renamed_spellings_are_hidden_aliases():
    for cmd, old, new in _table(
        "Renamed (old spellings still accepted for one release, with a warning)"
    ):
        old_opt = re.match(r"`(--[\w-]+)", old).group(1)
        new_opt = re.match(r"`(--[\w-]+)", new).group(1)
        shown = _help_options(cmd)
        assert new_opt in shown, (cmd, new_opt)
        assert old_opt not in shown or old_opt == new_opt, (cmd, old_opt)
        aliases = getattr(cli.commands[cmd].callback, "__otbio_aliases__", {})
        # an alias, or a hidden option when the value changes too (--temperature T = --epsilon 1/T)
        hidden = {
            o for p in cli.commands[cmd].params if getattr(p, "hidden", False) for o in p.opts
        }
        assert old_opt in aliases or old_opt in hidden, (cmd, old_opt)


def _public_functions():
    for mod in ("otbio.lot", "otbio.register", "otbio.align", "otbio.ot", "otbio.plot"):
        m = importlib.import_module(mod)
        for n in getattr(m, "__all__", dir(m)):
            f = getattr(m, n, None)
            if callable(f) and not n.startswith("_"):
                try:
                    yield f"{mod}.{n}", inspect.signature(f)
                except (TypeError, ValueError):
                    continue


OLD_PYTHON = {"show_progress", "label_key", "label", "folds", "repeats", "top", "quiet", "verbose"}


def test_public_signatures_use_no_old_names():
    seen = 0
    for qual, sig in _public_functions():
        seen += 1
        bad = OLD_PYTHON & set(sig.parameters)
        assert not bad, (qual, bad)
    assert seen > 30
    import otbio.plot

    assert not hasattr(otbio.plot, "plot_alignment")
    assert callable(otbio.plot.alignment_figure)


@pytest.mark.parametrize("name", list(cli.commands))
def test_options_follow_the_grammar(name):
    cmd = cli.commands[name]
    for p in cmd.params:
        if not isinstance(p, click.Option) or p.hidden:
            continue
        opt = next(o for o in p.opts if o.startswith("--"))
        # an output file besides -o is --save-<thing> (figures: --plot)
        if isinstance(p.type, click.Path) and opt not in ("--output", "--plot", "--targets"):
            assert opt.startswith("--save-"), (name, opt)
        # integer counts are --n-<things>, never the bare noun (--cells is a cells file)
        is_int = isinstance(p.type, click.types.IntParamType)
        if is_int and opt in ("--cells", "--n", "--folds", "--repeats", "--top"):
            pytest.fail(f"{name} {opt}: a count must be spelled --n-<things>")


def _imports_settings(path: Path) -> list[str]:
    """The lines of ``path`` that import ``otbio._settings`` (any spelling) or name its state."""
    import ast

    tree = ast.parse(path.read_text(), filename=str(path))
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            if any(a.name == "otbio._settings" for a in node.names):
                hits.append(f"{path}:{node.lineno}")
        elif isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if mod == "otbio._settings" or node.level and mod == "_settings":
                hits.append(f"{path}:{node.lineno}")
            elif mod == "otbio" and any(a.name == "_settings" for a in node.names):
                hits.append(f"{path}:{node.lineno}")
        elif isinstance(node, ast.Constant) and node.value == "otbio._settings":
            hits.append(f"{path}:{node.lineno}")  # importlib.import_module("otbio._settings")
    return hits


def test_library_never_reads_the_cli_settings():
    """Only the command line (otbio/cli) may import otbio._settings: library code takes
    seed, jobs, progress and device as parameters (docs/conventions.md)."""
    pkg = Path(__file__).resolve().parents[1] / "otbio"
    allowed = {pkg / "_settings.py"}
    files = [p for p in pkg.rglob("*.py") if "cli" not in p.relative_to(pkg).parts[:1]]
    assert len(files) > 20  # the walk found the package
    bad = [h for p in files if p not in allowed for h in _imports_settings(p)]
    assert not bad, f"library modules import otbio._settings: {bad}"
    # the check itself sees the CLI's imports
    assert _imports_settings(pkg / "cli" / "__init__.py")


def test_one_meaning_per_name():
    """A name has one meaning across commands: each option, and each Python name, stands in one
    row of the table (one idea), however many commands share it."""
    rows: dict[str, list[str]] = {}
    py_rows: dict[str, list[str]] = {}
    for option, _cmds, name, _funcs, idea in _options_table():
        rows.setdefault(option, []).append(idea)
        if name is not None:
            py_rows.setdefault(name, []).append(idea)
    twice = {o: ideas for o, ideas in rows.items() if len(ideas) > 1}
    assert not twice, f"options with two meanings: {twice}"
    twice = {n: ideas for n, ideas in py_rows.items() if len(ideas) > 1 and n != "mode"}
    assert not twice, f"Python names with two meanings: {twice}"
    # one idea per row: 'weights column / mixing weights' hid two meanings behind one name
    joined = [idea for *_, idea in _options_table() if " / " in idea]
    assert not joined, f"rows that join two ideas: {joined}"
