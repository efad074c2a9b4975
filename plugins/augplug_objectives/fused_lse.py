"""Fused Triton kernels for the similarity log-sum-exp at the heart of InfoNCE.

The torch path (:func:`augplug_objectives.infonce.similarity_logsumexp`) writes each
(tile, N) block of similarities to memory and reads it back several times (max, exp, sum,
and again in the backward). These kernels keep each block in registers instead, as flash
attention does (Dao et al. 2022): the forward streams key blocks past a block of anchors
with an online log-sum-exp; the backward recomputes the probabilities block by block, once
per anchor block for the anchors' gradient and once per key block for the keys' gradient,
so neither pass holds more than O((N + M) * d) memory and no N x M tensor exists at all.

Scores are kept in base 2 (``exp2``/``log2``, the scale folded into one multiply), so each
exponential is a single hardware instruction.

Importing this module imports ``triton``; :mod:`augplug_objectives.infonce` imports it
only when ``kernel="triton"`` is asked for. On CPU tensors the kernels run only under
Triton's interpreter, which exists for testing: ``TRITON_INTERPRET=1`` set before ``triton``
is first imported.
"""

from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl

from augplug.checks import check_int
from augplug_objectives.infonce import relative_weights

__all__ = ["MAX_FEATURES", "fused_similarity_logsumexp"]

#: Largest feature dimension the kernels take: an anchor block of BLOCK x d stays in
#: registers, which stops being sensible beyond 256 features.
MAX_FEATURES = 256

_LOG2E = math.log2(math.e)
_FUSED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


@triton.jit
def _load_rows(ptr, rows, num_rows, dims, features):
    """Rows ``rows`` of a row-major (num_rows, features) matrix, zero beyond either edge."""
    mask = (rows[:, None] < num_rows) & (dims[None, :] < features)
    return tl.load(ptr + rows[:, None] * features + dims[None, :], mask=mask, other=0.0)


@triton.jit
def _store_rows(ptr, values, rows, num_rows, dims, features):
    mask = (rows[:, None] < num_rows) & (dims[None, :] < features)
    tl.store(ptr + rows[:, None] * features + dims[None, :], values, mask=mask)


@triton.jit
def _load_lse_base2(lse_ptr, rows, num_rows):
    """Saved log-sum-exps in base 2; a row with no keys (-inf) reads 0, so its p is 0, not NaN."""
    lse = tl.load(lse_ptr + rows, mask=rows < num_rows, other=0.0) * 1.4426950408889634
    return tl.where(lse == float("-inf"), 0.0, lse)


@triton.jit
def _forward_kernel(
    anchors_ptr, keys_ptr, lse_ptr, num_anchors, num_keys, features, scale_log2, self_offset,
    BLOCK_A: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
):
    """One program per block of anchor rows: online base-2 log-sum-exp over all key blocks."""
    rows = tl.program_id(0) * BLOCK_A + tl.arange(0, BLOCK_A)
    dims = tl.arange(0, BLOCK_D)
    anchors = _load_rows(anchors_ptr, rows, num_anchors, dims, features)
    own_key = rows + self_offset
    running_max = tl.full([BLOCK_A], float("-inf"), tl.float32)
    running_sum = tl.zeros([BLOCK_A], tl.float32)
    for start in range(0, num_keys, BLOCK_K):
        cols = start + tl.arange(0, BLOCK_K)
        keys = _load_rows(keys_ptr, cols, num_keys, dims, features)
        scores = tl.dot(anchors, tl.trans(keys), input_precision=PRECISION) * scale_log2
        keep = (cols[None, :] < num_keys) & (cols[None, :] != own_key[:, None])
        scores = tl.where(keep, scores, float("-inf"))
        new_max = tl.maximum(running_max, tl.max(scores, 1))
        # A row whose keys so far are all masked has max -inf; shifting by 0 instead keeps
        # exp2(-inf - -inf) = NaN out of the sum.
        shift = tl.where(new_max == float("-inf"), 0.0, new_max)
        running_sum = running_sum * tl.exp2(running_max - shift) + tl.sum(tl.exp2(scores - shift[:, None]), 1)
        running_max = new_max
    lse = (running_max + tl.log2(running_sum)) / 1.4426950408889634
    tl.store(lse_ptr + rows, lse, mask=rows < num_anchors)


@triton.jit
def _anchor_grad_kernel(
    anchors_ptr, keys_ptr, lse_ptr, out_ptr, num_anchors, num_keys, features, scale_log2, self_offset,
    BLOCK_A: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
):
    """One program per block of anchor rows: ``out_i = sum_k p_ik keys_k``."""
    rows = tl.program_id(0) * BLOCK_A + tl.arange(0, BLOCK_A)
    dims = tl.arange(0, BLOCK_D)
    anchors = _load_rows(anchors_ptr, rows, num_anchors, dims, features)
    lse = _load_lse_base2(lse_ptr, rows, num_anchors)
    own_key = rows + self_offset
    total = tl.zeros([BLOCK_A, BLOCK_D], tl.float32)
    for start in range(0, num_keys, BLOCK_K):
        cols = start + tl.arange(0, BLOCK_K)
        keys = _load_rows(keys_ptr, cols, num_keys, dims, features)
        scores = tl.dot(anchors, tl.trans(keys), input_precision=PRECISION) * scale_log2
        keep = (cols[None, :] < num_keys) & (cols[None, :] != own_key[:, None])
        probs = tl.where(keep, tl.exp2(scores - lse[:, None]), 0.0)
        total += tl.dot(probs.to(keys.dtype), keys, input_precision=PRECISION)
    _store_rows(out_ptr, total, rows, num_anchors, dims, features)


@triton.jit
def _key_grad_kernel(
    anchors_ptr, keys_ptr, lse_ptr, weight_ptr, out_ptr, num_anchors, num_keys, features, scale_log2,
    self_offset,
    BLOCK_A: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
):
    """One program per block of keys: ``out_k = sum_i weight_i p_ik anchors_i``."""
    cols = tl.program_id(0) * BLOCK_K + tl.arange(0, BLOCK_K)
    dims = tl.arange(0, BLOCK_D)
    keys = _load_rows(keys_ptr, cols, num_keys, dims, features)
    total = tl.zeros([BLOCK_K, BLOCK_D], tl.float32)
    for start in range(0, num_anchors, BLOCK_A):
        rows = start + tl.arange(0, BLOCK_A)
        anchors = _load_rows(anchors_ptr, rows, num_anchors, dims, features)
        lse = _load_lse_base2(lse_ptr, rows, num_anchors)
        weight = tl.load(weight_ptr + rows, mask=rows < num_anchors, other=0.0)
        # The transposed block of scores, (keys, anchors), so the product below is a plain dot.
        scores = tl.dot(keys, tl.trans(anchors), input_precision=PRECISION) * scale_log2
        keep = (rows[None, :] < num_anchors) & (cols[:, None] != rows[None, :] + self_offset)
        weighted = tl.where(keep, tl.exp2(scores - lse[None, :]), 0.0) * weight[None, :]
        total += tl.dot(weighted.to(anchors.dtype), anchors, input_precision=PRECISION)
    _store_rows(out_ptr, total, cols, num_keys, dims, features)


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def _precision(dtype: torch.dtype) -> str:
    # float32 inputs follow torch's own matmul setting, so kernel="triton" uses TF32 exactly
    # when a plain torch.mm would (torch.set_float32_matmul_precision).
    if dtype == torch.float32 and torch.get_float32_matmul_precision() == "highest":
        return "ieee"
    return "tf32"


def _launch_config(features: int, block_anchors: int | None, block_keys: int | None) -> dict:
    # Flash-attention-like tiles for d <= 128; halved beyond, where a block of anchors
    # takes twice the registers. Not yet tuned on a GPU (see benchmarks/RESULTS.md).
    # Eight warps once a block holds 128 x 128 values, as the flash-attention tutorials do.
    wide = features > 128
    config = {
        "BLOCK_A": block_anchors or (64 if wide else 128),
        "BLOCK_K": block_keys or (32 if wide else 64),
        "BLOCK_D": max(16, triton.next_power_of_2(features)),
    }
    config["num_warps"] = 8 if max(config["BLOCK_A"], config["BLOCK_K"]) * config["BLOCK_D"] >= 128 * 128 else 4
    return config


def _check_inputs(anchors: torch.Tensor, keys: torch.Tensor) -> None:
    for name, tensor in (("anchors", anchors), ("keys", keys)):
        if tensor.dtype not in _FUSED_DTYPES:
            raise TypeError(
                f"{name}: kernel='triton' takes float32, bfloat16 or float16, got {tensor.dtype}; "
                "use kernel='torch' (the default) for other dtypes"
            )
        if not tensor.is_cuda and not _interpreting():
            raise ValueError(
                f"{name}: kernel='triton' needs CUDA tensors (or TRITON_INTERPRET=1, Triton's "
                f"CPU interpreter, for testing), got a tensor on {tensor.device}"
            )
    if keys.dtype != anchors.dtype or keys.device != anchors.device or keys.shape[1:] != anchors.shape[1:]:
        raise ValueError(
            f"keys: expected {anchors.shape[1]} features, {anchors.dtype} on {anchors.device} (as anchors), "
            f"got shape {tuple(keys.shape)}, {keys.dtype} on {keys.device}"
        )
    for name, tensor in (("anchors", anchors), ("keys", keys)):
        # The kernels index with 32-bit offsets.
        if tensor.numel() >= 2**31:
            raise ValueError(f"{name}: kernel='triton' takes fewer than 2**31 elements, got shape {tuple(tensor.shape)}")
    if anchors.shape[1] > MAX_FEATURES:
        raise ValueError(
            f"anchors: kernel='triton' takes at most {MAX_FEATURES} features, got {anchors.shape[1]}; "
            "use kernel='torch' for wider embeddings"
        )


class _FusedSimilarityLogSumExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, anchors, keys, scale, self_offset, block_anchors, block_keys):
        anchors, keys = anchors.contiguous(), keys.contiguous()
        num_anchors, features = anchors.shape
        config = _launch_config(features, block_anchors, block_keys)
        lse = torch.empty(num_anchors, dtype=torch.float32, device=anchors.device)
        grid = (triton.cdiv(num_anchors, config["BLOCK_A"]),)
        _forward_kernel[grid](
            anchors, keys, lse, num_anchors, keys.shape[0], features, scale * _LOG2E, self_offset,
            PRECISION=_precision(anchors.dtype), **config,
        )
        ctx.save_for_backward(anchors, keys, lse)
        ctx.scale, ctx.self_offset, ctx.config = scale, self_offset, config
        return lse

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_lse):
        anchors, keys, lse = ctx.saved_tensors
        num_anchors, features = anchors.shape
        num_keys = keys.shape[0]
        config, precision = ctx.config, _precision(anchors.dtype)
        args = (num_anchors, num_keys, features, ctx.scale * _LOG2E, ctx.self_offset)

        # d lse_i / d a_i = scale * sum_k p_ik k_k: the kernel sums, the (M, d) result is scaled.
        anchor_sums = torch.empty(anchors.shape, dtype=torch.float32, device=anchors.device)
        _anchor_grad_kernel[(triton.cdiv(num_anchors, config["BLOCK_A"]),)](
            anchors, keys, lse, anchor_sums, *args, PRECISION=precision, **config
        )
        row_weight = grad_lse.float() * ctx.scale
        grad_anchors = anchor_sums.mul_(row_weight[:, None])

        # d lse_i / d k_k = scale * p_ik a_i. The kernel rounds weighted probabilities to the
        # storage dtype for its matmul, so it takes the weights relative to their largest.
        relative_weight, weight_norm = relative_weights(row_weight)
        key_sums = torch.empty(keys.shape, dtype=torch.float32, device=keys.device)
        _key_grad_kernel[(triton.cdiv(num_keys, config["BLOCK_K"]),)](
            anchors, keys, lse, relative_weight.contiguous(), key_sums, *args, PRECISION=precision, **config
        )
        grad_keys = key_sums.mul_(weight_norm)
        return grad_anchors.to(anchors.dtype), grad_keys.to(keys.dtype), None, None, None, None


def fused_similarity_logsumexp(
    anchors: torch.Tensor,
    keys: torch.Tensor,
    *,
    scale: float,
    self_offset: int = 0,
    block_anchors: int | None = None,
    block_keys: int | None = None,
) -> torch.Tensor:
    """Triton form of :func:`augplug_objectives.infonce.similarity_logsumexp` (float32 result).

    ``block_anchors`` / ``block_keys`` (powers of two, at least 16) override the tile shape;
    the defaults are flash-attention-like tiles, not yet tuned on a GPU.
    """
    _check_inputs(anchors, keys)
    for name, block in (("block_anchors", block_anchors), ("block_keys", block_keys)):
        if block is not None and (check_int(block, name, minimum=16) & (block - 1)):
            raise ValueError(f"{name}: expected None or a power of two >= 16, got {block!r} (int)")
    return _FusedSimilarityLogSumExp.apply(anchors, keys, float(scale), int(self_offset), block_anchors, block_keys)
