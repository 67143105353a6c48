"""Progress for long work, printed to stderr so stdout stays machine-readable."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


class Progress:
    """Numbered steps with elapsed time: ``[2/7] Encoder -> Core ML (fp16) ... 3.1 s``.

    ``quiet=True`` silences the stream (library use, tests); ``on_line``, if given,
    receives every line of progress as text either way.
    """

    def __init__(
        self,
        total: int,
        *,
        stream: TextIO | None = None,
        quiet: bool = False,
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        self.on_line = on_line
        self._line = ""
        self.total = total
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self._started = time.perf_counter()
        self._step_started = self._started
        self._open = False

    def start(self, label: str) -> None:
        """Announce the next step (first raising a Ctrl-C or SIGTERM that a library swallowed
        during the last one)."""
        counter = self._next()
        self._step_started = time.perf_counter()
        self._write(f"[{counter}] {label} ...")
        self._open = True

    def advance(self, label: str) -> None:
        """Count a step that is already done (work finishing in any order, as in a pool of
        workers): ``[3/10] label``, with no time of its own."""
        self._write(f"[{self._next()}] {label}\n")

    def _next(self) -> str:
        """Close the last step and count the next one (first raising a Ctrl-C or SIGTERM
        that a library swallowed during the last one): its ``3/10`` counter."""
        from speechport import interrupts

        interrupts.check()
        self._finish_open_line()
        self.done += 1
        return f"{self.done}/{self.total}" if self.total >= self.done else f"{self.done}"

    def note(self, text: str) -> None:
        """A line of detail under the current step."""
        self._finish_open_line()
        self._write(f"      {text}\n")

    def finish(self, summary: str | None = None) -> None:
        """Close the last step and print the total time."""
        self._finish_open_line()
        total = time.perf_counter() - self._started
        self._write(f"{summary or 'done'} in {total:.1f} s\n")

    def _finish_open_line(self) -> None:
        if self._open:
            self._write(f" {time.perf_counter() - self._step_started:.1f} s\n")
            self._open = False

    def _write(self, text: str) -> None:
        if not self.quiet:
            self.stream.write(text)
            self.stream.flush()
        if self.on_line is not None:
            self._line += text
            *done, self._line = self._line.split("\n")
            for line in done:
                self.on_line(line)
