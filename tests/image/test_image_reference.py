"""The fused views render bit for bit what the implementation before the one-class-per-op
restructuring rendered (``data/reference_views.pt``, written by that implementation with
``python tests/image/test_image_reference.py --write``), for the same generator seeds."""

import sys
from pathlib import Path

import pytest
import torch

import augplug

REFERENCE = Path(__file__).parent / "data" / "reference_views.pt"

CASES = [
    ("simclr", {"size": 8}),
    ("simclr", {"size": (6, 7), "hue": 0.3, "blur_kernel_size": 3}),
    ("byol", {"branch": 0}),
    ("byol", {"branch": 1, "size": (6, 7)}),
    ("colour", {}),
    ("random_resized_crop", {"size": 5}),
    ("horizontal_flip", {}),
    ("colour_jitter", {}),
    ("colour_jitter", {"hue_space": "yiq", "p": 1.0}),
    ("grayscale", {}),
    ("gaussian_blur", {}),
    ("solarize", {"threshold": 0.3}),
]
DTYPES = (torch.float64, torch.float32, torch.bfloat16)


def render(name, kwargs, dtype, seed):
    """Params and view of one case; channels_last inputs, so the layout path is covered too."""
    x = torch.rand(4, 3, 8, 10, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x = x.to(dtype).contiguous(memory_format=torch.channels_last)
    view = augplug.create("views", name, **kwargs)
    params = view.sample(x, torch.Generator().manual_seed(seed))
    return dict(params), view.apply(x, params)


def key(index, dtype, seed):
    return f"{index}/{str(dtype).removeprefix('torch.')}/{seed}"


def _compact(value):
    if isinstance(value, dict):
        return {k: v.clone() for k, v in value.items()}
    return value.clone()


def compute():
    # Clones: a parameter that is a column of the draws would otherwise save all of them.
    return {
        key(i, dtype, seed): tuple(_compact(v) for v in render(name, kwargs, dtype, seed))
        for i, (name, kwargs) in enumerate(CASES)
        for dtype in DTYPES
        for seed in (0, 1)
    }


@pytest.fixture(scope="module")
def reference():
    return torch.load(REFERENCE)


@pytest.mark.parametrize(
    ("index", "case"), list(enumerate(CASES)), ids=[f"{n}{k}" for n, k in CASES]
)
def test_views_match_the_saved_reference_bit_for_bit(reference, index, case):
    name, kwargs = case
    for dtype in DTYPES:
        for seed in (0, 1):
            expected_params, expected = reference[key(index, dtype, seed)]
            params, out = render(name, kwargs, dtype, seed)
            assert list(params) == list(expected_params)
            for entry, value in expected_params.items():
                assert torch.equal(params[entry], value), (entry, dtype, seed)
            assert out.dtype == expected.dtype and torch.equal(out, expected), (dtype, seed)


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    REFERENCE.parent.mkdir(exist_ok=True)
    torch.save(compute(), REFERENCE)
    print(f"wrote {REFERENCE}")
