"""Progress of a long loop: a live bar on a terminal, plain timed lines in a log.

On a terminal the line is redrawn in place (at most ``redraw`` times a second); when the
stream is a file or a pipe (``make demo > log``, CI) a complete line is written at the first
step, then whenever ``every`` seconds of work have passed since the last line (default 10 s),
every ``every_steps`` steps if given, and at the last step, so a log never goes quiet for
minutes and never fills with carriage returns.

Reading a loss from the GPU is a host sync, so the loop asks :meth:`Progress.due` first and
reads the value only for the steps that will be shown::

    progress = Progress("simclr", total=steps, unit="img")
    for step in range(1, steps + 1):
        loss = train_step()
        if progress.due(step):
            progress.update(step, items=step * batch_size, loss=loss.item())

Each line: ``label step/total |bar| name value ... | 812 img/s | 12.3s, eta 4.1s``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from augplug.checks import check_float, check_int

__all__ = ["Progress"]


class Progress:
    """Report ``step`` of ``total`` to ``stream`` (default ``sys.stderr``).

    Args:
        label: what is running, right-aligned in ``label_width`` characters.
        total: the last step number (steps count from 1).
        stream: where lines go; a terminal (``isatty()``) gets the live bar.
        unit: the throughput unit for ``items`` (``"img"`` gives ``img/s``).
        every: seconds of work between two lines when not on a terminal (default 10).
        every_steps: also a line every this many steps when not on a terminal (default: none).
        redraw: the terminal bar's redraws per second at most (default 10).
        clock: a monotonic clock in seconds (``time.perf_counter``); tests pass a fake one.
        width: characters of the bar.
        label_width: the label's column width, so several runs line up.
    """

    def __init__(
        self,
        label: str,
        total: int,
        stream: TextIO | None = None,
        *,
        unit: str = "it",
        every: float = 10.0,
        every_steps: int | None = None,
        redraw: float = 10.0,
        clock: Callable[[], float] = time.perf_counter,
        width: int = 24,
        label_width: int = 22,
    ):
        self.label = label
        self.total = check_int(total, "total", minimum=1)
        self.stream = stream if stream is not None else sys.stderr
        self.unit = unit
        self.every = check_float(every, "every", low=0.0)
        self.every_steps = (
            None if every_steps is None else check_int(every_steps, "every_steps", minimum=1)
        )
        self.min_redraw = 1.0 / check_float(redraw, "redraw", low=0.0, low_open=True)
        self.clock = clock
        self.width = check_int(width, "width", minimum=1)
        self.label_width = label_width
        isatty = getattr(self.stream, "isatty", None)
        self.interactive = bool(isatty and isatty())
        self.start = clock()
        self._last_line: float | None = None  # clock time of the last line written
        self._last_step = 0

    @property
    def elapsed(self) -> float:
        """Seconds since the progress was created."""
        return self.clock() - self.start

    def due(self, step: int) -> bool:
        """Whether :meth:`update` at ``step`` would write: read costly values only then."""
        if step >= self.total or self._last_line is None:
            return True
        since = self.clock() - self._last_line
        if self.interactive:
            return since >= self.min_redraw
        if self.every_steps is not None and step - self._last_step >= self.every_steps:
            return True
        return since >= self.every

    def update(self, step: int, *, items: int | None = None, **values: float) -> None:
        """Write the line for ``step``: the bar, each ``name value``, throughput, time and eta.

        ``items`` is the number of items (images, samples) processed so far; the line shows
        their rate. Call it when :meth:`due` says so (it writes whenever called).
        """
        now = self.clock()
        elapsed = max(now - self.start, 1e-9)
        done = min(self.width, int(self.width * step / self.total))
        head = (
            f"{self.label:>{self.label_width}} {step:>{len(str(self.total))}}/{self.total} "
            f"|{'#' * done}{'.' * (self.width - done)}|"
        )
        parts = [f"{name} {value:.4g}" for name, value in values.items()]
        if items is not None:
            parts.append(f"{items / elapsed:.0f} {self.unit}/s")
        timing = f"{elapsed:.1f}s"
        if 0 < step < self.total:
            timing += f", eta {elapsed * (self.total - step) / step:.1f}s"
        parts.append(timing)
        text = head + " " + " | ".join(parts)
        if self.interactive:
            # Pad so a shorter line fully covers the previous one.
            self.stream.write("\r" + text.ljust(79) + ("\n" if step >= self.total else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self._last_line, self._last_step = now, step
