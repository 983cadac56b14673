"""The stages refactor of classify (issue 24): the shared docstring text is filled in."""

from __future__ import annotations

import pytest

from otbio.lot._classify import classify


@pytest.mark.skipif(classify.__doc__ is None, reason="docstrings stripped (python -OO)")
def test_classify_docstring_is_filled():
    doc = classify.__doc__
    assert "{parameters}" not in doc and "{returns}" not in doc
    assert "n_permutations, permutation_repeats" in doc
    assert ":class:`ClassifyResult` with ``metrics``" in doc
    assert "\\sqrt{r_k}" in doc  # the LaTeX braces survive the fill
