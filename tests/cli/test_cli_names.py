"""Deprecated option spellings, global options after the command, library names -> options."""

from __future__ import annotations

import pandas as pd
import pytest
from click.testing import CliRunner

from otbio._settings import settings
from otbio.cli import cli
from otbio.cli._util import hoist_global_options, translate_names

P = "test_data/protein"


@pytest.fixture(autouse=True)
def _chdir_root(monkeypatch, test_data):
    monkeypatch.chdir(test_data.parent)


def run(args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_old_spelling_warns_once_and_acts_like_the_new_one(tmp_path):
    new, old = tmp_path / "new.tsv", tmp_path / "old.tsv"
    q = f"{P}/adk_open.pdb::122-159"
    r = run(["--quiet", "align", q, f"{P}/adk_closed.pdb", "--save-scores", new])
    assert r.exit_code == 0, r.output
    assert "deprecated" not in r.stderr
    r = run(["--quiet", "align", q, f"{P}/adk_closed.pdb", "--scores", old, "--model", 1])
    assert r.exit_code == 0, r.output
    warn = [ln for ln in r.stderr.splitlines() if "deprecated" in ln]
    assert len(warn) == 2, r.stderr
    assert "'align --scores'" in warn[0] and "--save-scores" in warn[0]
    assert "--pdb-model" in warn[1]
    a, b = pd.read_csv(new, sep="\t"), pd.read_csv(old, sep="\t")
    pd.testing.assert_frame_equal(a, b)


def test_old_spelling_with_equals_and_hidden_from_help():
    r = run(["generate", "--help"])
    assert r.exit_code == 0
    assert "--n-samples" in r.output and "--save-check" in r.output
    assert "--check " not in r.output and "--n " not in r.output
    # an unknown file fails after the alias was rewritten (no 'No such option')
    r = run(["generate", "missing.h5ad", "--n=3", "--check=x.tsv", "-o", "out.h5ad"])
    assert r.exit_code == 2
    assert "No such option" not in r.stderr
    assert r.stderr.count("deprecated") == 2


def test_global_options_after_the_command(tmp_path, monkeypatch):
    monkeypatch.setattr(settings, "seed", 0)
    out = tmp_path / "s.tsv"
    q = f"{P}/adk_open.pdb::122-159"
    args = ["align", q, f"{P}/adk_closed.pdb", "--save-scores", out]
    r = run([*args, "--seed", 7, "--jobs", 1, "--quiet", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert settings.seed == 7 and settings.jobs == 1 and settings.quiet
    assert out.exists()


def test_hoisting_leaves_command_options_and_double_dash_alone():
    cmds = {"register": None, "align": None}
    assert hoist_global_options(["register", "a", "b", "--seed", "3", "-vv"], cmds) == [
        "--seed",
        "3",
        "-vv",
        "register",
        "a",
        "b",
    ]
    assert hoist_global_options(["-v", "align", "q", "--seed=2", "--", "--quiet"], cmds) == [
        "-v",
        "--seed=2",
        "align",
        "q",
        "--",
        "--quiet",
    ]
    assert hoist_global_options(["--jobs", "2", "align", "x"], cmds) == [
        "--jobs",
        "2",
        "align",
        "x",
    ]


def test_library_names_become_options():
    names = {"n_splits": "--n-splits", "epsilon": "--epsilon", "cells": "--cells"}
    assert (
        translate_names("n_splits must be >= 2, got 1", names) == "--n-splits must be >= 2, got 1"
    )
    assert translate_names("epsilon must be positive", names) == "--epsilon must be positive"
    # ordinary words and quoted values stay as they are
    msg = "the cells of sample 'n_splits' have no epsilon range"
    assert translate_names(msg, names) == msg


def test_cli_error_shows_the_option_name(tmp_path):
    # the library raises "epsilon must be positive"; the command line says --epsilon
    r = run(["transport", "a.npy", "b.npy", "--epsilon", "-1"])
    assert r.exit_code == 2
    assert r.stderr.strip().splitlines()[-1] == "Error: --epsilon must be positive, got -1.0"
