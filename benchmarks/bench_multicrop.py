"""Multi-crop views on the CPU: augplug's batched ``multicrop`` against lightly's ``DINOTransform``
applied per sample (what a DataLoader worker runs today), in images per second on one core.

Both make DINO's views: 2 global crops at 224 px (scale 0.4-1) and 6 local crops at 96 px
(scale 0.05-0.4), flip, colour jitter 0.4/0.4/0.2/0.1 p 0.8, grayscale p 0.2, blur (1.0 / 0.1 /
0.5) and solarize 0.2 on the second global crop, then normalisation with the ImageNet mean and
std. lightly gets PIL images (its input), augplug one uint8 batch tensor (B, 3, H, W); one
intra-op thread on both sides; the two are timed round-robin (one batch each per round),
medians. The header gives date, versions and the load average. Example::

    python benchmarks/bench_multicrop.py --batch 32 --side 256 --repeats 5
"""

from __future__ import annotations

import argparse

import lightly
import numpy as np
import torch
from bench_image_views import header, interleaved, load_average
from lightly.transforms import DINOTransform
from PIL import Image

import augplug
from augplug.checks import validation

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--side", type=int, default=256, help="side of the (square) source images")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    generator = np.random.default_rng(0)
    pixels = generator.integers(0, 256, (args.batch, args.side, args.side, 3), dtype=np.uint8)
    pil_images = [Image.fromarray(p) for p in pixels]
    batch = torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()
    transform = DINOTransform()
    views = augplug.create("views", "multicrop")
    mean = torch.tensor(MEAN).reshape(1, 3, 1, 1)
    std = torch.tensor(STD).reshape(1, 3, 1, 1)
    torch_generator = torch.Generator().manual_seed(0)

    def lightly_per_sample() -> None:
        for image in pil_images:
            transform(image)

    def augplug_batched() -> None:
        for view in views(batch, generator=torch_generator):
            (view - mean) / std

    print(header(lightly=lightly.__version__, images=f"{args.batch} x {args.side}x{args.side}"))
    with validation(False), torch.no_grad():
        medians = interleaved(
            {
                "lightly DINOTransform per sample": lightly_per_sample,
                "augplug multicrop batched": augplug_batched,
            },
            args.warmup,
            args.repeats,
        )
    print(f"load at the end: {load_average()}")
    for name, ms in medians.items():
        print(f"{name:>34} {ms:9.1f} ms / batch {args.batch / (ms / 1e3):8.1f} images/s (1 core)")


if __name__ == "__main__":
    main()
