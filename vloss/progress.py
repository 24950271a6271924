"""One clean progress line per stage (a terminal redraws it in place; a log gets a line every ``every_s``).

Used by the library's command line (``python -m vloss predict``) and, through
:mod:`pipelines.common.progress`, by every Ray job's driver.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _fmt_time(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


class ProgressLine:
    """A progress line for one stage.

    Args:
        stage: the stage's name, shown in brackets (``pseudo-masks``, ``train``, ``evaluate``).
        total: units of work (None: unknown, no bar or ETA).
        unit: what a unit is (``img``, ``step``).
        stream: where to draw (default stdout).
        every_s: on a non-terminal stream, the least seconds between printed lines.
    """

    WIDTH = 24

    def __init__(self, stage: str, total: int | None, unit: str = "it", stream: TextIO | None = None,
                 every_s: float = 30.0) -> None:
        self.stage, self.total, self.unit = stage, total, unit
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every_s = every_s
        self.done = 0
        self.postfix = ""
        self.t0 = time.perf_counter()
        self._last_print = time.perf_counter()  # a log gets the final line, and one per every_s meanwhile
        self._closed = False
        if self.tty:
            self._draw()

    def _line(self) -> str:
        elapsed = time.perf_counter() - self.t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if self.total:
            frac = min(1.0, self.done / self.total)
            filled = int(round(frac * self.WIDTH))
            bar = "#" * filled + "." * (self.WIDTH - filled)
            eta = (self.total - self.done) / rate if rate > 0 else 0.0
            head = f"[{self.stage}] {bar} {self.done}/{self.total} {self.unit} {100 * frac:3.0f}%"
            tail = f"{_fmt_time(elapsed)} elapsed, {_fmt_time(eta)} left" if self.done < self.total \
                else f"{_fmt_time(elapsed)}"
        else:
            head, tail = f"[{self.stage}] {self.done} {self.unit}", _fmt_time(elapsed)
        return f"{head}  {rate:.1f} {self.unit}/s  {tail}" + (f"  {self.postfix}" if self.postfix else "")

    def _draw(self, force: bool = False) -> None:
        now = time.perf_counter()
        if self.tty:
            self.stream.write("\r\033[K" + self._line())
            self.stream.flush()
        elif force or now - self._last_print >= self.every_s:
            self.stream.write(self._line() + "\n")
            self.stream.flush()
            self._last_print = now

    def update(self, n: int = 1, postfix: str | None = None) -> None:
        """Add ``n`` units of work done (and replace the trailing text)."""
        self.set(self.done + n, postfix)

    def set(self, done: int, postfix: str | None = None) -> None:
        """Set the units done (and replace the trailing text)."""
        self.done = done
        if postfix is not None:
            self.postfix = postfix
        self._draw()

    def message(self, text: str) -> None:
        """Print a line above the progress line (metrics, warnings) without breaking it."""
        if self.tty:
            self.stream.write("\r\033[K" + text + "\n")
            self._draw()
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self, postfix: str | None = None) -> None:
        """Draw the final state and end the line."""
        if self._closed:
            return
        self._closed = True
        if postfix is not None:
            self.postfix = postfix
        if self.tty:
            self.stream.write("\r\033[K" + self._line() + "\n")
            self.stream.flush()
        else:
            self._draw(force=True)
