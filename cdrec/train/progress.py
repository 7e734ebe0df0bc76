"""Progress output on stderr (``train.progress``): live bars on a terminal, plain lines elsewhere.

A log file or pipe gets no carriage-return bars (they pile up: 203 KB for one UCLR run), only one
line per finished epoch, round or job; a terminal gets the tqdm bars.
"""

from __future__ import annotations

import sys
from typing import Iterable, TypeVar

T = TypeVar("T")


def on_terminal() -> bool:
    """Whether stderr is an interactive terminal (a log file or pipe is not)."""
    return sys.stderr.isatty()


def bar(iterable: Iterable[T], *, total: int | None, desc: str, enabled: bool) -> Iterable[T]:
    """A transient tqdm bar over ``iterable`` on a terminal; ``iterable`` itself elsewhere."""
    if not (enabled and on_terminal()):
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False)


def line(text: str, *, enabled: bool) -> None:
    """One plain line on stderr where there is no bar (not a terminal)."""
    if enabled and not on_terminal():
        print(text, file=sys.stderr, flush=True)


class StepProgress:
    """Steps of a known total (rounds, jobs): a bar on a terminal, one ``desc i/total note`` line per
    step elsewhere."""

    def __init__(self, total: int, desc: str, *, enabled: bool = True) -> None:
        self.total, self.desc, self.enabled, self.done = total, desc, enabled, 0
        self._bar = None
        if enabled and on_terminal():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc)

    def step(self, note: str = "") -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.set_postfix_str(note, refresh=False)
            self._bar.update(1)
        else:
            line(f"{self.desc} {self.done}/{self.total}" + (f": {note}" if note else ""), enabled=self.enabled)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
