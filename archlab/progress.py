"""The one progress bar: rich, on stderr (stdout stays clean for ``--json``), off when not wanted."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def progress_bar(enabled: bool = True) -> Progress:
    """A bar for tasks added by the caller (``bar.add_task(label, total=..., current="")``)."""
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), TextColumn("{task.fields[current]}"), disable=not enabled, transient=False,
                    console=Console(stderr=True))


@contextlib.contextmanager
def step_bar(label: str, total: int, completed: int = 0, *, enabled: bool = True) -> Iterator[Callable[[int, str], None]]:
    """A training loop's bar: yields ``advance(step, loss_text)``."""
    with progress_bar(enabled) as bar:
        task = bar.add_task(label, total=total, completed=completed, current="loss -")
        yield lambda step, loss: bar.update(task, completed=step, current=f"loss {loss}")
