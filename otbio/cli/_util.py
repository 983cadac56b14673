"""Shared option helpers for the command modules."""

from __future__ import annotations

import warnings

import click

from otbio._errors import ConvergenceWarning, InputError, OtbioError

__all__ = ["check_epsilon", "handle_convergence", "on_nonconvergence_option"]

on_nonconvergence_option = click.option(
    "--on-nonconvergence",
    type=click.Choice(["warn", "error"]),
    default="warn",
    show_default=True,
    help="What a solver that stops at --max-iter does: warn and write the result, or fail with exit 1.",
)


def check_epsilon(epsilon: float) -> None:
    """Raise InputError unless epsilon is a positive finite number."""
    if not epsilon > 0 or epsilon == float("inf"):
        msg = f"--epsilon must be positive, got {epsilon}"
        raise InputError(msg)


def handle_convergence(converged: bool, what: str, policy: str) -> None:
    """Apply the --on-nonconvergence policy to one result."""
    if converged:
        return
    msg = f"{what} did not converge; raise --max-iter, loosen --tol or raise --epsilon"
    if policy == "error":
        raise OtbioError(msg)
    warnings.warn(msg, ConvergenceWarning, stacklevel=2)
