"""One progress interface for long work: the data build, traffic runs and sweeps, ground-water and
coupled runs.

A library function takes a ``progress`` argument with two methods and reports through it; the command
decides how that is shown:

    progress.stage("building terrain")   # a new stage of the work (one line in a log)
    progress.advance(3, 92)              # done of total (steps, seconds simulated, runs)

:data:`SILENT` shows nothing (the default of every library function). :func:`console_progress`
shows it on stderr: with rich, a bar under the stage lines when stderr is a terminal; otherwise
(CI logs, pipes) one plain line per stage and a line at every tenth of the way, each starting with
``"  … "``, so logs stay readable and tools can tell progress from output.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TextIO, runtime_checkable

PREFIX = "  … "


@runtime_checkable
class Progress(Protocol):
    """What long work reports to: the stage it is in and how far it has come."""

    def stage(self, text: str) -> None:
        """A new stage of the work begins (e.g. 'building terrain', 'stepping')."""

    def advance(self, done: float, total: float) -> None:
        """`done` of `total` units (steps, simulated seconds, runs) are finished."""


class _Silent:
    """Shows nothing."""

    def stage(self, text: str) -> None:
        """Ignored."""

    def advance(self, done: float, total: float) -> None:
        """Ignored."""


SILENT: Progress = _Silent()


class _Stages:
    """A plain one-argument callable (`lambda message: ...`) taken as the stages of a Progress."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self._say = say

    def stage(self, text: str) -> None:
        """Passed to the callable."""
        self._say(text)

    def advance(self, done: float, total: float) -> None:
        """Ignored: the callable only takes stages."""


def as_progress(progress: Progress | Callable[[str], None] | None) -> Progress:
    """`progress` as a :class:`Progress`: None is :data:`SILENT`, a callable of one message
    reports the stages (as callers of the data build pass it)."""
    if progress is None:
        return SILENT
    if isinstance(progress, Progress):
        return progress
    return _Stages(progress)


def _count(x: float) -> str:
    return f"{x:,.0f}"


class _Plain:
    """One line per stage and one at every tenth of the way (for logs, pipes and CI)."""

    def __init__(self, label: str, unit: str, show: Callable[[float], str], out: TextIO) -> None:
        self._head = f"{PREFIX}{label}: " if label else PREFIX
        self._unit, self._show, self._out = unit, show, out
        self._shown: tuple[float, int] | None = None  # (total, tenths) last printed

    def _line(self, text: str) -> None:
        print(self._head + text, file=self._out, flush=True)

    def stage(self, text: str) -> None:
        """Print the stage."""
        self._line(text)

    def advance(self, done: float, total: float) -> None:
        """Print a line when a new tenth of `total` is reached (none at the start)."""
        tenths = 10 if total <= 0 else int(10 * min(done, total) / total)
        shown = self._shown[1] if self._shown is not None and self._shown[0] == total else 0
        if tenths <= shown:
            return  # nothing new (and no line for 0 %)
        self._shown = (total, tenths)
        unit = f" {self._unit}" if self._unit else ""
        self._line(f"{10 * tenths} % ({self._show(done)} of {self._show(total)}{unit})")


class _Bar:
    """A rich bar on stderr, started at the first advance; stages print above it."""

    def __init__(self, label: str, unit: str, show: Callable[[float], str], out: TextIO) -> None:
        from rich.console import Console

        self._label, self._unit, self._show = label, unit, show
        self._console = Console(file=out, highlight=False)
        self._bar: Any = None
        self._task: Any = None
        self._text = ""

    def stage(self, text: str) -> None:
        """Print the stage and show it beside the bar."""
        self._text = text
        self._console.print(f"{PREFIX}{self._label}: {text}" if self._label else PREFIX + text,
                            markup=False)  # fmt: skip
        if self._bar is not None:
            self._bar.update(self._task, description=text)

    def advance(self, done: float, total: float) -> None:
        """Move the bar."""
        if self._bar is None:
            from rich.markup import escape
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn(f"[bold]{escape(self._label)}[/]"),
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                TextColumn("{task.fields[count]}"),
                TimeRemainingColumn(),
                console=self._console,
            )
            self._bar.start()
            self._task = self._bar.add_task(self._text, total=total, count="")
        unit = f" {self._unit}" if self._unit else ""
        count = f"{self._show(done)}/{self._show(total)}{unit}"
        self._bar.update(self._task, completed=done, total=total, count=count)

    def close(self) -> None:
        """Leave the bar as it ended."""
        if self._bar is not None:
            self._bar.stop()


@contextlib.contextmanager
def console_progress(label: str = "", *, unit: str = "", show: Callable[[float], str] = _count,
                     plain: bool | None = None, out: TextIO | None = None) -> Iterator[Progress]:  # fmt: skip
    """Progress shown on stderr (or `out`) while the block runs: a rich bar on a terminal, plain
    lines otherwise (`plain` forces either). `unit` names what is counted ('steps'); `show`
    formats the counts (e.g. simulated seconds as a duration)."""
    stream = out if out is not None else sys.stderr
    if plain is None:
        plain = not (hasattr(stream, "isatty") and stream.isatty())
    if plain:
        yield _Plain(label, unit, show, stream)
        return
    bar = _Bar(label, unit, show, stream)
    try:
        yield bar
    finally:
        bar.close()
