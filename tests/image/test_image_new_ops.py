"""The ops added in the fused style: affine, erasing and posterize, against Kornia on the same params."""

import kornia
import kornia.augmentation as K
import pytest
import torch
from augplug_image import functional
from hypothesis import given
from hypothesis import strategies as st

import augplug

seeds = st.integers(0, 2**31 - 1)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def images(b=5, c=3, h=9, w=11, seed=0, dtype=torch.float64):
    return torch.rand(b, c, h, w, generator=gen(seed), dtype=torch.float64).to(dtype)


def masked(applied, done, x):
    return torch.where(applied.reshape(-1, 1, 1, 1), done, x)


def kornia_affine_params(params, height, width):
    batch = params["affine_angle"].shape[0]
    zeros = torch.zeros(batch, dtype=torch.float64)
    centre = torch.tensor([(width - 1) / 2, (height - 1) / 2], dtype=torch.float64)
    return {
        "translations": params["affine_translate"].double(),
        "center": centre.expand(batch, 2),
        "scale": params["affine_scale"].double()[:, None].expand(-1, 2),
        "angle": params["affine_angle"].double(),
        "shear_x": zeros,
        "shear_y": zeros,
        "batch_prob": torch.ones(batch),
    }


@given(seed=seeds, shape=st.tuples(st.integers(2, 13), st.integers(2, 13)))
def test_affine_matches_kornia_random_affine(seed, shape):
    x = images(h=shape[0], w=shape[1], seed=seed % 997)
    view = augplug.create(
        "views", "random_affine", degrees=30, translate=(0.2, 0.1), scale=(0.7, 1.3), p=0.7
    )
    params = view.sample(x, gen(seed))
    warped = K.RandomAffine(30, p=1.0)(x, params=kornia_affine_params(params, *shape))
    expected = masked(params["affine_applied"], warped, x)
    torch.testing.assert_close(view.apply(x, params), expected, rtol=0, atol=1e-12)


@given(seed=seeds, shape=st.tuples(st.integers(1, 13), st.integers(1, 13)))
def test_erasing_matches_kornia_random_erasing(seed, shape):
    x = images(h=shape[0], w=shape[1], seed=seed % 997)
    view = augplug.create("views", "random_erasing", p=0.6, value=0.25)
    params = view.sample(x, gen(seed))
    box = params["erase_box"]
    kornia_params = {
        "xs": box[:, 0],
        "ys": box[:, 1],
        "widths": box[:, 2],
        "heights": box[:, 3],
        "values": torch.full((x.shape[0],), 0.25),
        "batch_prob": torch.ones(x.shape[0]),
    }
    erased = K.RandomErasing(p=1.0, value=0.25)(x, params=kornia_params)
    expected = masked(params["erase_applied"], erased, x)
    assert torch.equal(view.apply(x, params), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_posterize_matches_kornia_for_every_bit_count(dtype):
    levels = torch.arange(256, dtype=torch.float64) / 255  # every 8-bit value exactly
    noise = torch.rand(9 * 3 * 16 * 16 - 256, generator=gen(0), dtype=torch.float64)
    x = torch.cat((levels, noise)).reshape(9, 3, 16, 16).to(dtype)
    bits = torch.arange(9)
    out = functional.posterize(x, bits, torch.ones(9, dtype=torch.bool))
    assert torch.equal(out, kornia.enhance.posterize(x, bits))


def test_sampled_params_stay_in_their_ranges():
    x = images(b=4000, c=1, h=20, w=30)
    erase = augplug.create("views", "random_erasing").sample(x, gen(1))["erase_box"]
    x0, y0, w, h = erase.unbind(-1)
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x0 + w <= 30).all() and (y0 + h <= 20).all()
    assert torch.equal(erase, erase.round()) and (w >= 1).all() and (h >= 1).all()
    assert (w * h).min() >= 1 and (w * h).max() <= round(0.33 * 600) + 30  # rounding of the sides
    params = augplug.create(
        "views", "random_affine", degrees=15, translate=(0.1, 0.2), scale=(0.9, 1.1)
    ).sample(x, gen(2))
    assert params["affine_angle"].abs().max() <= 15 and params["affine_angle"].abs().max() > 14.9
    assert (params["affine_translate"].abs().amax(0) <= torch.tensor([3.0, 4.0])).all()
    assert params["affine_scale"].min() >= 0.9 and params["affine_scale"].max() <= 1.1
    bits = augplug.create("views", "posterize").sample(x, gen(3))["posterize_bits"]
    assert bits.dtype == torch.int64 and set(bits.unique().tolist()) == {3, 4, 5, 6, 7}
    assert (
        augplug.create("views", "posterize", bits=(8, 8))
        .sample(x, gen(3))["posterize_bits"]
        .eq(8)
        .all()
    )


def test_affine_is_differentiable_in_its_params_and_twice():
    x = images(b=2, h=8, w=9, seed=3) * 0.8 + 0.1
    view = augplug.create(
        "views", "random_affine", degrees=20, translate=(0.1, 0.1), scale=(0.8, 1.2), p=1.0
    )
    assert view.continuous_params == ("affine_angle", "affine_translate", "affine_scale")
    params = view.sample(x, gen(4))
    weights = torch.rand(x.shape, generator=gen(5), dtype=torch.float64)
    for name in view.continuous_params:
        base = params[name].double()
        direction = torch.randn(base.shape, generator=gen(6), dtype=torch.float64)

        def loss(value, name=name):
            return (view.apply(x, {**params, name: value}) * weights).sum()

        value = base.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss(value), value, create_graph=True)
        step = 1e-6
        numeric = (loss(base + step * direction) - loss(base - step * direction)) / (2 * step)
        torch.testing.assert_close((grad * direction).sum(), numeric, rtol=1e-5, atol=1e-8)
        # A second derivative exists (the invariance regulariser double-backprops).
        (grad * direction).sum().backward()


def test_erasing_and_posterize_take_any_channel_count_and_keep_dtype():
    x = images(c=5, dtype=torch.bfloat16)
    for name in ("random_erasing", "posterize", "random_affine"):
        out = augplug.create("views", name, p=1.0)(x, generator=gen(0))
        assert out.shape == x.shape and out.dtype == torch.bfloat16


def test_fused_pipeline_of_any_ops_replays():
    from augplug_image.views import (
        ColourJitter,
        HorizontalFlip,
        ImageViews,
        Posterize,
        RandomAffine,
        RandomErasing,
        RandomResizedCrop,
    )

    ops = [RandomResizedCrop(8), HorizontalFlip(), RandomAffine(10), ColourJitter(), Posterize()]
    views = ImageViews([*ops, RandomErasing()])
    x = images()
    params = views.sample(x, gen(0))
    assert torch.equal(views.apply(x, params), views(x, generator=gen(0)))
    assert views.num_draws == sum(op.num_draws for op in views.ops)
    with pytest.raises(ValueError, match=r"ops\[1\]: RandomAffine appears twice"):
        ImageViews([RandomAffine(), RandomAffine()])
    with pytest.raises(TypeError, match=r"ops\[0\]: expected an ImageOp"):
        ImageViews([torch.nn.Identity()])
