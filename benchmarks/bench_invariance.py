"""Invariance regulariser: training-step cost, and a small Spirograph reproduction.

``step``: time per training step of an inline CIFAR-stem ResNet-18 with an
inline NT-Xent loss on two views (median after warm-up; CUDA events on GPU,
perf_counter on CPU), in one process on the same inputs:

* InfoNCE alone (the anchor: what the regulariser is added to),
* + ``gradient_invariance`` with the paper's estimator (double backprop, 100 draws), timed
  the way the reference computes it: view 0 is rendered from alpha that require grad and
  the regulariser differentiates the encoding the contrastive loss already made (no second
  encoder pass over view 0); and, for comparison, with view 0 encoded again (what the
  objective does when its alpha do not require grad),
* + ``gradient_invariance`` with the difference estimator (one extra encoder pass).

The goal (issue 5): the difference step at most 1.5x the plain step.

``reproduce``: Spirograph (Foster et al., ICLR 2021) at small scale: train the same
network with and without the regulariser for a time budget, then fit a linear regression
from (averaged) features to the four targets and report the per-task test MSE beside the
paper's numbers. Claim checked: the regulariser lowers MSE, feature averaging lowers it
further.

Usage::

    python benchmarks/bench_invariance.py step --device cuda --batch 512 --dtype bfloat16
    python benchmarks/bench_invariance.py reproduce --device cuda --minutes 4 --train-size 50000
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from augplug_datasets.spirograph import TARGETS, stack_targets
from torch import nn

import augplug
from augplug.evaluate import average_features

# Per-task test MSE (m, b, sigma, fore_r) from the paper, ResNet-18, 50 epochs, 3 seeds.
PAPER_MSE = {
    "no penalty": (6.77e-4, 1.125e-2, 9.14e-5, 2.32e-5),
    "penalty": (5.07e-4, 7.36e-3, 5.27e-5, 2.79e-6),
}
PAPER_AVERAGED = {1: 1.99e-3, 30: 0.957e-3}  # mean MSE with the penalty, M views averaged


# ---------------------------------------------------------------- the network
class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def resnet18(width: int = 64) -> nn.Module:
    """CIFAR-stem ResNet-18 (3x3 stem, no max-pool), output (B, 8 * width) features."""
    layers = [nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
    cin = width
    for i, cout in enumerate((width, 2 * width, 4 * width, 8 * width)):
        layers += [BasicBlock(cin, cout, 1 if i == 0 else 2), BasicBlock(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """SimCLR's NT-Xent over 2B embeddings, written out plainly (float32 softmax)."""
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    batch = z1.shape[0]
    targets = torch.cat([torch.arange(batch, 2 * batch), torch.arange(batch)]).to(z.device)
    return F.cross_entropy(logits, targets)


class Model(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.encoder = resnet18(width)
        features = 8 * width
        self.projector = nn.Sequential(
            nn.Linear(features, features), nn.ReLU(), nn.Linear(features, 128)
        )


def make_step(model, views, regulariser, weight, optimizer, autocast_dtype, device, reuse=True):
    """One SSL step as augplug.Pipeline runs it: views of branch 0 are kept for the regulariser.

    For the paper's estimator the perturbed params of view 0 require grad before it is
    rendered, as in the reference, so the penalty's double backprop reuses the loss's
    encoding of view 0 instead of encoding it again.
    """
    reuse = reuse and regulariser is not None and regulariser.estimator == "paper"
    alpha = regulariser.alpha_names(views) if reuse else ()

    def step(x, generator):
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            params = views.sample(x, generator=generator)
            if reuse:
                params = params.requires_grad_(alpha)
            v0, v1 = views.apply(x, params), views(x, generator=generator)
            h = model.encoder(torch.cat([v0, v1]))
            z = model.projector(h)
            loss = nt_xent(*z.chunk(2))
            if regulariser is not None:
                h_views = torch.stack(h.chunk(2), 1)
                loss = loss + weight * regulariser(
                    model.encoder, views, x, params, h=h_views, generator=generator
                )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss

    return step


def time_once(fn, device: torch.device) -> float:
    """Milliseconds of one call."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end)
    begin = time.perf_counter()
    fn()
    return (time.perf_counter() - begin) * 1e3


def timed_round_robin(fns, device: torch.device, warmup: int, repeats: int) -> list[float]:
    """Median milliseconds per call of each function, timed in turns (a busy machine slows all alike)."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    samples = [[] for _ in fns]
    for _ in range(repeats):
        for fn, times in zip(fns, samples):
            times.append(time_once(fn, device))
    return [statistics.median(times) for times in samples]


def views_and_inputs(name: str, batch: int, device: torch.device, generator: torch.Generator):
    views = augplug.create("views", name).to(device)
    if name == "spirograph":
        data = augplug.create("dataset", "spirograph", size=batch, seed=0, device=device)
        return views, stack_targets(data.targets)
    return views, torch.rand(batch, 3, 32, 32, device=device, generator=generator)


def bench_step(args) -> None:
    device = torch.device(args.device)
    autocast_dtype = None if args.dtype == "float32" else getattr(torch, args.dtype)
    generator = torch.Generator(device=device).manual_seed(0)
    views, x = views_and_inputs(args.views, args.batch, device, generator)
    steps = []
    variants = [
        ("InfoNCE alone", None),
        (
            "+ gradient_invariance, paper (100 draws, loss's pass reused: the reference's way)",
            "paper",
        ),
        ("+ gradient_invariance, paper (100 draws, view 0 encoded again)", "paper, encoded again"),
        ("+ gradient_invariance, difference", "difference"),
    ]
    for _, estimator in variants:
        torch.manual_seed(0)
        model = Model(args.width).to(device).to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        regulariser = (
            None
            if estimator is None
            else augplug.create(
                "objective", "gradient_invariance", estimator=estimator.split(",")[0]
            )
        )
        reuse = estimator != "paper, encoded again"
        step = make_step(model, views, regulariser, 0.1, optimizer, autocast_dtype, device, reuse)
        steps.append(lambda s=step: s(x, generator))
    times = timed_round_robin(steps, device, args.warmup, args.repeats)
    rows = [(label, ms) for (label, _), ms in zip(variants, times)]
    plain = rows[0][1]
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU ({torch.get_num_threads()} threads)"
    )
    print(
        f"device: {name}; torch {torch.__version__}; batch {args.batch} x 2 views, 32x32, "
        f"views {args.views!r}, {args.dtype}, ResNet-18 width {args.width}"
    )
    print("| step | median ms | x plain |\n|---|---|---|")
    for label, ms in rows:
        print(f"| {label} | {ms:.2f} | {ms / plain:.2f} |")


# ------------------------------------------------------------- reproduction
@torch.no_grad()
def encode(encoder, inputs, chunk):
    return torch.cat(
        [encoder(inputs[i : i + chunk]).float() for i in range(0, inputs.shape[0], chunk)]
    )


def linear_regression_mse(
    train_features, train_targets, test_features, test_targets
) -> torch.Tensor:
    """Per-task test MSE of least squares (with a bias) from features to raw targets, float64."""

    def design(f):
        return torch.cat(
            [f.double(), torch.ones(f.shape[0], 1, device=f.device, dtype=torch.float64)], 1
        )

    # A tiny ridge keeps the solve stable when features are collinear (e.g. dead units).
    a = design(train_features)
    gram = a.T @ a + 1e-6 * torch.eye(a.shape[1], device=a.device, dtype=torch.float64)
    weights = torch.linalg.solve(gram, a.T @ train_targets.double())
    return ((design(test_features) @ weights - test_targets.double()) ** 2).mean(0)


def train(args, device, penalty: bool):
    torch.manual_seed(args.seed)
    data = augplug.create(
        "dataset",
        "spirograph",
        split="train",
        size=args.train_size,
        seed=args.seed,
        device=device,
        normalisation=args.normalisation,
    )
    views = augplug.create("views", "spirograph", normalisation=args.normalisation)
    model = Model(args.width).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    regulariser = augplug.create(
        "objective", "gradient_invariance", estimator=args.estimator, clamp=1000.0
    )
    autocast_dtype = None if args.dtype == "float32" else getattr(torch, args.dtype)
    step = make_step(
        model, views, regulariser if penalty else None, 0.01, optimizer, autocast_dtype, device
    )
    generator = torch.Generator(device=device).manual_seed(args.seed)
    shuffle = torch.Generator().manual_seed(args.seed)
    deadline, steps, epochs = time.perf_counter() + 60 * args.minutes, 0, 0
    while time.perf_counter() < deadline and (args.max_steps is None or steps < args.max_steps):
        for _, targets in data.batches(args.batch, shuffle=True, generator=shuffle):
            step(stack_targets(targets), generator)
            steps += 1
            if time.perf_counter() >= deadline or (
                args.max_steps is not None and steps >= args.max_steps
            ):
                break
        epochs += 1
    return model.encoder.eval(), steps, epochs


def reproduce(args) -> None:
    device = torch.device(args.device)
    train_set = augplug.create(
        "dataset",
        "spirograph",
        split="train",
        size=args.probe_size,
        seed=args.seed + 1,
        device=device,
        normalisation=args.normalisation,
    )
    test_set = augplug.create(
        "dataset",
        "spirograph",
        split="test",
        size=args.test_size,
        seed=args.seed,
        device=device,
        normalisation=args.normalisation,
    )
    views = augplug.create("views", "spirograph", normalisation=args.normalisation)
    train_targets, test_targets = stack_targets(train_set.targets), stack_targets(test_set.targets)
    print(
        f"device {device}; torch {torch.__version__}; {args.minutes} min per run; train {args.train_size}, "
        f"probe fit {args.probe_size}, test {args.test_size}; estimator {args.estimator}; width {args.width}; "
        f"spirograph normalisation {args.normalisation}"
    )
    print("| run | features | " + " | ".join(f"MSE {t}" for t in TARGETS) + " | mean |")
    print("|---" * (len(TARGETS) + 3) + "|")
    for label, penalty in (("no penalty", False), ("penalty", True)):
        encoder, steps, epochs = train(args, device, penalty)
        generator = torch.Generator(device=device).manual_seed(args.seed)
        feature_sets = {
            "untransformed": (
                encode(encoder, train_set.inputs, args.chunk),
                encode(encoder, test_set.inputs, args.chunk),
            )
        }
        for m in args.averages:
            feature_sets[f"M = {m}"] = (
                average_features(
                    encoder, views, train_targets, m, chunk=args.chunk, generator=generator
                ),
                average_features(
                    encoder, views, test_targets, m, chunk=args.chunk, generator=generator
                ),
            )
        for name, (train_features, test_features) in feature_sets.items():
            mse = linear_regression_mse(train_features, train_targets, test_features, test_targets)
            cells = " | ".join(f"{v:.3g}" for v in mse.tolist())
            print(
                f"| {label} ({steps} steps, {epochs} epochs) | {name} | {cells} | {mse.mean().item():.3g} |"
            )
        paper = PAPER_MSE[label]
        print(
            f"| {label}, paper (50 epochs) | untransformed | "
            + " | ".join(f"{v:.3g}" for v in paper)
            + f" | {sum(paper) / 4:.3g} |"
        )
    print(
        "Paper, penalty, mean MSE with M views averaged: "
        + ", ".join(f"M = {m}: {v:.3g}" for m, v in PAPER_AVERAGED.items())
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    for name in ("step", "reproduce"):
        p = sub.add_parser(name)
        p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
        p.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16", "float16"])
        p.add_argument("--width", type=int, default=64, help="ResNet-18 base width (64 = standard)")
        p.add_argument(
            "--threads",
            type=int,
            default=None,
            help="CPU intra-op threads (torch default if unset)",
        )
    step = sub.choices["step"]
    step.add_argument("--batch", type=int, default=512)
    step.add_argument("--views", default="colour", choices=["colour", "spirograph"])
    step.add_argument("--warmup", type=int, default=3)
    step.add_argument("--repeats", type=int, default=10)
    rep = sub.choices["reproduce"]
    rep.add_argument("--minutes", type=float, default=4.0, help="training time per run (two runs)")
    rep.add_argument("--max-steps", type=int, default=None)
    rep.add_argument("--batch", type=int, default=512)
    rep.add_argument("--train-size", type=int, default=50_000)
    rep.add_argument(
        "--probe-size", type=int, default=10_000, help="images the linear regression is fitted on"
    )
    rep.add_argument("--test-size", type=int, default=10_000)
    rep.add_argument("--averages", type=int, nargs="+", default=[1, 5, 10, 30])
    rep.add_argument("--estimator", default="difference", choices=["paper", "difference"])
    rep.add_argument("--chunk", type=int, default=4096)
    rep.add_argument(
        "--normalisation",
        default="reference",
        choices=["reference", "global"],
        help="Spirograph rendering: the reference code's per-row max (default) or the paper text's image max",
    )
    rep.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.mode == "reproduce":
        reproduce(args)
    else:
        bench_step(args)


if __name__ == "__main__":
    main()
