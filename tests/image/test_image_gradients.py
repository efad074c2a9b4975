"""Gradients of ``apply`` with respect to the input and every continuous parameter.

float64 analytic gradients are compared with central finite differences
(``torch.autograd.gradcheck``); the ops are piecewise smooth (bilinear sampling, clamps, the
HSV hue), and with these fixed seeds no finite-difference step straddles a kink.
"""

import pytest
import torch

import augplug

CASES = [
    ("simclr", {"size": (4, 5)}),
    ("byol", {"branch": 1, "size": (4, 5)}),
    ("colour", {}),
    ("colour_jitter", {"hue_space": "yiq"}),
    ("random_resized_crop", {"size": 4}),
    ("gaussian_blur", {"kernel_size": 5}),
]


def sampled(name, kwargs, seed=0, applied=True, dtype=torch.float64, shape=(2, 3, 6, 7)):
    view = augplug.create("views", name, **kwargs)
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x = (0.05 + 0.9 * x).to(dtype)  # away from the clamps at 0 and 1
    params = view.sample(x, torch.Generator().manual_seed(seed + 1))
    # Every stage on, so every parameter reaches the output (masks are not differentiable).
    params = augplug.Params(
        {
            k: torch.full_like(v, applied) if k.endswith("_applied") else v.to(dtype)
            for k, v in params.items()
        }
    )
    return view, x, params


@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=[c[0] + str(c[1]) for c in CASES])
def test_gradients_match_finite_differences_in_float64(name, kwargs):
    view, x, params = sampled(name, kwargs)
    names = view.continuous_params
    assert names, "every case has continuous params"

    def render(x, *values):
        return view.apply(x, augplug.Params({**params, **dict(zip(names, values))}))

    inputs = [x.requires_grad_()] + [params[n].clone().requires_grad_() for n in names]
    assert torch.autograd.gradcheck(render, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_gradients_are_finite_and_reach_every_parameter(dtype):
    view, x, params = sampled("byol", {"branch": 1, "size": (5, 6)}, dtype=dtype)
    x.requires_grad_()
    params = params.requires_grad_(view.continuous_params)
    view.apply(x, params).float().square().sum().backward()
    for grad in [x.grad] + [params[n].grad for n in view.continuous_params]:
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_parameters_of_samples_whose_stage_is_off_get_zero_gradient():
    view, x, params = sampled("simclr", {"size": (5, 6)}, applied=False)
    params = params.requires_grad_(["brightness", "contrast", "saturation", "hue", "blur_sigma"])
    view.apply(x, params).sum().backward()
    for name in ("brightness", "contrast", "saturation", "hue", "blur_sigma"):
        assert torch.equal(params[name].grad, torch.zeros_like(params[name]))


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("colour", {}),
        ("colour_jitter", {}),
        ("gaussian_blur", {"kernel_size": 3}),
        ("random_resized_crop", {"size": 3}),
    ],
)
def test_second_derivatives_match_finite_differences(name, kwargs):
    """The invariance regulariser differentiates d(view)/d(params) again (double backprop)."""
    view, x, params = sampled(name, kwargs, shape=(1, 3, 4, 5))
    names = view.continuous_params

    def render(x, *values):
        return view.apply(x, augplug.Params({**params, **dict(zip(names, values))}))

    inputs = [x.requires_grad_()] + [params[n].clone().requires_grad_() for n in names]
    assert torch.autograd.gradgradcheck(render, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)
