"""augplug.progress: plain timed lines in a log, a live bar on a terminal (fake clock)."""

from __future__ import annotations

import io
import itertools

import pytest

from augplug.progress import Progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(progress: Progress, clock: FakeClock, steps: int, seconds_per_step: float) -> list[int]:
    """Drive a loop the way the demo does; return the steps that were written."""
    shown = []
    for step in range(1, steps + 1):
        clock.now += seconds_per_step
        if progress.due(step):
            progress.update(step, items=step * 10, loss=1.0 / step)
            shown.append(step)
    return shown


def test_log_gets_a_line_at_least_every_ten_seconds_of_work():
    clock, stream = FakeClock(), io.StringIO()
    progress = Progress("simclr", 100, stream, unit="img", clock=clock)
    shown = run(progress, clock, 100, seconds_per_step=3.0)  # 300 s of work
    lines = stream.getvalue().splitlines()
    assert len(lines) == len(shown)
    assert "\r" not in stream.getvalue()
    assert shown[0] == 1 and shown[-1] == 100
    # 3 s per step: a line every 4 steps (12 s >= 10 s), never more than 10 s + one step apart.
    gaps = [b - a for a, b in itertools.pairwise(shown)]
    assert max(gaps) * 3.0 <= 10.0 + 3.0
    assert len(lines) >= 300 / 13


def test_log_stays_quiet_for_fast_loops_and_every_steps_forces_lines():
    clock, stream = FakeClock(), io.StringIO()
    progress = Progress("fast", 1000, stream, clock=clock)
    assert run(progress, clock, 1000, seconds_per_step=0.001) == [1, 1000]

    clock, stream = FakeClock(), io.StringIO()
    progress = Progress("fast", 100, stream, clock=clock, every_steps=25)
    assert run(progress, clock, 100, seconds_per_step=0.001) == [1, 26, 51, 76, 100]


def test_line_content():
    clock, stream = FakeClock(), io.StringIO()
    progress = Progress("viewmaker", 40, stream, unit="img", clock=clock, width=8, label_width=10)
    clock.now += 5.0
    progress.update(10, items=1280, loss=2.5)
    line = stream.getvalue()
    assert line == " viewmaker 10/40 |##......| loss 2.5 | 256 img/s | 5.0s, eta 15.0s\n"
    clock.now += 15.0
    progress.update(40, items=5120, loss=1.25)
    assert stream.getvalue().splitlines()[-1].endswith("| 256 img/s | 20.0s")


def test_terminal_gets_a_redrawn_bar_and_one_final_newline():
    clock, stream = FakeClock(), FakeTerminal()
    progress = Progress("simclr", 50, stream, clock=clock, redraw=10.0)
    shown = run(progress, clock, 50, seconds_per_step=0.04)  # 25 steps/s, 10 redraws/s
    text = stream.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    assert text.count("\r") == len(shown)
    assert 15 <= len(shown) <= 25 and shown[-1] == 50


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"total": 0}, ValueError, "total"),
        ({"total": 2.0}, TypeError, "total"),
        ({"total": 5, "every": -1.0}, ValueError, "every"),
        ({"total": 5, "every_steps": 0}, ValueError, "every_steps"),
        ({"total": 5, "redraw": 0.0}, ValueError, "redraw"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, error, name):
    with pytest.raises(error, match=f"^{name}:"):
        Progress("x", stream=io.StringIO(), **kwargs)
