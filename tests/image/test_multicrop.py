"""Multi-crop views: DINO's per-crop settings, batching that changes nothing, replay."""

import io

import pytest
import torch
from augplug_image.views import ImageViews

import augplug


def gen(seed):
    return torch.Generator().manual_seed(seed)


def images(b=4, h=20, w=24, seed=0, dtype=torch.float64):
    return torch.rand(b, 3, h, w, generator=gen(seed), dtype=torch.float64).to(dtype)


def view_params(params, view):
    prefix = f"{view}."
    return {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}


def test_views_come_globals_first_at_their_sizes_and_replay():
    views = augplug.create(
        "views", "multicrop", n_global=2, n_local=3, global_size=12, local_size=(6, 5)
    )
    x = images()
    out = views(x, generator=gen(0))
    assert views.view_sizes == [(12, 12)] * 2 + [(6, 5)] * 3
    assert [tuple(v.shape[-2:]) for v in out] == views.view_sizes
    assert all(v.shape[:2] == (4, 3) and v.dtype == torch.float64 for v in out)
    params = views.sample(x, gen(0))
    buffer = io.BytesIO()
    torch.save(dict(params), buffer)
    buffer.seek(0)
    stored = augplug.Params(torch.load(buffer))
    assert all(torch.equal(a, b) for a, b in zip(views.apply(x, stored), out))
    assert not torch.equal(views(x, generator=gen(1))[0], out[0])


def test_batched_crops_equal_each_view_rendered_on_its_own():
    # All crops of one setting are cut in one warp and coloured in one pass; rendering any view
    # alone with its own params through a plain ImageViews of the same ops gives the same pixels.
    views = augplug.create(
        "views", "multicrop", n_global=3, n_local=4, global_size=10, local_size=6
    )
    x = images(b=3)
    params = views.sample(x, gen(2))
    out = views.apply(x, params)
    for group, pipeline in views._groups:
        single = ImageViews(list(pipeline.ops))
        for view in group:
            torch.testing.assert_close(
                single.apply(x, view_params(params, view)), out[view], rtol=0, atol=1e-12
            )


def test_each_sample_depends_only_on_its_own_params():
    views = augplug.create("views", "multicrop", n_local=2, global_size=8, local_size=4)
    x = images(b=5)
    params = views.sample(x, gen(3))
    out = views.apply(x, params)
    for i in range(5):
        rows = views.apply(x[i : i + 1], params.index(slice(i, i + 1)))
        for view, row in enumerate(rows):
            torch.testing.assert_close(row, out[view][i : i + 1], rtol=0, atol=1e-12)


def test_per_crop_settings_are_dinos():
    views = augplug.create("views", "multicrop", n_global=3, n_local=2, global_size=8, local_size=4)
    x = images(b=4000, h=16, w=16, dtype=torch.float32)
    params = views.sample(x, gen(4))

    def frequency(name):
        return params[name].float().mean().item()

    assert frequency("0.blur_applied") == 1.0 and frequency("2.blur_applied") == 1.0
    assert abs(frequency("1.blur_applied") - 0.1) < 0.03
    assert abs(frequency("1.solarize_applied") - 0.2) < 0.03
    assert "0.solarize_applied" not in params and "3.solarize_applied" not in params
    assert abs(frequency("3.blur_applied") - 0.5) < 0.05
    for view in range(5):
        assert abs(frequency(f"{view}.flip_applied") - 0.5) < 0.05
        assert abs(frequency(f"{view}.jitter_applied") - 0.8) < 0.05
        assert abs(frequency(f"{view}.grayscale_applied") - 0.2) < 0.05
        assert (
            params[f"{view}.saturation"].min() >= 0.8 and params[f"{view}.saturation"].max() <= 1.2
        )
    for view, (low, high) in [(0, (0.4, 1.0)), (1, (0.4, 1.0)), (3, (0.05, 0.4)), (4, (0.05, 0.4))]:
        box = params[f"{view}.crop_box"]
        area = (box[:, 2] - box[:, 0] + 1) * (box[:, 3] - box[:, 1] + 1) / 256
        assert area.min() >= low - 1e-4 and area.max() <= high + 1e-4
        assert area.max() - area.min() > 0.8 * (high - low)  # the range is used
    # Independent draws per view, not one shared draw.
    assert not torch.equal(params["0.flip_applied"], params["3.flip_applied"])


def test_low_precision_uint8_and_channels_last_are_kept():
    views = augplug.create("views", "multicrop", n_local=1, global_size=8, local_size=4)
    x = images().to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    for view in views(x, generator=gen(0)):
        assert view.dtype == torch.bfloat16
        assert view.is_contiguous(memory_format=torch.channels_last)
    as_bytes = (images() * 255).to(torch.uint8)
    assert all(v.dtype == torch.float32 for v in views(as_bytes, generator=gen(0)))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_global": 0}, ValueError, "n_global: expected an integer >= 1"),
        ({"n_local": -1}, ValueError, "n_local: expected an integer >= 0"),
        ({"n_local": 2.0}, TypeError, "n_local"),
        ({"local_size": 0}, ValueError, "local_size"),
        ({"global_scale": (0.9, 0.1)}, ValueError, "global_scale"),
        ({"solarize_p": 2}, ValueError, "solarize_p"),
    ],
)
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        augplug.create("views", "multicrop", **kwargs)


def test_no_local_crops_and_grey_input_is_refused():
    views = augplug.create("views", "multicrop", n_local=0, global_size=8)
    assert len(views(images(), generator=gen(0))) == 2
    with pytest.raises(ValueError, match=r"x: expected 3 \(RGB\) channels"):
        views(torch.rand(2, 1, 8, 8))


def test_never_reads_values_back_and_apply_compiles_with_fullgraph():
    from torch.utils._python_dispatch import TorchDispatchMode

    from augplug.checks import validation

    class RecordOps(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.add(func.__name__.split(".")[0])
            return func(*args, **(kwargs or {}))

    views = augplug.create("views", "multicrop", n_local=2, global_size=8, local_size=4)
    x = images(b=2, h=10, w=10, dtype=torch.float32).requires_grad_()
    with validation(False), RecordOps() as recorded:
        sum(v.sum() for v in views(x, generator=gen(0))).backward()
    assert not recorded.names & {"_local_scalar_dense", "nonzero", "masked_select", "item"}
    params = views.sample(x, gen(1))
    torch._dynamo.reset()
    with validation(False):
        compiled = torch.compile(views.apply, fullgraph=True, backend="aot_eager")(x, params)
    for a, b in zip(compiled, views.apply(x, params)):
        torch.testing.assert_close(a, b)


@pytest.mark.cuda
def test_no_host_sync_on_cuda():
    from augplug.checks import validation

    views = augplug.create("views", "multicrop", n_local=4, global_size=32, local_size=16)
    x = torch.rand(8, 3, 40, 40, device="cuda")
    generator = torch.Generator(device="cuda").manual_seed(0)
    with validation(False):
        views(x, generator=generator)  # warm-up (lazy initialisation may sync once)
        torch.cuda.set_sync_debug_mode("error")
        try:
            views(x, generator=generator)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    params = views.sample(x, torch.Generator(device="cuda").manual_seed(1))
    on_cpu = views.apply(x.cpu(), params.to("cpu"))
    for a, b in zip(views.apply(x, params), on_cpu):
        torch.testing.assert_close(a.cpu(), b, rtol=0, atol=1e-4)
