"""The drifting field V(x) of Deng et al. (arXiv 2602.04770) and the drift loss built on it.

Shapes: L independent groups (class x feature group), x [L, N, C] generated features, pos [L, P, C]
real features, neg [L, M, C] negatives (None: x itself, self pair masked), extra_neg [L, U, C]
unconditional real features that join the negatives with kernel weight `extra_weight` (CFG).

Per temperature tau (tau_eff = tau * sqrt(C)) over the columns Y = [pos, neg, extra_neg]:
  logits[i, j] = -||x_i - Y_j|| / tau_eff
  A = sqrt(softmax_j * softmax_i) ("both"), softmax_j ("y") or exp(logits) ("none");
  extra_neg columns of A *= extra_weight;  sp = rowsum(A_pos), sn = rowsum(A_neg)
  V_tau = sn * (A_pos @ pos) - sp * (A_neg @ [neg; extra_neg])
  V = sum_tau V_tau / sqrt(mean_{N,C} V_tau^2)      (per group; shared_norm: mean over L, N, C)

Implementations (same numbers up to rounding): "reference" (per tau, plain cdist + softmaxes),
"torch" (dense, distances once, shared by all taus), and the blocked two-pass algorithm
(drift_field_blocked: GEMMs for distances and A @ [Y, 1], all taus at once in between, streaming over
row blocks) with torch elementwise ops ("lean", any device) or fused Triton kernels ("triton",
field_triton.py). GEMM precision on CUDA for the blocked paths: "ieee", "tf32x3" (default), "tf32".

Numerical choices, all exact identities:
- Inputs are centred on the mean of pos per group: distances are translation invariant and so is
  V (the total pos weight sp*sn equals the total neg weight), and centring shrinks the
  |x|^2 + |y|^2 - 2 x.y cancellation of matmul-based distances.
- "none" is evaluated as exp(logits - max logit of the group): V_tau is quadratic in A and then
  RMS-normalised, so a per-group constant factor cancels, while the unshifted exp underflows fp32
  for the small temperatures (hence "none" cannot share the RMS over groups).
- Everything here runs in fp32 (fp64 for fp64 input) with autocast switched off: under the trainer's
  bf16 autocast the GEMMs would otherwise silently run in bf16.
"""
from __future__ import annotations

import contextlib
import math
from typing import Sequence

import torch

from .blocked import PRECISIONS, _auto_block, _mm, _split_tf32, drift_field_blocked  # noqa: F401 (re-exported)
from .dense import drift_field_reference, drift_field_torch
from .prep import KERNEL_NORMS, TEMPERATURES, _compute_dtype, _weight_tensor  # noqa: F401 (KERNEL_NORMS re-exported)

IMPLS = ("reference", "torch", "lean", "triton", "auto")
# Above this many distance entries (L * N * K) "auto" streams instead of materialising the matrix.
_DENSE_MAX = 1 << 24


# ----------------------------------------------------------------------------- dispatch
def _triton_ok(x: torch.Tensor) -> bool:
    if not x.is_cuda:
        return False
    try:
        from . import field_triton
    except Exception:  # no triton installed
        return False
    return field_triton.available()


def resolve_impl(impl: str, x: torch.Tensor, n_entries: int) -> str:
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl != "auto":
        return impl
    if x.dtype != torch.float64 and _triton_ok(x):
        return "triton"
    return "torch" if n_entries <= _DENSE_MAX else "lean"


def drift_field(x, pos, neg=None, *, extra_neg=None, extra_weight=1.0,
                temperatures: Sequence[float] = TEMPERATURES, kernel_norm="both", eps=0.0, shared_norm=False,
                impl="auto", allow_autocast=False, **kw) -> torch.Tensor:
    """V [L, N, C] (float32, or float64 for float64 input); no gradient. See module docstring.

    shared_norm: one RMS per temperature over all L groups instead of one per group.
    allow_autocast: leave an enclosing autocast on (the old behaviour, for ablations only)."""
    if x.dim() != 3:
        raise ValueError("x must be [L, N, C]")
    if shared_norm and kernel_norm == "none":
        raise ValueError("kernel_norm 'none' is shifted per group, so it cannot share the RMS over groups")
    L, N, _ = x.shape
    K = pos.shape[1] + (N if neg is None else neg.shape[1]) + (0 if extra_neg is None else extra_neg.shape[1])
    impl = resolve_impl(impl, x, L * N * K)
    args = dict(extra_neg=extra_neg, extra_weight=extra_weight, temperatures=tuple(temperatures),
                kernel_norm=kernel_norm, eps=eps, shared_norm=shared_norm)
    with torch.no_grad(), _no_autocast(x, allow_autocast):
        if impl == "reference":
            return drift_field_reference(x, pos, neg, **args)
        if impl == "torch":
            return drift_field_torch(x, pos, neg, **args)
        if impl == "lean":
            return drift_field_blocked(x, pos, neg, **args, backend="torch", **kw)
        return drift_field_blocked(x, pos, neg, **args, backend="triton", **kw)


def _no_autocast(x: torch.Tensor, allow: bool = False):
    return contextlib.nullcontext() if allow else torch.autocast(x.device.type, enabled=False)


# ----------------------------------------------------------------------------- scale and loss
@torch.no_grad()
def feature_scale(x: torch.Tensor, ys, *, weights=None, shared: bool = False, count_self_pairs: bool = False,
                  block_entries: int = 1 << 25) -> torch.Tensor:
    """S [L] so that the mean distance ||x_i - y_j|| / S over real pairs is sqrt(C).

    ys: a tensor [L, K, C] or a list of them (None entries skipped). An entry that *is* x (the
    self-negatives) contributes its N(N-1) pairs i != j: the zero self distances are no pairs, and
    counting them would shrink S (count_self_pairs=True keeps that old behaviour, for ablations).
    weights: per entry None, a float or a [L] tensor: that entry's pairs count with this weight
    (the CFG weight w of the unconditional columns). shared: one S for all L groups. Streams over rows.
    """
    if isinstance(ys, torch.Tensor):
        ys = [ys]
    weights = [None] * len(ys) if weights is None else list(weights)
    dt = _compute_dtype(x)
    L, N, C = x.shape
    with _no_autocast(x):
        used = [(y, w) for y, w in zip(ys, weights) if y is not None]
        center = torch.cat([y.detach().to(dt) for y, _ in used], 1).mean(1, keepdim=True)  # cdist precision only
        xd = x.detach().to(dt) - center
        total = torch.zeros(L, dtype=dt, device=x.device)
        count = torch.zeros(L, dtype=dt, device=x.device)
        for y, w in used:
            is_self = y is x
            Y = xd if is_self else y.detach().to(dt) - center
            K = Y.shape[1]
            block = max(1, block_entries // max(1, L * K))
            part = torch.zeros(L, dtype=dt, device=x.device)
            for i in range(0, N, block):
                d = torch.cdist(xd[:, i:i + block], Y)
                if is_self:  # exactly zero on the diagonal (matmul-based cdist leaves rounding there); a view,
                    d.diagonal(i, 1, 2).zero_()  # not index tensors: indexed assignment syncs with the host
                part += d.sum((1, 2))
            n_pairs = N * K - (N if is_self and not count_self_pairs else 0)
            w = _weight_tensor(1.0 if w is None else w, L, dt, x.device)
            total += w * part
            count += w * n_pairs
        if shared:
            total, count = total.sum().expand(L), count.sum().expand(L)
        mean = total / count.clamp_min(1e-30)
        return (mean / math.sqrt(C)).clamp_min(1e-12)


def drift_loss(x, pos, neg=None, *, extra_neg=None, extra_weight=1.0,
               temperatures: Sequence[float] = TEMPERATURES, kernel_norm="both", feature_norm=True,
               impl="auto", eps=0.0, shared_norm=False, scale_extra_weighted=False, scale_self_pairs=False,
               allow_autocast=False, **kw):
    """Drift loss for one feature group batch. x [L, N, C] carries the generator's gradient.

    loss = mean((xs - sg(xs + V))^2), xs = x / S (S stop-grad, feature_scale over all columns),
    V = drift_field(xs, pos / S, ...). Numerically loss == mean(V^2); d loss / d xs = -2 V / numel.
    shared_norm: S and the field's RMS shared by all L groups. scale_extra_weighted: the extra_neg
    pairs enter S with weight extra_weight (the paper) instead of 1. scale_self_pairs, allow_autocast,
    eps > 0: the pre-#19 behaviour, for ablations. Returns (loss, stats) with stats of detached tensors.
    """
    if feature_norm:
        S = feature_scale(x, [pos, x if neg is None else neg, extra_neg],
                          weights=[None, None, extra_weight if scale_extra_weighted else None],
                          shared=shared_norm, count_self_pairs=scale_self_pairs)  # [L]
    else:
        S = torch.ones(x.shape[0], dtype=_compute_dtype(x), device=x.device)
    s3 = S[:, None, None]

    def sc(t):
        return None if t is None else t.detach().to(S.dtype) / s3

    xs = x.to(S.dtype) / s3  # [L, N, C], grad flows through x only
    V = drift_field(xs.detach(), sc(pos), sc(neg), extra_neg=sc(extra_neg), extra_weight=extra_weight,
                    temperatures=temperatures, kernel_norm=kernel_norm, eps=eps, shared_norm=shared_norm,
                    impl=impl, allow_autocast=allow_autocast, **kw)
    target = (xs + V.to(xs.dtype)).detach()
    loss = (xs - target).pow(2).mean()
    stats = {"v_abs": V.abs().mean().detach(), "v_rms": V.pow(2).mean().sqrt().detach(),
             "scale": S.mean().detach()}
    return loss, stats
