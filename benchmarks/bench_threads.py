"""CPU threads on a shared machine: a demo-sized training step at 1 and 2 intra-op threads.

    python benchmarks/bench_threads.py [--threads 1 2] [--repeats 5] [--steps 10] [--compete 1]

Each measurement is a fresh subprocess (``OMP_WAIT_POLICY`` is read once, when the OpenMP
runtime starts, so it must be in the environment before ``import torch``) that times
``--steps`` SimCLR-shaped training steps: the demo's encoder (four 3x3 conv-BN-ReLU stages,
16-32-64-64) and projector, forward + backward + Adam on two views of ``--batch`` 3x32x32
images. Configurations (thread count x wait policy) run round-robin, ``--repeats`` rounds,
and the table gives the median images per second of each and its ratio to 1 thread with
the default policy. ``--compete N`` starts N CPU-bound processes (a pure-Python loop each)
for the whole run, the way another engineer's job or a test run shares the cores.

The load average (``os.getloadavg``) is printed at the start and end; the figures mean
something only next to it. Results: benchmarks/results/threads.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

# The child: import torch only after the environment is set, time the steps, print JSON.
_CHILD = r"""
import json, sys, time
import torch
from torch import nn

threads, steps, batch = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
torch.manual_seed(0)
widths = [3, 16, 32, 64, 64]
layers = []
for i in range(4):
    layers += [nn.Conv2d(widths[i], widths[i + 1], 3, stride=1 if i == 0 else 2, padding=1, bias=False),
               nn.BatchNorm2d(widths[i + 1]), nn.ReLU(inplace=True)]
model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                      nn.Linear(64, 64), nn.ReLU(inplace=True), nn.Linear(64, 64))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
x = torch.rand(2 * batch, 3, 32, 32)

def step():
    z = nn.functional.normalize(model(x), dim=1)
    logits = z[:batch] @ z[batch:].T / 0.2
    loss = nn.functional.cross_entropy(logits, torch.arange(batch))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()

step(); step()  # warm-up: allocator, oneDNN primitives
start = time.perf_counter()
for _ in range(steps):
    step()
seconds = time.perf_counter() - start
print(json.dumps({"images_per_second": steps * 2 * batch / seconds}))
"""

_BUSY = "while True:\n    pass\n"


def _run_child(threads: int, policy: str | None, steps: int, batch: int) -> float:
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    env.pop("OMP_WAIT_POLICY", None)
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(threads), str(steps), str(batch)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["images_per_second"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--policies", nargs="+", default=["default", "PASSIVE"],
        help="OMP_WAIT_POLICY values; 'default' leaves it unset",
    )  # fmt: skip
    parser.add_argument("--repeats", type=int, default=5, help="round-robin rounds (default 5)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per run (default 10)")
    parser.add_argument("--batch", type=int, default=128, help="images per view (default 128)")
    parser.add_argument(
        "--compete", type=int, default=0, help="CPU-bound processes running meanwhile (default 0)"
    )
    args = parser.parse_args(argv)

    import torch  # only for the version line; the children import their own

    configs = [(t, None if p == "default" else p) for p in args.policies for t in args.threads]
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M')} | python {platform.python_version()} | torch {torch.__version__}"
        f" | cores {os.cpu_count()} (affinity {len(os.sched_getaffinity(0))}) | competing processes {args.compete}"
    )
    print(f"# load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    busy = [subprocess.Popen([sys.executable, "-c", _BUSY]) for _ in range(args.compete)]
    try:
        if busy:
            time.sleep(2.0)  # let the scheduler see them before the first timing
        samples: dict[tuple[int, str | None], list[float]] = {c: [] for c in configs}
        for _ in range(args.repeats):
            for config in configs:
                samples[config].append(_run_child(*config, args.steps, args.batch))
    finally:
        for process in busy:
            process.kill()
            process.wait()
    print(f"# load average at end:   {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    base = statistics.median(samples[configs[0]])
    print("| threads | OMP_WAIT_POLICY | img/s (median) | min..max | vs first row |")
    print("|---|---|---|---|---|")
    for (threads, policy), values in samples.items():
        median = statistics.median(values)
        print(
            f"| {threads} | {policy or 'default'} | {median:.0f} | {min(values):.0f}..{max(values):.0f}"
            f" | {median / base:.2f}x |"
        )


if __name__ == "__main__":
    main()
