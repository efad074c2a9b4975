"""Behaviour of the registered views: identities, replay, determinism, dtypes, layouts, errors."""

import io
import subprocess
import sys

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode

import augplug
from augplug.checks import validation

RECIPES = [
    ("simclr", {"size": 8}),
    ("byol", {"branch": 0}),
    ("byol", {"branch": 1, "size": (6, 9)}),
    ("colour", {}),
    ("random_resized_crop", {"size": 5}),
    ("horizontal_flip", {}),
    ("colour_jitter", {}),
    ("grayscale", {}),
    ("gaussian_blur", {}),
    ("solarize", {}),
    ("random_affine", {"degrees": 20, "translate": (0.1, 0.1), "scale": (0.9, 1.1)}),
    ("random_erasing", {}),
    ("posterize", {}),
]
ids = [f"{name}{kwargs}" for name, kwargs in RECIPES]
seeds = st.integers(0, 2**31 - 1)


def images(b=4, c=3, h=10, w=12, seed=0, dtype=torch.float32):
    return torch.rand(b, c, h, w, generator=torch.Generator().manual_seed(seed)).to(dtype)


def draw(view, x, seed):
    return view.sample(x, torch.Generator().manual_seed(seed))


def test_every_view_is_registered_and_parametric():
    names = {name for name, _ in RECIPES}
    assert names <= set(augplug.available("views"))
    for name, kwargs in RECIPES:
        assert isinstance(augplug.create("views", name, **kwargs), augplug.ParametricViewGenerator)


def test_colour_recipe_exposes_the_four_factors_as_continuous_params():
    assert augplug.create("views", "colour").continuous_params == (
        "brightness",
        "contrast",
        "saturation",
        "hue",
    )
    simclr = augplug.create("views", "simclr", size=8)
    assert set(simclr.continuous_params) == {
        "crop_box",
        "brightness",
        "contrast",
        "saturation",
        "hue",
        "blur_sigma",
    }
    params = draw(simclr, images(), 0)
    assert all(params[name].is_floating_point() for name in simclr.continuous_params)
    assert all(v.dtype == torch.bool for k, v in params.items() if k.endswith("_applied"))


@pytest.mark.parametrize(("name", "kwargs"), RECIPES, ids=ids)
@given(seed=seeds)
def test_replay_is_identical_and_forward_is_apply_of_sample(name, kwargs, seed):
    view = augplug.create("views", name, **kwargs)
    x = images(seed=seed % 1000)
    params = draw(view, x, seed)
    first = view.apply(x, params)
    buffer = io.BytesIO()
    torch.save(dict(params), buffer)  # stored and reloaded params replay the same view
    buffer.seek(0)
    stored = augplug.Params(torch.load(buffer))
    assert torch.equal(view.apply(x, stored), first)
    assert torch.equal(view(x, generator=torch.Generator().manual_seed(seed)), first)


@pytest.mark.parametrize(("name", "kwargs"), RECIPES, ids=ids)
def test_same_seed_same_view_different_seed_different_view_global_rng_untouched(name, kwargs):
    view = augplug.create("views", name, **kwargs)
    x = images(b=32)
    state = torch.get_rng_state()
    a = view(x, generator=torch.Generator().manual_seed(1))
    b = view(x, generator=torch.Generator().manual_seed(1))
    c = view(x, generator=torch.Generator().manual_seed(2))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("horizontal_flip", {"p": 0.0}),
        ("colour_jitter", {"p": 0.0}),
        ("grayscale", {"p": 0.0}),
        ("gaussian_blur", {"p": 0.0}),
        ("solarize", {"p": 0.0}),
        ("random_affine", {"p": 0.0}),
        ("random_erasing", {"p": 0.0}),
        ("posterize", {"p": 0.0}),
        ("colour", {"jitter_p": 0.0, "grayscale_p": 0.0}),
        ("simclr", {"scale": (1.0, 1.0), "ratio": (1.2, 1.2), "flip_p": 0.0, "jitter_p": 0.0,
                    "grayscale_p": 0.0, "blur_p": 0.0}),
    ],
)  # fmt: skip
@given(seed=seeds)
def test_probability_zero_is_the_identity(name, kwargs, seed):
    view = augplug.create("views", name, **kwargs)
    x = images(
        h=10, w=12, seed=seed % 1000, dtype=torch.float64
    )  # 12 / 10 = ratio 1.2: a full crop
    out = view(x, generator=torch.Generator().manual_seed(seed))
    if name == "simclr":  # the full-image crop resamples on the pixel grid: exact up to rounding
        torch.testing.assert_close(out, x, rtol=0, atol=1e-12)
    else:
        assert torch.equal(out, x)


@given(seed=seeds, hue_space=st.sampled_from(["hsv", "yiq"]))
def test_jitter_strength_zero_is_the_identity(seed, hue_space):
    view = augplug.create("views", "colour_jitter", brightness=0, contrast=0, saturation=0, hue=0,
                          p=1.0, hue_space=hue_space)  # fmt: skip
    x = images(seed=seed % 1000, dtype=torch.float64)
    torch.testing.assert_close(
        view(x, generator=torch.Generator().manual_seed(seed)), x, rtol=0, atol=1e-12
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_dtype_and_channels_last_are_kept(dtype):
    view = augplug.create("views", "simclr", size=(7, 9))
    x = images(dtype=dtype).contiguous(memory_format=torch.channels_last)
    out = view(x, generator=torch.Generator().manual_seed(0))
    assert out.dtype == dtype and out.shape == (4, 3, 7, 9)
    assert out.is_contiguous(memory_format=torch.channels_last)
    # Same params on a contiguous copy: the layout changes nothing but the strides.
    params = draw(view, x, 0)
    assert torch.equal(view.apply(x, params), view.apply(x.contiguous(), params))


def test_uint8_is_converted_by_dividing_by_255():
    view = augplug.create("views", "simclr", size=8)
    x = (images() * 255).round().to(torch.uint8)
    params = draw(view, x, 0)
    out = view.apply(x, params)
    assert out.dtype == torch.float32
    assert torch.equal(out, view.apply(x.float() / 255, params))


def test_values_outside_unit_range_are_clamped_by_colour_ops_and_kept_by_geometry():
    x = images() * 3 - 1
    jitter = augplug.create("views", "colour_jitter", p=1.0)
    out = jitter(x, generator=torch.Generator().manual_seed(0))
    assert out.min() >= 0 and out.max() <= 1
    flipped = augplug.create("views", "horizontal_flip", p=1.0)(x)
    assert torch.equal(flipped, x.flip(-1))


def test_any_channel_count_for_geometry_and_blur_rgb_for_colour():
    x = images(c=5)
    for name in (
        "random_resized_crop",
        "horizontal_flip",
        "gaussian_blur",
        "solarize",
        "random_affine",
    ):
        assert augplug.create("views", name)(x).shape[1] == 5
    for name in ("simclr", "colour", "colour_jitter", "grayscale"):
        with pytest.raises(ValueError, match=r"x: expected 3 \(RGB\) channels"):
            augplug.create("views", name)(x)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: augplug.create("views", "simclr", size=0), ValueError, "size"),
        (lambda: augplug.create("views", "simclr", scale=(0.9, 0.1)), ValueError, "scale"),
        (lambda: augplug.create("views", "byol", branch=2), ValueError, "branch"),
        (lambda: augplug.create("views", "byol", branch=1.0), ValueError, "branch"),
        (lambda: augplug.create("views", "colour_jitter", hue=0.7), ValueError, "hue"),
        (lambda: augplug.create("views", "colour_jitter", hue_space="lab"), ValueError, "hue_space"),
        (lambda: augplug.create("views", "gaussian_blur", kernel_size=4), ValueError, "kernel_size"),
        (lambda: augplug.create("views", "grayscale", p=1.5), ValueError, "p"),
        (lambda: augplug.create("views", "simclr")(torch.rand(3, 8, 8)), ValueError, "x: expected a 4-D"),
        (lambda: augplug.create("views", "simclr")(torch.zeros(2, 3, 8, 8, dtype=torch.int32)), TypeError, "x: expected dtype"),
        (lambda: augplug.create("views", "simclr").apply(torch.rand(2, 3, 8, 8), {}), ValueError, "params: missing 'flip_applied'"),
        (lambda: augplug.create("views", "solarize").apply(torch.rand(2, 3, 8, 8), {"solarize_applied": torch.ones(3, dtype=torch.bool)}), ValueError, "batch size 2"),
        (lambda: augplug.create("views", "gaussian_blur", kernel_size=9)(torch.rand(2, 3, 4, 4)), ValueError, "blur kernel"),
        (lambda: augplug.create("views", "horizontal_flip")(torch.rand(2, 3, 4, 4), generator=3), TypeError, "generator"),
    ],
)  # fmt: skip
def test_bad_input_raises_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_non_finite_input_is_rejected_under_validation():
    x = images()
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="x: expected finite"):
        augplug.create("views", "simclr", size=8)(x)


def test_no_per_sample_loop_views_of_a_batch_equal_views_of_each_sample():
    """Batching is exact: rendering row i alone with row i's params gives row i of the batch."""
    view = augplug.create("views", "simclr", size=6)
    x = images(b=5)
    params = draw(view, x, 4)
    full = view.apply(x, params)
    for i in range(5):
        row = view.apply(x[i : i + 1], params.index(slice(i, i + 1)))
        torch.testing.assert_close(row, full[i : i + 1], rtol=0, atol=1e-6)


@pytest.mark.parametrize(("name", "kwargs"), [("byol", {"branch": 1, "size": 6}), ("colour", {})])
def test_apply_compiles_with_fullgraph_on_cpu(name, kwargs):
    """fullgraph=True fails on any graph break (host sync, data-dependent branch)."""
    view = augplug.create("views", name, **kwargs)
    x = images(b=2, h=8, w=8)
    params = draw(view, x, 0)
    torch._dynamo.reset()
    with validation(False):  # the finite check is a deliberate host sync, off in production
        compiled = torch.compile(view.apply, fullgraph=True, backend="aot_eager")
        out = compiled(x, params)
    torch.testing.assert_close(out, view.apply(x, params))


class RecordOps(TorchDispatchMode):
    """Records the name of every ATen op that runs."""

    def __init__(self):
        super().__init__()
        self.names = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.add(func.__name__.split(".")[0])
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(("name", "kwargs"), RECIPES, ids=ids)
def test_forward_and_backward_never_read_values_back_to_the_host(name, kwargs):
    """.item(), bool(tensor), nonzero and boolean-mask indexing all dispatch one of these ops."""
    view = augplug.create("views", name, **kwargs)
    x = images(dtype=torch.bfloat16).requires_grad_()
    with (
        validation(False),
        RecordOps() as recorded,
    ):  # validation's finite check is a deliberate sync
        view(x, generator=torch.Generator().manual_seed(0)).float().sum().backward()
    assert not recorded.names & {"_local_scalar_dense", "nonzero", "masked_select", "item"}
    assert "rand" in recorded.names  # the recorder saw the forward


@pytest.mark.cuda
@pytest.mark.parametrize(("name", "kwargs"), RECIPES, ids=ids)
def test_no_host_sync_on_cuda(name, kwargs):
    view = augplug.create("views", name, **kwargs)
    x = torch.rand(8, 3, 16, 16, device="cuda")
    generator = torch.Generator(device="cuda").manual_seed(0)
    with validation(False):
        view(x, generator=generator)  # warm-up (lazy initialisation may sync once)
        torch.cuda.set_sync_debug_mode("error")
        try:
            view(x, generator=generator)
        finally:
            torch.cuda.set_sync_debug_mode(0)


def test_whole_module_compiles_with_fullgraph_when_no_generator_is_given():
    view = augplug.create("views", "simclr", size=6)
    torch._dynamo.reset()
    with validation(False):
        out = torch.compile(view, fullgraph=True, backend="aot_eager")(images(b=2, h=8, w=8))
    assert out.shape == (2, 3, 6, 6) and out.min() >= 0 and out.max() <= 1


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_inductor_compile_and_generator_on_device(dtype):
    view = augplug.create("views", "simclr", size=32)
    x = torch.rand(64, 3, 32, 32, device="cuda", dtype=dtype).contiguous(
        memory_format=torch.channels_last
    )
    generator = torch.Generator(device="cuda").manual_seed(0)
    params = view.sample(x, generator)
    assert all(v.device == x.device for v in params.values())
    with validation(False):
        out = torch.compile(view.apply, fullgraph=True)(x, params)
    torch.testing.assert_close(out.float(), view.apply(x, params).float(), rtol=0, atol=2e-2)
    cpu = view.apply(x.cpu(), params.to("cpu"))
    torch.testing.assert_close(out.cpu().float(), cpu.float(), rtol=0, atol=2e-2)


@given(
    shape=st.tuples(st.integers(1, 3), st.integers(2, 20), st.integers(2, 20)),
    size=st.one_of(
        st.none(), st.integers(2, 12), st.tuples(st.integers(2, 12), st.integers(2, 12))
    ),
    seed=seeds,
)
def test_any_image_and_output_size_gives_a_view_in_range(shape, size, seed):
    b, h, w = shape
    view = augplug.create("views", "simclr", size=size)
    x = torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))
    out = view(x, generator=torch.Generator().manual_seed(seed))
    expected = (h, w) if size is None else (size, size) if isinstance(size, int) else size
    assert out.shape == (b, 3, *expected)
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1


def test_a_list_of_single_ops_composes_and_replays():
    stages = [
        augplug.create("views", "random_resized_crop", size=6),
        augplug.create("views", "horizontal_flip"),
        augplug.create("views", "colour_jitter", p=1.0),
        augplug.create("views", "gaussian_blur", p=1.0),
    ]
    views = augplug.ComposedViews(stages)
    assert views.continuous_params == (
        "0.crop_box",
        "2.brightness",
        "2.contrast",
        "2.saturation",
        "2.hue",
        "3.blur_sigma",
    )
    x = images()
    params = views.sample(x, torch.Generator().manual_seed(5))
    assert torch.equal(views.apply(x, params), views(x, generator=torch.Generator().manual_seed(5)))


@pytest.mark.parametrize("name", sorted({name for name, _ in RECIPES}))
def test_registered_views_pass_the_contracts(name):
    from augplug.testing.contracts import check_component

    check_component("views", name, max_examples=3)


def test_image_views_run_without_kornia_and_the_adapter_names_the_extra():
    code = """
import sys
sys.modules["kornia"] = None  # as if Kornia were not installed
import torch, augplug
x = torch.rand(2, 3, 10, 10)
augplug.create("views", "simclr", size=8)(x)
augplug.create("views", "multicrop", global_size=8, local_size=4, n_local=1)(x)
try:
    augplug.create("views", "kornia", ops=[{"op": "RandomAffine", "degrees": 5}])
except ImportError as error:
    assert "pip install '.[kornia]'" in str(error), error
else:
    raise AssertionError("the adapter was created without Kornia")
"""
    subprocess.run([sys.executable, "-c", code], check=True)
