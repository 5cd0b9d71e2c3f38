"""The blocked two-pass drift field (drift_field_blocked): GEMMs for distances and A @ [Y, 1], all temperatures
at once in between, streaming over row blocks; the elementwise passes in torch ("lean") or Triton (field_triton.py)."""
from __future__ import annotations

import contextlib
from typing import Sequence

import torch

from .lse import lse_merge  # shared with the Triton kernels (field_triton.py)
from .prep import TEMPERATURES, _check, _columns, _inv_taus, _normalise_sum, _prepare


# ----------------------------------------------------------------------------- blocked (lean / triton)
PRECISIONS = ("ieee", "tf32x3", "tf32")  # GEMM precision on CUDA; CPU GEMMs are always exact


@contextlib.contextmanager
def _tf32(enabled: bool):
    m = torch.backends.cuda.matmul
    old = m.allow_tf32
    m.allow_tf32 = enabled
    try:
        yield
    finally:
        m.allow_tf32 = old


def _split_tf32(t: torch.Tensor):
    """t = hi + lo with hi exactly representable in TF32 (10 mantissa bits): the 3xTF32 trick."""
    hi = (t.view(torch.int32) & -8192).view(torch.float32)
    return hi, t - hi


def _mm(a: torch.Tensor, b: torch.Tensor, precision: str, bias=None, alpha: float = 1.0) -> torch.Tensor:
    """Batched bias + alpha * (a @ b) (or a @ b). "ieee": plain fp32 GEMM;
    "tf32": one TF32 GEMM (~1e-3 relative per product); "tf32x3": hi*lo + lo*hi + hi*hi in TF32,
    ~fp32 accuracy at 3 tensor-core GEMMs. CPU and float64 GEMMs are always exact."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")

    if bias is None and alpha != 1.0:
        raise ValueError("alpha needs a bias")

    def first(x, y):
        return x @ y if bias is None else torch.baddbmm(bias, x, y, alpha=alpha)

    if not a.is_cuda or a.dtype != torch.float32 or precision == "ieee":
        with _tf32(False):
            return first(a, b)
    with _tf32(True):
        if precision == "tf32":
            return first(a, b)
        (ah, al), (bh, bl) = _split_tf32(a), _split_tf32(b)
        out = first(ah, bl)  # small terms first, then accumulate in place
        out.baddbmm_(al, bh, alpha=alpha)
        return out.baddbmm_(ah, bh, alpha=alpha)


def _dist_torch(G, xn, row0, P, self_neg):
    D = (G + xn[..., None]).clamp_min_(0).sqrt_()
    if self_neg:  # column P + (row0 + i) of row i is x_i itself: logit -inf for every tau. A diagonal view, not
        D.diagonal(P + row0, 1, 2).fill_(float("inf"))  # index tensors: that assignment syncs with the host on CUDA
    return D


def _stats_torch(G, xn, invt, row0, P, self_neg):
    """Pass 1 on one row block, same contract as field_triton.stats (partials over one "program")."""
    D = _dist_torch(G, xn, row0, P, self_neg)
    logits = D[:, None] * -invt[:, None, None]  # [L, T, n, K]; invt stays on the device (no .tolist() sync)
    cmax = logits.amax(2, keepdim=True).clamp_min(-1e30)
    csum = (logits - cmax).exp().sum(2, keepdim=True)  # [L, T, 1, K]
    return logits.logsumexp(-1).transpose(0, 1), cmax.transpose(1, 2), csum.transpose(1, 2), D.amin((1, 2))


def _weights_torch(G, xn, invt, r, c, colw, row0, P, self_neg, out_pos, out_neg):
    D = _dist_torch(G, xn, row0, P, self_neg)
    neg_invt = -invt
    for t in range(len(invt)):
        expo = D * neg_invt[t] - r[t][..., None]
        if c is not None:
            expo -= 0.5 * c[t][:, None, :]
        A = expo.exp_().mul_(colw[:, None, :])  # self pair: exp(-inf) = 0
        out_pos[:, t] = A[..., :P]
        out_neg[:, t] = A[..., P:]


def _auto_block(L, K, T, budget=1 << 28):
    # G [L, n, K] and A [L, T, n, K] together ~budget elements (1 GiB fp32).
    return max(1, budget // max(1, (T + 1) * L * K))


def _blocked_field(p, Y, colw, invt, kernel_norm, block, precision, ew):
    """Unnormalised V_tau [L, T, N, C] for T <= ew's temperature chunk; see drift_field_blocked."""
    L, N, C, P, K, T = p["L"], p["N"], p["C"], p["P"], Y.shape[1], invt.numel()
    x, dev, dt = p["x"], Y.device, Y.dtype
    xn, yn = x.pow(2).sum(-1), Y.pow(2).sum(-1)  # [L, N], [L, K]
    Yt = Y.transpose(1, 2)
    # [y, 1, 0...]: the ones column makes the GEMM return the row sums sp / sn too; width padded to 8
    Cp = (C + 1 + 7) // 8 * 8
    Yaug = torch.zeros(L, K, Cp, dtype=dt, device=dev)
    Yaug[..., :C], Yaug[..., C] = Y, 1.0
    Yp, Yn = Yaug[:, :P].contiguous(), Yaug[:, P:].contiguous()
    blocks = [(i, min(i + block, N)) for i in range(0, N, block)]

    def gram(i0, i1):  # |y|^2 - 2 x.y for rows i0:i1, [L, n, K]
        return _mm(x[:, i0:i1], Yt, precision, bias=yn[:, None, :], alpha=-2.0)

    # pass 1: row logsumexps (complete per block), column logsumexps (merged over blocks), min distance
    r = torch.empty(T, L, N, dtype=dt, device=dev)
    c = torch.full((T, L, K), float("-inf"), dtype=dt, device=dev)
    dmin = torch.full((L,), float("inf"), dtype=dt, device=dev)
    G = None
    for i0, i1 in blocks:
        G = gram(i0, i1)
        rl, cmax, csum, dm = ew.stats(G, xn[:, i0:i1].contiguous(), invt, i0, P, p["self_neg"])
        r[:, :, i0:i1] = rl
        lse = lse_merge(cmax, csum).transpose(0, 1)  # [T, L, K] over this block's rows
        c = torch.logaddexp(c, lse) if len(blocks) > 1 else lse
        dmin = torch.minimum(dmin, dm)
    if kernel_norm == "none":  # exp(logit - max logit of the group); see the field.py module doc
        r = (-dmin[None, :, None] * invt[:, None, None]).expand(T, L, N).contiguous()
    elif kernel_norm == "both":  # A = exp(logit - r/2 - c/2)
        r = r.mul_(0.5)
    cc = c.contiguous() if kernel_norm == "both" else None

    # pass 2: A per block (all temperatures), then one GEMM per side: [L, T*n, K_side] @ [L, K_side, Cp]
    Vt = torch.empty(L, T, N, C, dtype=dt, device=dev)
    for i0, i1 in blocks:
        n = i1 - i0
        if len(blocks) > 1:
            G = gram(i0, i1)
        Ap = torch.empty(L, T, n, P, dtype=dt, device=dev)
        An = torch.empty(L, T, n, K - P, dtype=dt, device=dev)
        ew.weights(G, xn[:, i0:i1].contiguous(), invt, r[:, :, i0:i1].contiguous(), cc, colw, i0, P,
                   p["self_neg"], Ap, An)
        Op = _mm(Ap.view(L, T * n, P), Yp, precision).view(L, T, n, Cp)
        On = _mm(An.view(L, T * n, K - P), Yn, precision).view(L, T, n, Cp)
        del Ap, An
        # V_tau = sn * (A_pos @ pos) - sp * (A_neg @ neg), W = A times the other side's row sum
        Vt[:, :, i0:i1] = torch.addcmul(On[..., C:C + 1] * Op[..., :C], Op[..., C:C + 1], On[..., :C], value=-1)
    return Vt


class _TorchElementwise:
    chunk = 1 << 30
    stats = staticmethod(_stats_torch)
    weights = staticmethod(_weights_torch)


def drift_field_blocked(x, pos, neg=None, *, extra_neg=None, extra_weight=1.0,
                        temperatures: Sequence[float] = TEMPERATURES, kernel_norm="both", eps=0.0,
                        shared_norm=False, block: int | None = None, precision: str = "tf32x3", backend: str = "torch"):
    """Streaming path over blocks of `block` rows; extra memory O((N + K) * C * T + block * K * (T + 1)).

    Per block: G = |y|^2 - 2 x.y by GEMM, pass 1 takes row logsumexps and column partials for every tau
    at once, pass 2 forms A for every tau and multiplies by [Y, 1] (sums from the ones column). With one
    block (the default when it fits the budget) G is computed once. backend: "torch" (any device) or
    "triton" (CUDA, fused elementwise kernels). precision: GEMM precision on CUDA, see _mm.
    """
    _check(kernel_norm, temperatures)
    if backend == "triton":
        from . import field_triton as ew
        p = _prepare(x.float(), pos, neg, extra_neg, extra_weight)  # the kernels are fp32
    else:
        ew = _TorchElementwise
        p = _prepare(x, pos, neg, extra_neg, extra_weight)
    Y, colw = _columns(p)
    # 1 / tau_eff filled in on the device: torch.tensor(list, device=cuda) is a blocking host-to-device copy
    invt = torch.empty(len(temperatures), dtype=Y.dtype, device=Y.device)
    for t, v in enumerate(_inv_taus(temperatures, p["C"])):
        invt[t].fill_(v)
    block = block or _auto_block(p["L"], Y.shape[1], len(temperatures))
    Vt = torch.cat([_blocked_field(p, Y, colw, invt[i:i + ew.chunk], kernel_norm, block, precision, ew)
                    for i in range(0, len(invt), ew.chunk)], 1)
    return _normalise_sum(Vt.transpose(0, 1), eps, shared_norm)
