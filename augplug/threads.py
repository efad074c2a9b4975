"""CPU threads for small CPU runs (the demo, examples): one per process unless asked.

PyTorch's CPU kernels run on an OpenMP pool, and OpenMP's default wait policy makes an
idle pool thread spin for a while before it sleeps. When another process holds a core
(a shared machine, a test run next to the demo), the spinning thread and the thread doing
the work fight over it: on the shared 2-core development VM a demo-sized training step ran
2.6x slower with 2 threads than with 1, 2.8x with one more CPU-bound process running
(benchmarks/bench_threads.py, results in benchmarks/results/threads.md).
``OMP_WAIT_POLICY=PASSIVE`` (threads sleep at once) removed that loss in both runs, but
OpenMP reads it only when the runtime starts, i.e. before ``import torch``, so a library
cannot set it for its caller.

Hence the default here is **one thread**, which also keeps results reproducible: the
thread count changes the order of floating-point sums, and so the trained numbers, and a
default read from the machine's load would change them from run to run. Ask for more
with ``--threads N`` or ``AUGPLUG_THREADS=N`` (or ``OMP_NUM_THREADS=N``), and start the
process with ``OMP_WAIT_POLICY=PASSIVE`` on a shared machine::

    OMP_WAIT_POLICY=PASSIVE augplug demo --threads 2
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch

from augplug.checks import check_int

__all__ = ["configure_threads", "cpu_conditions", "default_threads", "thread_advice"]

#: Environment variables read by :func:`default_threads`, first match wins.
THREAD_VARIABLES = ("AUGPLUG_THREADS", "OMP_NUM_THREADS")


def default_threads(environ: Mapping[str, str] | None = None) -> int:
    """The thread count to use when none is given: ``AUGPLUG_THREADS``, else ``OMP_NUM_THREADS``, else 1.

    A variable that is set but not a positive integer is an error naming it (a typo
    should not silently fall back to 1).

    Examples:
        >>> default_threads({})
        1
        >>> default_threads({"OMP_NUM_THREADS": "2"})
        2
    """
    environ = os.environ if environ is None else environ
    for name in THREAD_VARIABLES:
        text = environ.get(name, "").strip()
        if not text:
            continue
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{name}: expected a positive integer, got {text!r}") from None
        return check_int(value, name, minimum=1)
    return 1


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows: no affinity masks
        return os.cpu_count() or 1


def cpu_conditions() -> dict[str, float | int | str | None]:
    """What CPU timings depend on, to print and record beside them.

    ``cores`` (usable by this process), ``load_1min`` (the 1-minute load average, ``None``
    where the OS has none), ``threads`` (torch's intra-op threads now) and
    ``omp_wait_policy`` (as the environment sets it; ``"default"`` when unset).
    """
    try:
        load: float | None = round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        load = None
    return {
        "cores": _cores(),
        "load_1min": load,
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
    }


def thread_advice(threads: int, conditions: Mapping[str, object] | None = None) -> str | None:
    """A one-line warning when ``threads`` is likely to run slowly here, else ``None``.

    Two cases: more threads than cores this process may use, and more than one thread
    under OpenMP's spinning default wait policy while other processes keep the cores
    busy (load average at or above the cores left to this run).
    """
    threads = check_int(threads, "threads", minimum=1)
    conditions = cpu_conditions() if conditions is None else conditions
    cores = int(conditions["cores"])
    if threads > cores:
        return f"{threads} threads on {cores} usable cores: threads will wait for each other"
    load = conditions.get("load_1min")
    policy = str(conditions.get("omp_wait_policy", "default")).upper()
    if threads > 1 and policy != "PASSIVE" and load is not None and load >= cores - threads + 1:
        return (
            f"{threads} threads while the load average is {load} on {cores} cores: spinning "
            "OpenMP threads can make this several times slower than 1 thread; use "
            "--threads 1, or start with OMP_WAIT_POLICY=PASSIVE"
        )
    return None


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op CPU threads to ``threads`` (default :func:`default_threads`); return it.

    Call it once at the start of a run; :func:`thread_advice` says whether the choice is
    likely to be slow on this machine right now.
    """
    chosen = default_threads() if threads is None else check_int(threads, "threads", minimum=1)
    torch.set_num_threads(chosen)
    return chosen
