"""Progress of long stages (retrieval, featurisation, prompts, generation, metrics).

On a terminal (stderr is a TTY) a stage shows a tqdm bar with counts, rate and ETA; in logs (stderr
redirected) it writes one line when it ends, `<stage>: <n>/<total> <unit> in <s> s (<rate> <unit>/s)`,
instead of a bar redraw per update. Stages shorter than `MIN_SECONDS` stay silent (a bench calling a
featuriser per step would otherwise log a line per step). A leaf module: callers on several processes
pass `quiet=True` on all but one.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

import tqdm

T = TypeVar("T")
MIN_SECONDS = 0.5  # shorter stages show no bar and write no line


def on_terminal() -> bool:
    """True when stderr is an interactive terminal (bars), False in logs and pipes (one line per stage)."""
    return sys.stderr.isatty()


class Stage:
    """One long stage: `update(n)` as work is done, `close()` (or the `with` block's end) when it ends."""

    def __init__(self, desc: str, total: int | None = None, unit: str = "it", quiet: bool = False):
        self.desc, self.total, self.unit, self.quiet = desc, total, unit, quiet
        self.done, self.start, self.postfix = 0, time.perf_counter(), ""
        self._bar = (tqdm.tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, file=sys.stderr,
                               delay=MIN_SECONDS)
                     if on_terminal() and not quiet else None)
        self._closed = False

    def update(self, n: int = 1) -> None:
        """Marks `n` more items done."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)

    def set_postfix(self, **values) -> None:
        """Shows `key=value` pairs beside the bar (on a terminal) or at the end of the log line."""
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())
        if self._bar is not None:
            self._bar.set_postfix(values)

    def line(self) -> str:
        """The log line of the stage so far."""
        seconds = time.perf_counter() - self.start
        count = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
        rate = self.done / seconds if seconds > 0 else 0.0
        tail = f", {self.postfix}" if self.postfix else ""
        return f"{self.desc}: {count} {self.unit} in {seconds:.1f} s ({rate:.1f} {self.unit}/s{tail})"

    def close(self) -> None:
        """Ends the bar, or writes the stage's one log line."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._bar.close()
        elif not self.quiet and time.perf_counter() - self.start >= MIN_SECONDS:
            print(self.line(), file=sys.stderr, flush=True)

    def __enter__(self) -> Stage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def track(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it", quiet: bool = False
          ) -> Iterator[T]:
    """Yields `items`, counting each one as a `Stage` (`total` defaults to `len(items)` when it has one)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Stage(desc, total, unit, quiet) as stage:
        for item in items:
            yield item
            stage.update()
