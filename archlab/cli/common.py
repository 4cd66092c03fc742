"""What every command shares: one-line user errors with exit code 2, consoles, Optuna's noise."""

from __future__ import annotations

import functools
import logging
import sys
import warnings
from typing import Any, Callable

import typer
from rich.console import Console

from archlab.errors import ArchlabError

# messages go to stderr (stdout stays clean for --json), never wrapped mid-line
err_console = Console(stderr=True, soft_wrap=True)
# tables for people go to stdout, wide enough for per-block tables when piped (rich assumes 80 columns off a terminal)
out_console = Console(width=None if sys.stdout.isatty() else 140)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn :class:`ArchlabError` into one line on stderr and exit code 2, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ArchlabError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None

    return wrapper


def warnings_as_lines() -> None:
    """For the command line only: archlab's own warnings as one ``warning: ...`` line on stderr."""
    from archlab.cost.fingerprint import DeviceMismatchWarning

    default = warnings.showwarning

    def show(message: Any, category: type, *args: Any, **kwargs: Any) -> None:
        if issubclass(category, DeviceMismatchWarning):
            print(f"warning: {message}", file=sys.stderr)
        else:
            default(message, category, *args, **kwargs)

    warnings.showwarning = show


def quiet_optuna() -> None:
    """For the command line only: Optuna's per-trial INFO lines and the "experimental" warnings
    of heartbeats (which is what make kill -9 safe) are noise there. The library changes nothing."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    logging.getLogger("fvcore").setLevel(logging.ERROR)
