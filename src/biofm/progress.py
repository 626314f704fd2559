"""Progress bars for biofm's long steps outside training: embedding passes, probes, fine-tuning folds,
variant scoring and dataset builds (training has its own bar with loss and tokens/s, train/loop.py).

One rich display on stderr for the whole process: a step started while another runs (the folds of a
fine-tuning inside a task's evaluation) adds a line under it instead of opening a second display, which
rich does not allow. Bars are drawn only on a terminal (never into logs or pipes, whose readers get
biofm's result lines alone) and never with BIOFM_QUIET=1; BIOFM_PROGRESS=always draws them anyway (for
a notebook's stderr), BIOFM_PROGRESS=never never.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_display: Any = None  # the rich Progress while any step runs
_depth = 0


def enabled() -> bool:
    mode = os.environ.get("BIOFM_PROGRESS", "auto").lower()
    if mode == "never" or (os.environ.get("BIOFM_QUIET") == "1" and mode != "always"):
        return False
    return mode == "always" or sys.stderr.isatty()


def _start() -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True, force_terminal=os.environ.get("BIOFM_PROGRESS", "").lower() == "always")
    bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[unit]}"), TimeElapsedColumn(), TextColumn("ETA"),
                   TimeRemainingColumn(), console=console, transient=True)
    bar.start()
    return bar


@contextmanager
def progress(description: str, total: int | None, unit: str = "") -> Iterator[Callable[[int], None]]:
    """A bar for one step of `total` items (None: a spinner); yields `advance(n)`. The line disappears
    when the step ends, so finished steps leave only biofm's own result lines."""
    global _display, _depth
    if not enabled():
        yield lambda n=1: None
        return
    if _display is None:
        _display = _start()
    _depth += 1
    task = _display.add_task(description, total=total, unit=unit)
    display = _display
    try:
        yield lambda n=1: display.advance(task, n)
    finally:
        display.remove_task(task)
        _depth -= 1
        if _depth == 0:
            display.stop()
            _display = None


def tracked(items: Any, description: str, total: int | None = None, unit: str = "") -> Iterator[Any]:
    """`items` one by one, advancing a bar per item."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    with progress(description, total, unit) as advance:
        for item in items:
            yield item
            advance(1)


__all__ = ["enabled", "progress", "tracked"]
