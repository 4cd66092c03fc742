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

STORAGE_HELP = "SQLAlchemy URL (default: SQLite beside the study's outputs; postgresql://... for many machines)."

# messages go to stderr (stdout stays clean for --json), never wrapped mid-line
err_console = Console(stderr=True, soft_wrap=True)
# tables for people go to stdout, wide enough for per-block tables when piped (rich assumes 80 columns off a terminal)
out_console = Console(width=None if sys.stdout.isatty() else 140)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The one rule at the command line's boundary: a problem with the user's files, paths, data, ports or
    settings (:class:`ArchlabError`, and the operating system's OSError: a file that cannot be read or written,
    a full disk, a port in use) is one line on stderr and exit code 2, no traceback. Anything else is a bug in
    archlab and keeps its traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ArchlabError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
        except UnicodeDecodeError as exc:
            print(f"error: a file is not UTF-8 text where text was expected ({exc.reason} at byte {exc.start})", file=sys.stderr)
            raise typer.Exit(2) from None
        except OSError as exc:
            where = exc.filename or ""
            print(f"error: {where + ': ' if where else ''}{exc.strerror or exc}", file=sys.stderr)
            raise typer.Exit(2) from None

    return wrapper


def finite(value: float | None) -> float | None:
    """A float flag's check (``typer.Option(..., callback=finite)``): inf and nan are refused as the flag's error."""
    import math

    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


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


def _one_line_failures(record: logging.LogRecord) -> bool:
    """A failed trial is one line (``study run`` lists every distinct error at the end), not its parameters and a
    traceback; Optuna's second line about it ("failed with value None") is dropped."""
    message = record.getMessage()
    if " failed with value None" in message:
        return False
    if record.exc_info and message.startswith("Trial "):
        exc = record.exc_info[1]
        record.msg = f"{message.split(' failed')[0].lower()} failed: {type(exc).__name__}: {exc}".splitlines()[0]
        record.args, record.exc_info, record.exc_text = (), None, None
    return True


def quiet_optuna() -> None:
    """For the command line only: Optuna's per-trial INFO lines and the "experimental" warnings
    of heartbeats (which is what make kill -9 safe) are noise there. The library changes nothing."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for handler in logging.getLogger("optuna").handlers:  # a logger's own filters miss its children's records
        handler.addFilter(_one_line_failures)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    logging.getLogger("fvcore").setLevel(logging.ERROR)
