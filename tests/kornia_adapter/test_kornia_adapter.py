"""The Kornia adapter: seeded replay, Kornia's own pixels, params that travel, errors, gradients."""

import io
import subprocess
import sys

import pytest
import torch

import augplug
from augplug.components import ComposedViews

K = pytest.importorskip("kornia.augmentation")
from augplug_kornia.views import CONTINUOUS_PARAMS, KorniaViews  # noqa: E402

RECIPE = [
    {"op": "RandomAffine", "degrees": 15, "p": 0.5},
    {"op": "ColorJiggle", "brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1},
    {"op": "RandomResizedCrop", "size": [8, 8]},
    {"op": "RandomHorizontalFlip"},
    {"op": "RandomErasing", "p": 0.5},
]


def images(b=6, h=12, w=12, seed=0, dtype=torch.float32):
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed)).to(dtype)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_equal_generators_equal_views_and_the_global_rng_is_untouched():
    views = augplug.create("views", "kornia", ops=RECIPE)
    x = images()
    state = torch.get_rng_state()
    a, b, c = views(x, generator=gen(1)), views(x, generator=gen(1)), views(x, generator=gen(2))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (6, 3, 8, 8)


def test_pixels_are_kornias_own_for_the_seed_drawn():
    # The adapter adds nothing: Kornia's AugmentationSequential seeded with the same seed agrees.
    ops = [
        K.RandomAffine(15, p=0.5),
        K.ColorJitter(0.4, 0.4, 0.4, 0.1),
        K.RandomResizedCrop((8, 8)),
    ]
    views = KorniaViews(K.AugmentationSequential(*ops))
    x = images()
    seed = int(torch.randint(0, 2**62, (), generator=gen(3)))
    torch.manual_seed(seed)
    expected = K.AugmentationSequential(*ops)(x)
    torch.testing.assert_close(views(x, generator=gen(3)), expected, rtol=0, atol=0)


def test_params_survive_save_device_moves_and_index():
    views = augplug.create("views", "kornia", ops=RECIPE)
    x = images()
    params = views.sample(x, gen(5))
    first = views.apply(x, params)
    assert torch.equal(views(x, generator=gen(5)), first)
    assert params.batch_size == 6
    buffer = io.BytesIO()
    torch.save(dict(params), buffer)
    buffer.seek(0)
    stored = augplug.Params(torch.load(buffer))
    assert torch.equal(views.apply(x, stored), first)
    assert torch.equal(views.apply(x, params.to("cpu")), first)
    rows = torch.tensor([4, 1])
    assert torch.equal(views.apply(x[rows], params.index(rows)), first[rows])


def test_a_fresh_module_replays_saved_params():
    x = images()
    params = augplug.create("views", "kornia", ops=RECIPE).sample(x, gen(7))
    one, two = (augplug.create("views", "kornia", ops=RECIPE) for _ in range(2))
    assert torch.equal(one.apply(x, params), two.apply(x, params))


def test_composes_with_a_viewmaker_in_a_recipe_list():
    torch.manual_seed(0)
    views = ComposedViews(
        [
            augplug.create("views", "kornia", ops=RECIPE[:3]),
            augplug.create("views", "viewmaker", depth=1, width=4),
        ]
    )
    x = images(b=2, h=16, w=16)
    params = views.sample(x, gen(0))
    assert any(k.startswith("0.") for k in params) and any(k.startswith("1.") for k in params)
    assert torch.equal(views.apply(x, params), views.apply(x, params))
    assert views.apply(x, params).shape == (2, 3, 8, 8)
    assert "0.0.angle" in views.continuous_params


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.uint8, torch.float64])
def test_dtypes(dtype):
    views = augplug.create("views", "kornia", ops=RECIPE[:2])
    x = images()
    x = (x * 255).to(torch.uint8) if dtype == torch.uint8 else x.to(dtype)
    out = views(x, generator=gen(0))
    assert out.dtype == (torch.float32 if dtype == torch.uint8 else dtype)
    assert out.shape == x.shape


def test_unknown_op_and_argument_errors_suggest_a_close_match():
    with pytest.raises(ValueError, match=r"ops\[1\]\.op: .*did you mean 'RandomErasing'"):
        augplug.create(
            "views", "kornia", ops=[{"op": "RandomAffine", "degrees": 5}, {"op": "RandomErasng"}]
        )
    with pytest.raises(
        ValueError, match=r"ops\[0\]: RandomAffine has no argument 'degree'; did you mean 'degrees'"
    ):
        augplug.create("views", "kornia", ops=[{"op": "RandomAffine", "degree": 5}])
    with pytest.raises(ValueError, match=r"ops\[0\]: RandomAffine\(\) failed: .*degrees"):
        augplug.create("views", "kornia", ops=[{"op": "RandomAffine"}])
    with pytest.raises(ValueError, match=r"ops\[0\]: expected a dict with an 'op' key"):
        augplug.create("views", "kornia", ops=[{"degrees": 5}])
    with pytest.raises(TypeError, match=r"ops: expected a non-empty list"):
        augplug.create("views", "kornia", ops=[])
    with pytest.raises(TypeError, match=r"ops\[0\]: expected a kornia.augmentation 2-D op"):
        KorniaViews([torch.nn.Identity()])
    with pytest.raises(ValueError, match=r"random_apply"):
        KorniaViews(K.AugmentationSequential(K.RandomAffine(5), K.RandomErasing(), random_apply=1))


def test_bad_inputs_and_params_are_clear_errors_and_change_nothing():
    views = augplug.create("views", "kornia", ops=RECIPE)
    x = images()
    params = views.sample(x, gen(0))
    state = torch.get_rng_state()
    with pytest.raises(ValueError, match=r"x: "):
        views(x[0], generator=gen(0))
    with pytest.raises(
        ValueError, match=r"params\['0\.\w+'\]: expected a tensor with batch size 3"
    ):
        views.apply(x[:3], params)
    with pytest.raises(ValueError, match=r"params: no entries for ops\[4\] \(RandomErasing\)"):
        views.apply(x, {k: v for k, v in params.items() if not k.startswith("4.")})
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(views.apply(x, params), views(x, generator=gen(0)))


def test_kornia_is_imported_on_first_use_only():
    code = (
        "import sys, augplug; augplug.available('views'); augplug.plugins();"
        "assert 'kornia' not in sys.modules, 'imported at discovery';"
        "augplug.create('views', 'kornia', ops=[{'op': 'RandomInvert'}]);"
        "assert 'kornia' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# One op per entry of CONTINUOUS_PARAMS, with p=1 so every sample carries a gradient.
GRADIENT_OPS = {
    "RandomAffine": {
        "degrees": 20,
        "translate": (0.1, 0.1),
        "scale": (0.8, 1.2),
        "shear": (-10, 10, -10, 10),
    },
    "RandomRotation": {"degrees": 20},
    "RandomShear": {"shear": (-10, 10, -10, 10)},
    "RandomTranslate": {"translate_x": (-0.2, 0.2), "translate_y": (-0.2, 0.2)},
    "RandomPerspective": {"distortion_scale": 0.3},
    "ColorJitter": {"brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.05},
    "ColorJiggle": {"brightness": 0.3, "contrast": 0.3, "saturation": 0.3, "hue": 0.05},
    "RandomBrightness": {"brightness": (0.7, 1.3)},
    "RandomContrast": {"contrast": (0.7, 1.3)},
    "RandomSaturation": {"saturation": (0.7, 1.3)},
    "RandomGamma": {"gamma": (0.7, 1.3)},
    "RandomGaussianBlur": {"kernel_size": (5, 5), "sigma": (0.5, 1.5)},
    "RandomSharpness": {"sharpness": (0.2, 0.8)},
}


def test_every_op_with_continuous_params_is_checked():
    assert set(GRADIENT_OPS) == set(CONTINUOUS_PARAMS)


def directional_derivatives(op, kwargs, name):
    """Autograd and central-difference derivatives of a weighted sum of the view along a random direction (float64)."""
    views = KorniaViews([{"op": op, "p": 1.0, **kwargs}])
    x = images(b=2, h=12, w=12, seed=1, dtype=torch.float64) * 0.8 + 0.1  # away from the clamps
    params = views.sample(x, gen(11))
    weights = torch.rand(views.apply(x, params).shape, generator=gen(12), dtype=torch.float64)
    base = params[name].to(torch.float64)
    direction = torch.randn(base.shape, generator=gen(13), dtype=torch.float64)

    def loss(value):
        return (views.apply(x, {**params, name: value}) * weights).sum()

    value = base.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(value), value)
    step = 1e-5
    numeric = (loss(base + step * direction) - loss(base - step * direction)) / (2 * step)
    return (grad * direction).sum(), numeric


@pytest.mark.parametrize("op", sorted(GRADIENT_OPS))
def test_continuous_params_match_finite_differences(op):
    views = KorniaViews([{"op": op, **GRADIENT_OPS[op]}])
    assert views.continuous_params == tuple(f"0.{n}" for n in CONTINUOUS_PARAMS[op])
    for name in CONTINUOUS_PARAMS[op]:
        analytic, numeric = directional_derivatives(op, GRADIENT_OPS[op], f"0.{name}")
        assert analytic.abs() > 1e-6, f"{name}: no gradient"
        assert torch.isclose(analytic, numeric, rtol=1e-4, atol=1e-6), (
            f"{name}: autograd {analytic}, numeric {numeric}"
        )


@pytest.mark.parametrize(
    ("op", "kwargs", "name"),
    [
        ("RandomHue", {"hue": (-0.05, 0.05)}, "0.hue_factor"),
        ("RandomResizedCrop", {"size": (8, 8), "cropping_mode": "resample"}, "0.src"),
    ],
)
def test_entries_left_out_fail_the_same_check(op, kwargs, name):
    # Why these replay only (Kornia 0.9); if this starts failing, Kornia fixed them: list them.
    analytic, numeric = directional_derivatives(op, kwargs, name)
    assert not torch.isclose(analytic, numeric, rtol=1e-4, atol=1e-6)
    assert name.split(".", 1)[1] not in CONTINUOUS_PARAMS.get(op, ())


def test_passes_the_view_generator_contracts():
    from augplug.testing.contracts import check_parametric_view_generator

    check_parametric_view_generator(KorniaViews([*RECIPE[:2], {"op": "RandomErasing"}]))


def test_a_range_of_one_value_is_no_continuous_param():
    views = KorniaViews(
        [{"op": "ColorJitter", "brightness": 0.2}, {"op": "RandomAffine", "degrees": 10}]
    )
    assert views.continuous_params == ("0.brightness_factor", "1.angle")


@pytest.mark.cuda
def test_on_cuda_equal_generators_and_both_global_rngs_untouched():
    views = augplug.create("views", "kornia", ops=RECIPE).to("cuda")
    x = images().cuda()
    cpu_state, cuda_state = torch.get_rng_state(), torch.cuda.get_rng_state()
    g = torch.Generator(device="cuda")
    a = views(x, generator=g.manual_seed(1))
    b = views(x, generator=g.manual_seed(1))
    assert torch.equal(a, b) and a.device == x.device
    assert torch.equal(torch.get_rng_state(), cpu_state)
    assert torch.equal(torch.cuda.get_rng_state(), cuda_state)
    params = views.sample(x, g.manual_seed(2))
    torch.testing.assert_close(
        views.apply(x, params).cpu(), views.apply(x, params.to("cuda")).cpu(), rtol=0, atol=0
    )


def test_a_recipe_lists_kornia_ops_then_a_viewmaker():
    recipe = {
        "views": [
            {
                "name": "kornia",
                "ops": [{"op": "RandomAffine", "degrees": 10}, {"op": "RandomErasing"}],
            },
            {"name": "viewmaker", "depth": 1, "width": 4},
        ],
        "objective": {"name": "infonce"},
    }
    pipe = augplug.build(recipe)
    encoder = torch.nn.Sequential(
        torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(48, 8)
    )
    torch.manual_seed(0)
    out = pipe(images(b=4, h=16, w=16), encoder, generator=gen(0))
    out.loss.backward()
    assert out.loss.isfinite() and encoder[2].weight.grad is not None
