"""The progress line: one line, rewritten in place on a terminal (a plain
line per step elsewhere), with what runs now and an estimate of the rest."""
from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    def __init__(self, total_steps: int, estimate_s: float, stream: TextIO = sys.stderr) -> None:
        self.total = max(total_steps, 1)
        self.done = 0
        self.estimate = estimate_s
        self.start = time.monotonic()
        self.stream = stream
        self.tty = stream.isatty()
        self._shown = False

    def eta(self) -> float:
        spent = time.monotonic() - self.start
        if self.done == 0:
            return self.estimate
        return spent / self.done * (self.total - self.done)

    def step(self, what: str) -> None:
        """Shows what starts now (the step counts as done on the next call)."""
        line = f"[{self.done + 1}/{self.total}] {what} · {_clock(time.monotonic() - self.start)} spent, " \
               f"~{_clock(self.eta())} left"
        if self.tty:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            self.stream.write("\r\x1b[K" + line[:width])
            self._shown = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def advance(self) -> None:
        self.done += 1

    def say(self, message: str) -> None:
        """A line that stays (a result, a skip), printed above the progress line."""
        if self.tty and self._shown:
            self.stream.write("\r\x1b[K")
            self._shown = False
        self.stream.write(message + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty and self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
        self._shown = False
