"""Any ``kornia.augmentation`` pipeline as a seeded, replayable :class:`augplug.ParametricViewGenerator`.

Kornia draws its parameters from the global RNG and takes no ``torch.Generator``. The adapter
draws one seed from the generator it is given and runs Kornia's own parameter sampling
(``forward_parameters``, op by op, on the shape each op sees) inside
``torch.random.fork_rng`` seeded with it: equal generators give equal views, and the global
RNG is left as it was. The parameters are flattened into :class:`augplug.Params` under
``"<op index>.<Kornia's name>"`` (as :class:`augplug.ComposedViews` names its stages), one row
per sample, so they survive ``torch.save``, ``.to(device)`` and ``index``; ``apply`` hands them
back to each op (``op(x, params=...)``), which replays the view exactly.

Kornia is imported when a :class:`KorniaViews` is first built, never at plugin discovery:
it is needed by this adapter only (the fused views of ``augplug_image`` are plain torch).
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import inspect
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from augplug import rng
from augplug.checks import FLOAT_DTYPES, check_choice, check_tensor
from augplug.components import ParametricViewGenerator, Params

__all__ = ["CONTINUOUS_PARAMS", "KorniaViews", "kornia_ops"]

#: Per Kornia op, the parameters ``apply`` is differentiable in, each confirmed by a
#: finite-difference check in ``tests/kornia_adapter``; an op not listed replays only. Left out
#: because autograd disagrees with finite differences (Kornia 0.9): RandomHue's
#: ``hue_factor`` and RandomResizedCrop's ``src`` (even with ``cropping_mode="resample"``).
CONTINUOUS_PARAMS: dict[str, tuple[str, ...]] = {
    "RandomAffine": ("translations", "scale", "angle", "shear_x", "shear_y"),
    "RandomRotation": ("degrees",),
    "RandomShear": ("shear_x", "shear_y"),
    "RandomTranslate": ("translate_x", "translate_y"),
    "RandomPerspective": ("end_points",),
    "ColorJitter": ("brightness_factor", "contrast_factor", "saturation_factor", "hue_factor"),
    "ColorJiggle": ("brightness_factor", "contrast_factor", "saturation_factor", "hue_factor"),
    "RandomBrightness": ("brightness_factor",),
    "RandomContrast": ("contrast_factor",),
    "RandomSaturation": ("saturation_factor",),
    "RandomGamma": ("gamma_factor",),
    "RandomGaussianBlur": ("sigma",),
    "RandomSharpness": ("sharpness",),
}

# Rebuilt from the shape each op sees at apply time (an ``index``-ed sub-batch has a new
# batch size), so it is not stored.
_INPUT_SHAPE = "forward_input_shape"
_SEED_HIGH = 2**62


@functools.cache
def kornia_ops() -> dict[str, type]:
    """The 2-D image ops of ``kornia.augmentation`` by class name (imports Kornia)."""
    import kornia.augmentation as K

    return {
        name: cls
        for name, cls in vars(K).items()
        if isinstance(cls, type)
        and issubclass(cls, K.AugmentationBase2D)
        and not issubclass(cls, K.MixAugmentationBaseV2)  # these need labels, not one image batch
        and not inspect.isabstract(cls)
        and not name.endswith("Base2D")
    }


def _tuples(value: Any) -> Any:
    # Recipes come from JSON / TOML, whose arrays are lists; Kornia's checks expect tuples.
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def _op_from_spec(spec: Mapping[str, Any], path: str) -> nn.Module:
    if "op" not in spec:
        raise ValueError(
            f"{path}: expected a dict with an 'op' key naming a kornia.augmentation class, got {dict(spec)!r}"
        )
    ops = kornia_ops()
    name = check_choice(spec["op"], f"{path}.op", sorted(ops))
    cls = ops[name]
    signature = inspect.signature(cls)
    accepted = [
        p.name
        for p in signature.parameters.values()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    kwargs = {k: _tuples(v) for k, v in spec.items() if k != "op"}
    for key in kwargs:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"{path}: {name} has no argument {key!r}{hint} (accepted: {', '.join(accepted)})"
            )
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, AssertionError, RuntimeError) as exc:
        raise ValueError(
            f"{path}: {name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) failed: {exc}"
        ) from exc


def _flatten(module: nn.Module, path: str) -> list[nn.Module]:
    import kornia.augmentation as K

    if isinstance(module, K.ImageSequential):  # AugmentationSequential is one too
        if getattr(module, "random_apply", False):
            raise ValueError(
                f"{path}: random_apply picks a different op list per call and cannot be replayed; got {module!r}"
            )
        data_keys = getattr(module, "data_keys", None)
        if data_keys is not None and [
            str(getattr(k, "name", k)).lower() for k in data_keys
        ] not in (["input"], ["image"]):
            raise ValueError(
                f"{path}: expected an image-only pipeline (data_keys=['input']), got data_keys={data_keys!r}"
            )
        return [
            op
            for i, child in enumerate(module.children())
            for op in _flatten(child, f"{path}[{i}]")
        ]
    if not isinstance(module, tuple(kornia_ops().values())):
        raise TypeError(
            f"{path}: expected a kornia.augmentation 2-D op or AugmentationSequential, got {type(module).__name__}"
        )
    return [module]


def _build(ops: object) -> list[nn.Module]:
    if isinstance(ops, nn.Module):
        return _flatten(ops, "ops")
    if isinstance(ops, (str, bytes, Mapping)) or not isinstance(ops, Sequence) or len(ops) == 0:
        raise TypeError(
            "ops: expected a non-empty list of {'op': <kornia.augmentation class name>, ...} dicts "
            f"or Kornia modules, or one Kornia module, got {ops!r}"
        )
    built: list[nn.Module] = []
    for i, entry in enumerate(ops):
        if isinstance(entry, Mapping):
            built.append(_op_from_spec(entry, f"ops[{i}]"))
        elif isinstance(entry, nn.Module):
            built += _flatten(entry, f"ops[{i}]")
        else:
            raise TypeError(
                f"ops[{i}]: expected a dict {{'op': ..., **kwargs}} or a Kornia module, got {type(entry).__name__}"
            )
    return built


def _forked(op: nn.Module) -> contextlib.AbstractContextManager:
    """The global RNG that ``op`` samples from (the CPU's, or its GPU's), restored on exit."""
    device = torch.device(getattr(op, "device", "cpu"))
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def _drawn_continuous(op: nn.Module) -> tuple[str, ...]:
    """The op's :data:`CONTINUOUS_PARAMS` that it actually draws at random.

    A range of one value (ColorJitter's default ``contrast=0``, RandomAffine's ``scale=None``)
    is a constant that Kornia may skip altogether, so it is no parameter to differentiate.
    Two draws for a small batch (in a forked RNG) tell them apart.
    """
    names = CONTINUOUS_PARAMS.get(type(op).__name__, ())
    if not names:
        return ()
    with _forked(op):
        first, second = (op.forward_parameters((4, 3, 32, 32)) for _ in range(2))
    return tuple(n for n in names if not torch.equal(first[n], second[n]))


@contextlib.contextmanager
def _seeded(device: torch.device, generator: torch.Generator | None) -> Iterator[None]:
    """Run Kornia's global-RNG draws from a seed taken from ``generator``, restoring the global RNG after."""
    if generator is None:  # no generator: Kornia's usual global-RNG draws, as for any module
        yield
        return
    # One integer from the generator; reading it is a host sync on a CUDA generator (Kornia's
    # own replay indexes by its probability mask, so this path is never sync-free anyway).
    seed = int(rng.randint((), 0, _SEED_HIGH, device=device, generator=generator))
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        for d in cuda:  # an op moved to the GPU samples there
            with torch.cuda.device(d):
                torch.cuda.manual_seed(seed)
        yield


class KorniaViews(ParametricViewGenerator):
    """Kornia augmentation ops as a seeded, replayable parametric view generator.

    The ops run in the order given, each with Kornia's own semantics and defaults (the adapter
    adds nothing to the pixels); see the module docstring for how randomness and parameters
    are handled. ``continuous_params`` are the ``"<index>.<name>"`` entries of ops listed in
    :data:`CONTINUOUS_PARAMS` that the op draws at random (not a range of one value), the
    ones the invariance regulariser may differentiate.

    Inputs: (B, C, H, W) float32 / float64 in [0, 1], bfloat16 / float16 (computed in float32,
    rounded once at the end) or uint8 (``x / 255``, float32 out).

    Args:
        ops: a list of ``{"op": <kornia.augmentation class name>, **its keyword arguments}``
            dicts (the recipe form) and/or Kornia modules, or one Kornia module or
            ``AugmentationSequential`` (flattened into its ops; ``random_apply`` and non-image
            ``data_keys`` are refused, since they cannot be replayed per batch).

    Examples:
        >>> views = augplug.create("views", "kornia", ops=[
        ...     {"op": "RandomAffine", "degrees": 15, "p": 0.5}, {"op": "RandomErasing"}])
        >>> params = views.sample(x, torch.Generator().manual_seed(0))
        >>> torch.equal(views.apply(x, params), views(x, generator=torch.Generator().manual_seed(0)))
        True
        >>> KorniaViews(kornia.augmentation.AugmentationSequential(K.RandomSharpness(), K.RandomEqualize()))
    """

    input_layout = "(B, C, H, W)"
    #: A small instance for the conformance kit (``augplug.testing``): ``ops`` has no default.
    example_kwargs: ClassVar[dict[str, Any]] = {
        "ops": [{"op": "RandomAffine", "degrees": 10}, {"op": "RandomErasing"}]
    }

    def __init__(self, ops: object):
        super().__init__()
        self.ops = nn.ModuleList(_build(ops))
        self.continuous_params = tuple(
            f"{i}.{name}" for i, op in enumerate(self.ops) for name in _drawn_continuous(op)
        )
        self._batch_wide: dict[int, frozenset[str]] = {}

    def _check_input(self, x: object) -> torch.Tensor:
        return check_tensor(
            x, "x", ndim=4, dtypes=(*FLOAT_DTYPES, torch.uint8), layout=self.input_layout
        )

    def _batch_wide_keys(self, index: int, shape: tuple[int, ...]) -> frozenset[str]:
        """Kornia entries that are one value for the whole batch (e.g. ColorJiggle's ``order``).

        Found once per op by drawing for batches of 1 and 2 (in a forked RNG, so the caller's
        stream is unchanged): a per-sample entry's first dimension follows the batch size.
        """
        if index not in self._batch_wide:
            op = self.ops[index]
            with _forked(op):
                one, two = (op.forward_parameters((b, *shape[1:])) for b in (1, 2))
            self._batch_wide[index] = frozenset(
                k
                for k in one
                if k != _INPUT_SHAPE
                and not (
                    one[k].ndim > 0
                    and two[k].ndim > 0
                    and one[k].shape[0] == 1
                    and two[k].shape[0] == 2
                )
            )
        return self._batch_wide[index]

    def sample(self, x: torch.Tensor, generator: torch.Generator | None = None) -> Params:
        """Kornia's parameters for every op, drawn from ``generator`` (the global RNG untouched)."""
        x = self._check_input(x)
        shape = tuple(x.shape)
        batch = shape[0]
        wide = [self._batch_wide_keys(i, shape) for i in range(len(self.ops))]
        params = Params()
        with _seeded(x.device, generator):
            for i, op in enumerate(self.ops):
                drawn = op.forward_parameters(shape)
                for key, value in drawn.items():
                    if key == _INPUT_SHAPE:
                        continue
                    if key in wide[i]:  # one row per sample, so that index / batch_size work
                        value = value.unsqueeze(0).expand(batch, *value.shape)
                    params[f"{i}.{key}"] = value
                if "output_size" in drawn:  # a crop or resize: later ops draw for its output
                    shape = (batch, shape[1], *drawn["output_size"][0].tolist())
        return params

    def apply(self, x: torch.Tensor, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Replay the view ``params`` (from :meth:`sample`) with Kornia's ops; differentiable where Kornia is."""
        x = self._check_input(x)
        batch = x.shape[0]
        for key, value in params.items():
            if not isinstance(value, torch.Tensor) or value.ndim == 0 or value.shape[0] != batch:
                got = (
                    tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                )
                raise ValueError(
                    f"params[{key!r}]: expected a tensor with batch size {batch}, got {got}"
                )
        out_dtype = torch.float32 if x.dtype == torch.uint8 else x.dtype
        if x.dtype == torch.uint8:
            out = x.to(torch.float32) / 255
        elif x.dtype in (torch.float16, torch.bfloat16):
            out = x.to(torch.float32)  # Kornia's kernels are float32; one rounding at the end
        else:
            out = x
        for i, op in enumerate(self.ops):
            prefix = f"{i}."
            op_params = {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}
            if not op_params:
                raise ValueError(
                    f"params: no entries for ops[{i}] ({type(op).__name__}); expected the "
                    f"'{prefix}*' entries of sample(), got {sorted(params)}"
                )
            for key in self._batch_wide_keys(i, tuple(out.shape)) & op_params.keys():
                op_params[key] = op_params[key][0]
            op_params[_INPUT_SHAPE] = torch.tensor(out.shape, dtype=torch.long)
            try:
                out = op(out, params=op_params)
            except (ValueError, TypeError, RuntimeError, AssertionError) as exc:
                # Kornia's own checks do not say which argument or op; these do.
                raise ValueError(
                    f"x: ops[{i}] ({type(op).__name__}) refused a batch of shape {tuple(out.shape)} "
                    f"and dtype {out.dtype}: {exc}"
                ) from exc
        return out.to(out_dtype)
