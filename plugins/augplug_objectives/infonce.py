"""InfoNCE / NT-Xent computed in row tiles, never materialising the N x N similarity matrix.

The loss follows SimCLR (Chen et al. 2020, "A Simple Framework for Contrastive Learning
of Visual Representations"): embeddings are L2-normalised, similarities are cosines over a
temperature, each embedding is an anchor whose positives are the other views of its own
sample and whose negatives are every other embedding in the batch (its own similarity is
masked out). With V views, each anchor averages the log-likelihood of its V - 1 positives
(the multi-view form of SupCon, Khosla et al. 2020, with instance labels), so V = 2 is NT-Xent.

For anchor i with keys k (all embeddings but i) and positives P(i)::

    loss_i = logsumexp_k(s_ik) - mean_{p in P(i)} s_ip,      s_ik = <u_i, u_k> / temperature

The log-sum-exp is the only part that touches all pairs. It runs over row tiles with an
online reduction and a custom backward that recomputes each tile, so memory is
O(N * d + tile * N). The positive term needs no pairwise matrix at all: the positives of
an anchor are the other views of its sample, so their summed similarity is
``<u_i, sum_v u_v> - <u_i, u_i>``, which autograd differentiates in O(N * d).

``kernel="triton"`` swaps the tiled torch log-sum-exp for fused Triton kernels
(:mod:`augplug_objectives.fused_lse`) that never write a similarity to memory.
"""

from __future__ import annotations

import torch

from augplug import distributed
from augplug.checks import (
    accumulation_dtype,
    check_batch,
    check_bool,
    check_choice,
    check_int,
    check_positive,
    check_same_batch,
    check_same_device,
)
from augplug.components import Objective
from augplug.ops import l2_normalize

__all__ = ["InfoNCE", "info_nce", "similarity_logsumexp"]

#: Elements (float32) of one tile of similarities when ``tile_size`` is left to the loss:
#: 2**25 floats = 128 MiB, big enough that each tile is a large, efficient matmul.
_TILE_ELEMENTS = 2**25

_HALF_DTYPES = (torch.bfloat16, torch.float16)


# torch.mm(half, half, out_dtype=torch.float32) exists on CUDA from torch 2.8 on.
_MM_HAS_OUT_DTYPE = tuple(int(part) for part in torch.__version__.split(".")[:2]) >= (2, 8)


def _keeps_half_storage(x: torch.Tensor) -> bool:
    """Whether normalised embeddings stay in bf16/fp16 for tensor-core matmuls (CUDA only)."""
    return x.is_cuda and x.dtype in _HALF_DTYPES and _MM_HAS_OUT_DTYPE


def _mm(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``a @ b`` accumulated and returned in ``dtype`` (float32 for half storage)."""
    if a.dtype == dtype:
        return torch.mm(a, b)
    # Half storage: a tensor-core matmul with a float32 result, so no similarity is
    # rounded to 8 (bf16) or 11 (fp16) bits before the exponential.
    return torch.mm(a, b, out_dtype=dtype)


def _row_tiles(rows: int, tile_size: int):
    for start in range(0, rows, tile_size):
        yield start, min(start + tile_size, rows)


def _masked_scores(
    scaled_anchors, keys, start, stop, self_offset, dtype, block=1, key_bias=None
) -> torch.Tensor:
    """Similarities of anchor rows [start, stop) to every key, each anchor's own key at -inf.

    With ``block > 1`` every key of the anchor's block of ``block`` rows is left out (its
    sample's views in sample-major rows: the decoupled loss drops the positives too); with
    ``block == 0`` none is (keys that are no anchors: a queue). ``key_bias`` (N,) is added
    to every row.
    """
    scores = _mm(scaled_anchors[start:stop], keys.T, dtype)
    if key_bias is not None:
        scores += key_bias
    first = self_offset + start
    if block == 0:
        pass
    elif block == 1:
        # Anchor r is key r + self_offset: a diagonal of the tile, written without a mask tensor.
        scores[:, first : first + (stop - start)].diagonal().fill_(float("-inf"))
    else:
        # Seen as (tile, samples, block), anchor r's keys are one row of the middle axis.
        rows = torch.arange(stop - start, device=scores.device)
        scores.view(stop - start, -1, block)[rows, (rows + first) // block] = float("-inf")
    return scores


def relative_weights(weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(weights / norm, norm)`` with norm the largest magnitude (at least the dtype's tiny).

    Weighted anchors feed a matmul in the storage dtype. A mean over a large batch makes the
    upstream weights tiny (fp16 subnormals), so they are used relative to their largest
    magnitude, and the norm multiplies the float32 result instead.
    """
    norm = weights.abs().amax().clamp_min(torch.finfo(weights.dtype).tiny)
    return weights / norm, norm


class _SimilarityLogSumExp(torch.autograd.Function):
    """Row-wise ``logsumexp_{k != i} <a_i, k_k> * scale`` over row tiles; see :func:`similarity_logsumexp`."""

    @staticmethod
    def forward(ctx, anchors, keys, scale, tile_size, self_offset, block, key_bias):
        dtype = accumulation_dtype(anchors.dtype)
        # Scaling the (N, d) anchors instead of each (tile, N) block of scores saves a pass
        # over the large tensor.
        scaled = anchors * scale
        lse = torch.empty(anchors.shape[0], dtype=dtype, device=anchors.device)
        for start, stop in _row_tiles(anchors.shape[0], tile_size):
            scores = _masked_scores(scaled, keys, start, stop, self_offset, dtype, block, key_bias)
            # torch.logsumexp would allocate a second tile for exp(scores - max); in place,
            # one tile is the whole working set. The clamp keeps a row with no key but its
            # own (max -inf) at lse = -inf instead of NaN.
            row_max = scores.amax(dim=1, keepdim=True).clamp_min_(torch.finfo(dtype).min)
            lse[start:stop] = scores.sub_(row_max).exp_().sum(dim=1).log_().add_(row_max.squeeze(1))
        ctx.save_for_backward(anchors, keys, lse, key_bias)
        ctx.scale, ctx.tile_size, ctx.self_offset, ctx.block = scale, tile_size, self_offset, block
        return lse

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_lse):
        anchors, keys, lse, key_bias = ctx.saved_tensors
        want_keys = ctx.needs_input_grad[1]  # a queue's keys take none: skip that matmul
        dtype = lse.dtype
        scaled = anchors * ctx.scale
        # d lse_i / d a_i = scale * sum_k p_ik k_k and d lse_i / d k_k = scale * p_ik a_i, with
        # p the masked softmax. The upstream gradient and the scale multiply (tile, d) blocks,
        # never the (tile, N) probabilities.
        row_weight = (grad_lse.to(dtype) * ctx.scale)[:, None]
        relative_weight, weight_norm = relative_weights(row_weight)
        grad_anchors = torch.empty(anchors.shape, dtype=dtype, device=anchors.device)
        grad_keys = torch.zeros(keys.shape, dtype=dtype, device=keys.device) if want_keys else None
        for start, stop in _row_tiles(anchors.shape[0], ctx.tile_size):
            probs = _masked_scores(
                scaled, keys, start, stop, ctx.self_offset, dtype, ctx.block, key_bias
            )
            # With half storage the probabilities are rounded to it for the two tensor-core
            # matmuls (as flash attention does); elsewhere this is a no-op.
            probs = probs.sub_(lse[start:stop, None]).exp_().to(keys.dtype)
            grad_anchors[start:stop] = _mm(probs, keys, dtype).mul_(row_weight[start:stop])
            if not want_keys:
                continue
            weighted_anchors = (anchors[start:stop].to(dtype) * relative_weight[start:stop]).to(
                anchors.dtype
            )
            grad_keys += _mm(probs.T, weighted_anchors, dtype)
        grad_keys = grad_keys.mul_(weight_norm).to(keys.dtype) if want_keys else None
        return grad_anchors.to(anchors.dtype), grad_keys, None, None, None, None, None


def similarity_logsumexp(
    anchors: torch.Tensor,
    keys: torch.Tensor,
    *,
    scale: float,
    tile_size: int | None = None,
    self_offset: int = 0,
    exclude_block: int = 1,
    key_bias: torch.Tensor | None = None,
    kernel: str = "torch",
) -> torch.Tensor:
    """``lse_i = log sum_{k != i + self_offset} exp(scale * <anchors_i, keys_k>)`` for every anchor.

    Anchor i is key ``i + self_offset`` and is left out of its own sum; with
    ``exclude_block=V`` so is every key of its block of V rows (``self_offset`` a multiple
    of V; the decoupled loss, :mod:`augplug_objectives.dcl`, leaves out all of a sample's
    views); with ``exclude_block=0`` no key is left out (keys that are not the anchors, such
    as MoCo's queue). ``key_bias`` (len(keys),), no gradient, is added to every anchor's
    scaled score of each key (a very negative value drops a key: MoCo's empty slots). With
    ``kernel="torch"`` it is computed over tiles of ``tile_size`` anchor rows (``None``: about
    32M similarities per tile) and the backward recomputes each tile, so neither pass holds
    more than ``tile_size x len(keys)`` similarities. ``kernel="triton"`` runs fused kernels
    that hold none (CUDA; float32/bf16/fp16; at most 256 features; ``tile_size`` must be
    ``None``). Returns float32 (float64 for float64 inputs).
    """
    kernel = _check_kernel(kernel, tile_size)
    if kernel == "triton":
        if key_bias is not None:
            raise ValueError("key_bias: only kernel='torch' takes one, got a tensor")
        if exclude_block != 1:
            raise ValueError(
                f"exclude_block: only kernel='torch' leaves out blocks, got {exclude_block!r}"
            )
        from augplug_objectives.fused_lse import fused_similarity_logsumexp

        return fused_similarity_logsumexp(anchors, keys, scale=scale, self_offset=self_offset)
    if tile_size is None:
        tile_size = max(1, _TILE_ELEMENTS // keys.shape[0])
    # Autocast would turn the float32 tile matmuls into bf16/fp16 ones (whose scores then
    # overflow the float32 running maximum); the function manages its own precision.
    with torch.autocast(anchors.device.type, enabled=False):
        return _SimilarityLogSumExp.apply(
            anchors, keys, float(scale), int(tile_size), int(self_offset), int(exclude_block),
            key_bias,
        )  # fmt: skip


_KERNELS = ("torch", "triton")


def _check_kernel(kernel, tile_size) -> str:
    check_choice(kernel, "kernel", _KERNELS)
    if kernel == "triton" and tile_size is not None:
        raise ValueError(
            f"tile_size: only used with kernel='torch'; leave it None with kernel='triton', got {tile_size!r}"
        )
    return kernel


def _positive_similarity(unit: torch.Tensor) -> torch.Tensor:
    """Mean cosine of each embedding to the other views of its sample: (B, V, D) -> (B, V)."""
    views = unit.shape[1]
    own = (unit * unit).sum(-1)
    with_all = (unit * unit.sum(1, keepdim=True)).sum(-1)
    return (with_all - own) / (views - 1)


def _check_views(z1: torch.Tensor, z2: torch.Tensor | None) -> torch.Tensor:
    """Validate the inputs and return all views as (B, V, D)."""
    if z2 is None:
        check_batch(z1, "z1", ndim=3, layout="(B, V, D) with V >= 2 views, or (B, D) with z2")
        if z1.shape[1] < 2:
            raise ValueError(
                f"z1: expected at least 2 views in (B, V, D), got shape {tuple(z1.shape)}"
            )
        return z1
    check_pair(z1, z2)
    return torch.stack((z1, z2), dim=1)


def check_pair(z1: torch.Tensor, z2: torch.Tensor) -> None:
    """Check two (B, D) embeddings of one batch: same size, width, dtype and device."""
    check_batch(z1, "z1", ndim=2, layout="(B, D) when z2 is given")
    check_batch(z2, "z2", ndim=2, layout="(B, D)")
    check_same_batch("z1", z1, "z2", z2)
    check_same_device("z1", z1, "z2", z2)
    if z1.shape[1] != z2.shape[1]:
        raise ValueError(
            f"z2: expected {z1.shape[1]} features (as z1), got shape {tuple(z2.shape)}"
        )
    if z1.dtype != z2.dtype:
        raise TypeError(f"z2: expected dtype {z1.dtype} (as z1), got {z2.dtype}")


def _check_options(temperature, tile_size, gather_distributed, local_anchors, kernel) -> float:
    temperature = check_positive(temperature, "temperature")
    if tile_size is not None:
        check_int(tile_size, "tile_size", minimum=1)
    _check_kernel(kernel, tile_size)
    check_bool(gather_distributed, "gather_distributed")
    check_bool(local_anchors, "local_anchors")
    if local_anchors and not gather_distributed:
        raise ValueError(
            "local_anchors: only meaningful with gather_distributed=True, got gather_distributed=False"
        )
    return temperature


def info_nce(
    z1: torch.Tensor,
    z2: torch.Tensor | None = None,
    *,
    temperature: float = 0.1,
    tile_size: int | None = None,
    gather_distributed: bool = False,
    local_anchors: bool = False,
    kernel: str = "torch",
) -> torch.Tensor:
    """Functional form of :class:`InfoNCE` (same arguments)."""
    temperature = _check_options(temperature, tile_size, gather_distributed, local_anchors, kernel)
    views = _check_views(z1, z2)
    # Under autocast (Lightning's "bf16-mixed", Accelerate's mixed_precision) matmuls would
    # run in the half dtype even on float32 operands; the loss manages its own precision.
    with torch.autocast(views.device.type, enabled=False):
        return _info_nce(views, temperature, tile_size, gather_distributed, local_anchors, kernel)


def _info_nce(views, temperature, tile_size, gather_distributed, local_anchors, kernel):
    num_views = views.shape[1]
    dtype = accumulation_dtype(views.dtype)
    unit = l2_normalize(views.to(dtype))  # exact at any magnitude, unlike F.normalize
    if _keeps_half_storage(views):
        unit = unit.to(views.dtype)  # products are still accumulated and returned in float32

    anchors = keys = unit
    self_offset = 0
    local_weight = None
    if gather_distributed and distributed.is_distributed():
        # Every rank's embeddings become keys; positives stay on their own rank, since all
        # views of a sample live there. Rows are sample-major, so this rank's rows are one
        # contiguous block of the keys, after the lower ranks' samples (ranks may hold
        # different batch sizes: the last batch of an epoch).
        sizes = distributed.gather_sizes(unit)
        keys = distributed.all_gather_with_grad(unit, sizes=sizes)
        if local_anchors:
            self_offset = sum(sizes[: distributed.rank()]) * num_views
            # Each rank's share of the whole batch's mean: the ranks' losses then average
            # to the loss of the concatenated batch even when their sizes differ.
            local_weight = distributed.world_size() / (sum(sizes) * num_views)
        else:
            anchors = keys

    lse = similarity_logsumexp(
        anchors.reshape(-1, anchors.shape[-1]),
        keys.reshape(-1, keys.shape[-1]),
        scale=1.0 / temperature,
        tile_size=tile_size,
        self_offset=self_offset,
        kernel=kernel,
    )
    positive = _positive_similarity(anchors.to(dtype)).reshape(-1) / temperature
    if local_weight is not None:
        return (lse - positive).sum() * local_weight
    return (lse - positive).mean()


class InfoNCE(Objective):
    """NT-Xent / InfoNCE contrastive loss (SimCLR), tiled and ``torch.distributed``-aware.

    ``forward(z1, z2=None)``: two views as (B, D) each, or all views at once as z1 of shape
    (B, V, D), every other view of the same sample a positive. Symmetric: every embedding
    is an anchor and the loss is the mean over all B * V anchors. Returns a float32 scalar
    (float64 for float64 inputs); bf16/fp16 inputs are accumulated in float32.

    Args:
        temperature: divides the cosine similarities; 0.1 by default (SimCLR's best
            value at large batch is 0.1, Table 5 of Chen et al. 2020).
        tile_size: anchor rows per tile; memory is O(tile_size * N) on top of the
            embeddings. ``None`` picks rows so one tile holds about 32M floats (128 MiB).
        gather_distributed: under ``torch.distributed``, use every rank's embeddings as
            keys (differentiable all-gather; ranks may hold different batch sizes, the
            feature dimension and dtype must match); a no-op on one process. DDP's gradient average then gives exactly the gradient of the
            loss on the concatenated batch: do not rescale the loss by the world size.
        local_anchors: with ``gather_distributed``, only this rank's embeddings are anchors
            (scored against all ranks' keys), as open_clip's ``local_loss`` does: each rank
            computes 1/world_size of the loss, and DDP's gradient average still gives the
            gradient of the whole batch's loss.
        kernel: ``"torch"`` (default; any device and dtype) or ``"triton"``: fused Triton
            kernels that never write a similarity to memory (CUDA tensors, float32/bf16/fp16,
            at most 256 features, ``tile_size`` left ``None``). Opt-in until measured on a
            GPU against the torch path (benchmarks/RESULTS.md).
    """

    #: L(z1, z2) == L(z2, z1): a recipe Pipeline need not also evaluate the swapped pair.
    swap_invariant = True

    def __init__(
        self,
        temperature: float = 0.1,
        tile_size: int | None = None,
        gather_distributed: bool = False,
        local_anchors: bool = False,
        kernel: str = "torch",
    ):
        super().__init__()
        self.temperature = _check_options(
            temperature, tile_size, gather_distributed, local_anchors, kernel
        )
        self.tile_size = tile_size
        self.gather_distributed = gather_distributed
        self.local_anchors = local_anchors
        self.kernel = kernel

    def forward(self, z1: torch.Tensor, z2: torch.Tensor | None = None) -> torch.Tensor:
        return info_nce(
            z1,
            z2,
            temperature=self.temperature,
            tile_size=self.tile_size,
            gather_distributed=self.gather_distributed,
            local_anchors=self.local_anchors,
            kernel=self.kernel,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, tile_size={self.tile_size}, "
            f"gather_distributed={self.gather_distributed}, local_anchors={self.local_anchors}, "
            f"kernel={self.kernel!r}"
        )
