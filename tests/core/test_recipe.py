"""Recipes: validation with key paths, and the pipeline's data flow against hand-written references."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import augplug
from augplug import registry, rng


class Scale(augplug.ParametricViewGenerator):
    continuous_params = ("factor",)

    def __init__(self, low: float = 0.5, high: float = 1.5):
        super().__init__()
        self.low, self.high = low, high

    def sample(self, x, generator=None):
        return augplug.Params(factor=rng.uniform((x.shape[0],), self.low, self.high, device=x.device, generator=generator))

    def apply(self, x, params):
        return x * params["factor"].reshape(-1, 1).to(x.dtype)


class PairDistance(augplug.Objective):
    """Asymmetric on purpose (a weight on z1), so a wrong role order is caught."""

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = scale

    def forward(self, z1, z2):
        return ((self.scale * z1 - z2) ** 2).sum(1).mean()


class ParamsProbe(augplug.Objective):
    def forward(self, x, view_generator, view_params):
        return (view_generator.apply(x, view_params) ** 2).mean()


class NeedsSomethingOdd(augplug.Objective):
    def forward(self, z1, z2, teacher):
        return z1.sum()


class Offsets(augplug.FeatureAugmenter):
    """Sample i of k adds (i + 1) * step * partner (deterministic; uses the partner)."""

    needs_partner = True

    def __init__(self, step: float = 0.1):
        super().__init__()
        self.step = step
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, z, *, partner=None, k=None, generator=None):
        self.calls += 1
        n = 1 if k is None else k
        steps = torch.arange(1, n + 1, dtype=z.dtype).reshape(1, n, 1) * self.step
        out = z.unsqueeze(1) + steps * partner.unsqueeze(1)
        return out[:, 0] if k is None else out


class StandIns:
    @augplug.hookimpl
    def augplug_register_views(self, register):
        register("scale", Scale)

    @augplug.hookimpl
    def augplug_register_objective(self, register):
        register("pair_distance", PairDistance)
        register("params_probe", ParamsProbe)
        register("needs_odd", NeedsSomethingOdd)

    @augplug.hookimpl
    def augplug_register_features(self, register):
        register("offsets", Offsets)


@pytest.fixture(autouse=True)
def stand_ins():
    with registry.isolated() as reg:
        reg.register_plugin(StandIns(), "stand-ins")
        yield


BASE = {"views": {"name": "scale"}, "objective": {"name": "pair_distance"}}


@pytest.mark.parametrize(
    ("recipe", "path"),
    [
        ({**BASE, "view": {}}, r"^view: unknown recipe key"),
        ({"objective": BASE["objective"]}, r"^views: give exactly one"),
        ({**BASE, "branch_views": [{"name": "scale"}] * 2}, r"^views: give exactly one"),
        ({**BASE, "num_views": 1}, r"^num_views: expected an integer >= 2"),
        ({**BASE, "views": {"name": "scale", "hgih": 2.0}}, r"^views\.hgih: .*did you mean 'high'"),
        ({**BASE, "views": [{"name": "scale"}, {"nam": "scale"}]}, r"^views\[1\]\.name: expected"),
        ({**BASE, "objective": [{"name": "pair_distance"}, {"name": "pair_distance", "scael": 2}]},
         r"^objective\[1\]\.scael: .*did you mean 'scale'"),
        ({**BASE, "objective": [{"name": "pair_distance", "weight": "x"}]}, r"^objective\[0\]\.weight"),
        ({**BASE, "objective": [{"name": "pair_dist"}]}, r"^objective\[0\]\.name: .*did you mean 'pair_distance'"),
        ({**BASE, "objective": [{"name": "needs_odd"}]}, r"^objective\[0\]: its forward needs \['teacher'\]"),
        ({**BASE, "objective": []}, r"^objective: expected"),
        ({**BASE, "features": {"name": "offsets", "placement": "sideways"}}, r"^features\.placement"),
        ({**BASE, "features": {"name": "offsets", "samples": 0}}, r"^features\.samples"),
        ({**BASE, "features": {"name": "offsets", "reduction": "max"}}, r"^features\.reduction"),
        ({**BASE, "features": {"name": "offsets", "stepp": 1}}, r"^features\.stepp: .*did you mean 'step'"),
        ({**BASE, "num_views": 3, "features": {"name": "offsets"}}, r"^features: .*exactly two branches"),
        ({**BASE, "symmetric": True}, r"^symmetric: unknown recipe key \('symmetric' is now 'swap_branches'\)"),
        ({**BASE, "swap_branches": "yes"}, r"^swap_branches: expected"),
        ({**BASE, "target": {"momentm": 0.9}}, r"^target\.momentm: unknown option"),
        ({**BASE, "target": {"momentum": 0.99}}, r"^target\.total_steps: the cosine schedule needs"),
        ({**BASE, "target": {"schedule": "cosin", "total_steps": 9}}, r"^target\.schedule: .*did you mean 'cosine'"),
        ({**BASE, "target": 0.99}, r"^target: expected a dict"),
        ({**BASE, "features": {"name": "offsets", "enqueue": "all"}}, r"^features\.enqueue: expected one of"),
    ],
)  # fmt: skip
def test_validation_errors_point_at_the_key_path(recipe, path):
    with pytest.raises(augplug.RecipeError, match=path):
        augplug.build(recipe)


def linear(weight):
    return lambda v: v @ weight


@given(seed=st.integers(0, 2**31 - 1), swap=st.booleans(), weight=st.floats(0.1, 3.0))
def test_pipeline_without_features_matches_reference(seed, swap, weight):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(5, 4, generator=g, dtype=torch.float64)
    enc_w, proj_w, pred_w = (torch.randn(4, 4, generator=g, dtype=torch.float64) for _ in range(3))
    recipe = {**BASE, "objective": [{"name": "pair_distance", "scale": 2.0, "weight": weight}], "swap_branches": swap}
    pipe = augplug.build(recipe)
    out = pipe(x, linear(enc_w), linear(proj_w), linear(pred_w), generator=torch.Generator().manual_seed(seed))
    # Reference: redraw the same views and compute by hand.
    gen = torch.Generator().manual_seed(seed)
    f1 = 0.5 + torch.rand(5, generator=gen)
    f2 = 0.5 + torch.rand(5, generator=gen)
    z1, z2 = ((x * f[:, None]) @ enc_w @ proj_w for f in (f1, f2))

    def loss(a, b):
        return ((2.0 * (a @ pred_w) - b) ** 2).sum(1).mean()

    expected = (loss(z1, z2) + loss(z2, z1)) / 2 if swap else loss(z1, z2)
    torch.testing.assert_close(out.terms["pair_distance"].double(), expected)
    torch.testing.assert_close(out.loss.double(), weight * expected, rtol=1e-6, atol=1e-6)
    assert len(out.views) == 2


@pytest.mark.parametrize("placement", ["basic", "parallel", "pre_predictor", "post_predictor"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("keep_original", [True, False])
def test_feature_placements_match_reference(placement, reduction, keep_original):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 3, generator=g, dtype=torch.float64)
    enc_w, pred_w = torch.randn(3, 3, generator=g, dtype=torch.float64), torch.randn(3, 3, generator=g, dtype=torch.float64)
    k, step = 3, 0.25
    recipe = {
        **BASE,
        "features": {"name": "offsets", "step": step, "placement": placement, "samples": k,
                     "reduction": reduction, "keep_original": keep_original},
        "swap_branches": False,
    }  # fmt: skip
    pipe = augplug.build(recipe)
    predictor = None if placement == "basic" else linear(pred_w)
    out = pipe(x, linear(enc_w), predictor=predictor, generator=torch.Generator().manual_seed(9))
    gen = torch.Generator().manual_seed(9)
    z1, z2 = ((x * (0.5 + torch.rand(6, generator=gen))[:, None]) @ enc_w for _ in range(2))
    q = (lambda v: v) if predictor is None else predictor

    def aug(z, partner, i):
        return z + (i + 1) * step * partner

    def dist(a, b):
        return ((a - b) ** 2).sum(1).mean()

    # The augmented copy is always a target: A consumes the other view's projection z2.
    if placement in ("basic", "parallel"):
        fa = [dist(q(z1), aug(z2, z1, i)) for i in range(k)]
    elif placement == "pre_predictor":
        fa = [dist(q(z1), q(aug(z2, z1, i))) for i in range(k)]
    else:
        fa = [dist(q(z1), aug(q(z2), z1, i)) for i in range(k)]
    fa_loss = sum(fa) if reduction == "sum" else sum(fa) / k
    expected = fa_loss + (dist(q(z1), z2) if keep_original else 0)
    torch.testing.assert_close(out.loss.double(), expected, rtol=1e-6, atol=1e-8)
    assert int(pipe.state_dict()["features.calls"]) == 1  # stateful augmenters live in the state_dict


@pytest.mark.parametrize("placement", ["basic", "post_predictor"])
def test_symmetric_pipeline_augments_both_directions_in_one_call(placement):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(4, 3, generator=g, dtype=torch.float64)
    enc_w, pred_w = torch.randn(3, 3, generator=g, dtype=torch.float64), torch.randn(3, 3, generator=g, dtype=torch.float64)
    step = 0.5
    pipe = augplug.build({**BASE, "features": {"name": "offsets", "step": step, "placement": placement}})
    predictor = None if placement == "basic" else linear(pred_w)
    out = pipe(x, linear(enc_w), predictor=predictor, generator=torch.Generator().manual_seed(2))
    assert int(pipe.features.calls) == 1
    gen = torch.Generator().manual_seed(2)
    z = [(x * (0.5 + torch.rand(4, generator=gen))[:, None]) @ enc_w for _ in range(2)]
    q = (lambda v: v) if predictor is None else predictor

    def dist(a, b):
        return ((a - b) ** 2).sum(1).mean()

    def direction(a, b):
        target = z[b] if placement == "basic" else q(z[b])
        return dist(q(z[a]), z[b]) + dist(q(z[a]), target + step * z[a])

    torch.testing.assert_close(out.loss.double(), (direction(0, 1) + direction(1, 0)) / 2)


def test_stop_gradient_blocks_the_branch_fa_consumes():
    x = torch.randn(4, 3)
    for stop in (True, False):
        w = torch.randn(3, 3, requires_grad=True)
        pipe = augplug.build({**BASE, "swap_branches": False,
                              "features": {"name": "offsets", "stop_gradient": stop, "keep_original": False}})  # fmt: skip
        z_seen = []

        def encoder(v, w=w, z_seen=z_seen):
            z = v @ w
            z.retain_grad()
            z_seen.append(z)
            return z

        pipe(x, encoder).loss.backward()
        grad_branch2 = z_seen[0].grad[4:]
        assert bool((grad_branch2 == 0).all()) == stop


def test_predictor_required_or_refused_by_placement():
    pipe = augplug.build({**BASE, "features": {"name": "offsets", "placement": "parallel"}})
    with pytest.raises(ValueError, match="predictor: placement 'parallel' needs a predictor"):
        pipe(torch.randn(2, 3), lambda v: v)
    pipe = augplug.build({**BASE, "features": {"name": "offsets"}})
    with pytest.raises(ValueError, match="predictor: the 'basic' placement uses none"):
        pipe(torch.randn(2, 3), lambda v: v, predictor=lambda v: v)


def test_objectives_receive_view_params_by_name():
    pipe = augplug.build({**BASE, "objective": [{"name": "params_probe"}]})
    x = torch.randn(5, 2)
    out = pipe(x, lambda v: v, generator=torch.Generator().manual_seed(1))
    expected = (out.views[0] ** 2).mean()  # branch 0's view replayed from its params
    torch.testing.assert_close(out.loss, expected)


def test_branch_views_and_composition_are_separate_modules():
    pipe = augplug.build({
        "branch_views": [{"name": "scale"}, [{"name": "scale", "low": 2.0, "high": 2.0}, {"name": "scale"}]],
        "objective": {"name": "pair_distance"},
    })  # fmt: skip
    assert len(pipe.views) == 2 and isinstance(pipe.views[1], augplug.ComposedViews)
    shared = augplug.build(BASE)
    assert len(shared.views) == 1 and shared.branch_index == [0, 0]


def test_load_recipe_reads_toml_and_json(tmp_path):
    recipe = {"views": {"name": "scale", "low": 0.9}, "objective": [{"name": "pair_distance", "weight": 0.5}]}
    (tmp_path / "r.json").write_text(json.dumps(recipe))
    (tmp_path / "r.toml").write_text(
        '[views]\nname = "scale"\nlow = 0.9\n\n[[objective]]\nname = "pair_distance"\nweight = 0.5\n'
    )
    assert augplug.load_recipe(tmp_path / "r.json") == recipe
    assert augplug.load_recipe(tmp_path / "r.toml") == recipe
    assert isinstance(augplug.build(augplug.load_recipe(tmp_path / "r.toml")), augplug.Pipeline)
    with pytest.raises(augplug.RecipeError, match="path: expected a .toml or .json"):
        (tmp_path / "r.yaml").write_text("")
        augplug.load_recipe(tmp_path / "r.yaml")


class MultiViewSpread(augplug.Objective):
    """Pairwise when given z2, multi-view (B, V, D) otherwise; records what it was given."""

    swap_invariant = True

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, z1, z2=None):
        self.seen.append(tuple(z1.shape) if z2 is None else (tuple(z1.shape), tuple(z2.shape)))
        z = z1 if z2 is None else torch.stack([z1, z2], 1)
        return z.var(1).sum()


def test_multi_view_objective_gets_every_view_and_symmetric_ones_run_once():
    reg = registry.get_registry()

    class Plugin:
        @augplug.hookimpl
        def augplug_register_objective(self, register):
            register("spread", MultiViewSpread)

    reg.register_plugin(Plugin(), "spread-plugin")
    x = torch.randn(3, 2)
    pipe = augplug.build({"views": {"name": "scale"}, "num_views": 4, "objective": {"name": "spread"}})
    out = pipe(x, lambda v: v, generator=torch.Generator().manual_seed(0))
    assert pipe.terms[0].seen == [(3, 4, 2)]
    torch.testing.assert_close(out.loss, torch.stack(out.views, 1).var(1).sum())
    pipe = augplug.build({"views": {"name": "scale"}, "objective": {"name": "spread"}})
    pipe(x, lambda v: v)
    assert pipe.terms[0].seen == [((3, 2), (3, 2))]  # once: the swapped pair would be equal


def test_views_made_beforehand_give_the_same_step():
    pipe = augplug.build({**BASE, "objective": [{"name": "pair_distance"}, {"name": "params_probe"}]})
    x = torch.randn(5, 3)
    own = pipe(x, lambda v: v, generator=torch.Generator().manual_seed(4))
    views, params = pipe.make_views(x, generator=torch.Generator().manual_seed(4))
    given = pipe(x, lambda v: v, views=views, view_params=params[0])
    torch.testing.assert_close(given.loss, own.loss)
    with pytest.raises(ValueError, match="^views: expected 2 views"):
        pipe(x, lambda v: v, views=views[:1], view_params=params[0])
    with pytest.raises(ValueError, match="^view_params: "):
        pipe(x, lambda v: v, views=views)
    with pytest.raises(ValueError, match=r"^views\[1\]: expected the batch size"):
        pipe(x, lambda v: v, views=[views[0], views[1][:2]], view_params=params[0])


def test_a_queue_objective_must_run_once_per_step():
    with registry.isolated():
        moco = {"views": {"name": "simclr", "size": 8}, "objective": {"name": "moco", "dim": 4, "queue_size": 8}}
        with pytest.raises(augplug.RecipeError, match=r"^objective\[0\]: 'moco' .*swap_branches"):
            augplug.build(moco)
        with pytest.raises(augplug.RecipeError, match=r"^objective\[0\]: 'moco' .*feature augmentation"):
            augplug.build({**moco, "swap_branches": False, "features": {"name": "noise"}})
        augplug.build({**moco, "swap_branches": False})  # MoCo v2: one direction, one call
        augplug.build({**moco, "objective": {"name": "moco", "queue_size": 0}})  # v3: no queue
