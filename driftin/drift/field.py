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

from .lse import lse_merge  # shared with the Triton kernels (field_triton.py)

TEMPERATURES = (0.02, 0.05, 0.2)
KERNEL_NORMS = ("both", "y", "none")
IMPLS = ("reference", "torch", "lean", "triton", "auto")
# Above this many distance entries (L * N * K) "auto" streams instead of materialising the matrix.
_DENSE_MAX = 1 << 24


# ----------------------------------------------------------------------------- preparation
def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    # Distances and softmaxes are never done in half precision.
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _prepare(x, pos, neg, extra_neg, extra_weight):
    """Cast, centre, and describe the column layout. Returns a dict used by every implementation."""
    dt = _compute_dtype(x)
    L, N, C = x.shape
    x = x.detach().to(dt)
    pos = pos.detach().to(dt)
    center = pos.mean(1, keepdim=True)  # [L, 1, C]; translation invariance, see module doc
    x = (x - center).contiguous()
    pos = (pos - center).contiguous()
    self_neg = neg is None
    negs = x if self_neg else (neg.detach().to(dt) - center).contiguous()  # [L, M, C]
    if extra_neg is not None and extra_neg.shape[1] > 0:
        extra = (extra_neg.detach().to(dt) - center).contiguous()  # [L, U, C]
        w = torch.as_tensor(extra_weight, dtype=dt, device=x.device).reshape(-1).expand(L).contiguous()
    else:
        extra, w = None, None
    for name, t in (("pos", pos), ("neg", negs), ("extra_neg", extra)):
        if t is not None and (t.shape[0] != L or t.shape[2] != C):
            raise ValueError(f"{name} has shape {tuple(t.shape)}, expected [L={L}, *, C={C}]")
    return dict(x=x, pos=pos, negs=negs, extra=extra, w=w, self_neg=self_neg, L=L, N=N, C=C,
                P=pos.shape[1], M=negs.shape[1], U=0 if extra is None else extra.shape[1])


def _columns(p):
    """Y = [pos, neg, extra] [L, K, C] and the per-column weight applied after normalisation [L, K]."""
    parts = [p["pos"], p["negs"]] + ([p["extra"]] if p["extra"] is not None else [])
    Y = torch.cat(parts, 1)
    colw = torch.ones(p["L"], Y.shape[1], dtype=Y.dtype, device=Y.device)
    if p["extra"] is not None:
        colw[:, p["P"] + p["M"]:] = p["w"][:, None]
    return Y, colw


def _self_mask(p, rows: slice, K: int, device) -> torch.Tensor | None:
    """Boolean [n_rows, K], True at the masked self pair (x_i, x_i) among the negatives."""
    if not p["self_neg"]:
        return None
    i = torch.arange(rows.start, rows.stop, device=device)
    m = torch.zeros(len(i), K, dtype=torch.bool, device=device)
    m[torch.arange(len(i), device=device), p["P"] + i] = True
    return m


def _inv_taus(temperatures, C):
    return [1.0 / (t * math.sqrt(C)) for t in temperatures]


def _normalise_sum(Vt: torch.Tensor, eps: float = 0.0, shared: bool = False) -> torch.Tensor:
    """[T, L, N, C] per-temperature fields -> [L, N, C], each scaled to unit per-dim RMS per group
    (shared: one RMS over all L groups per temperature).

    Unit RMS whatever the raw magnitude: a tiny field (RMS 1e-6, e.g. near equilibrium or at a small
    temperature) is as informative a direction as a large one, so it is not damped; an exactly zero
    field stays zero. The RMS is taken of V / max|V| so fp32 squares of a tiny field cannot underflow.
    eps > 0 restores the old sqrt(mean V^2 + eps) denominator (kept for ablations only)."""
    T, L, N, C = Vt.shape
    dims = (1, 2, 3) if shared else (2, 3)
    if eps > 0:
        ms = Vt.square().mean(dims, keepdim=True)
        return ((Vt / (ms + eps).sqrt())).sum(0)
    top = Vt.abs().amax(dims, keepdim=True)
    top = torch.where(top > 0, top, torch.ones_like(top))  # exact zero field: leave it zero
    u = Vt / top
    rms = u.square().mean(dims, keepdim=True).sqrt()
    return (u / torch.where(rms > 0, rms, torch.ones_like(rms))).sum(0)


def _field_from_A(A, P, pos, Yn):
    """A [L, n, K] (masked, column weights applied) -> V_tau rows [L, n, C]."""
    A_pos, A_neg = A[..., :P], A[..., P:]
    sp = A_pos.sum(-1, keepdim=True)  # [L, n, 1]
    sn = A_neg.sum(-1, keepdim=True)
    # W_pos = A_pos * sn, W_neg = A_neg * sp; the row factors come out of the matmuls.
    return sn * (A_pos @ pos) - sp * (A_neg @ Yn)


def _check(kernel_norm, temperatures):
    if kernel_norm not in KERNEL_NORMS:
        raise ValueError(f"kernel_norm must be one of {KERNEL_NORMS}, got {kernel_norm!r}")
    if len(temperatures) == 0:
        raise ValueError("need at least one temperature")


# ----------------------------------------------------------------------------- reference
def _dense_setup(x, pos, neg, extra_neg, extra_weight, kernel_norm, temperatures):
    """Checked, centred inputs, columns Y with their weights, and the full self-pair mask (or None)."""
    _check(kernel_norm, temperatures)
    p = _prepare(x, pos, neg, extra_neg, extra_weight)
    Y, colw = _columns(p)
    return p, Y, colw, _self_mask(p, slice(0, p["N"]), Y.shape[1], x.device)


def drift_field_reference(x, pos, neg=None, *, extra_neg=None, extra_weight=1.0,
                          temperatures: Sequence[float] = TEMPERATURES, kernel_norm="both", eps=0.0,
                      shared_norm=False):
    """Straightforward version: for each tau, cdist + two softmaxes over the full matrix."""
    p, Y, colw, mask = _dense_setup(x, pos, neg, extra_neg, extra_weight, kernel_norm, temperatures)
    P = p["P"]
    Yn = Y[:, P:]
    out = []
    for tau in temperatures:
        logits = -torch.cdist(p["x"], Y) / (tau * math.sqrt(p["C"]))  # [L, N, K]
        if mask is not None:
            logits = logits.masked_fill(mask, float("-inf"))
        if kernel_norm == "both":
            A = (logits.softmax(-1) * logits.softmax(-2)).sqrt()
        elif kernel_norm == "y":
            A = logits.softmax(-1)
        else:
            A = (logits - logits.amax((1, 2), keepdim=True)).exp()
        out.append(_field_from_A(A * colw[:, None, :], P, p["pos"], Yn))
    return _normalise_sum(torch.stack(out), eps, shared_norm)


# ----------------------------------------------------------------------------- fast dense torch
def _A_block(D, invt, r, c, shift, mask, colw, kernel_norm):
    """Kernel weights for one block of rows. D [L, n, K]; r [L, n]; c [L, K]; shift [L]."""
    logits = D * (-invt)
    if kernel_norm == "both":
        A = (logits - 0.5 * (r[..., None] + c[:, None, :])).exp()
    elif kernel_norm == "y":
        A = (logits - r[..., None]).exp()
    else:
        A = (logits - shift[:, None, None]).exp()
    if mask is not None:
        A = A.masked_fill(mask, 0.0)  # also clears any nan from fully masked columns
    return A * colw[:, None, :]


def drift_field_torch(x, pos, neg=None, *, extra_neg=None, extra_weight=1.0,
                      temperatures: Sequence[float] = TEMPERATURES, kernel_norm="both", eps=0.0,
                      shared_norm=False):
    """Dense fast path: one distance matrix [L, N, K] shared by all temperatures."""
    p, Y, colw, mask = _dense_setup(x, pos, neg, extra_neg, extra_weight, kernel_norm, temperatures)
    P = p["P"]
    D = torch.cdist(p["x"], Y)  # [L, N, K]
    if mask is not None:
        D = D.masked_fill(mask, float("inf"))  # logit -inf for every tau
    dmin = D.amin((1, 2))  # [L]; only for "none"
    out = []
    for invt in _inv_taus(temperatures, p["C"]):
        logits = D * (-invt)
        r = logits.logsumexp(-1) if kernel_norm != "none" else None  # [L, N]
        c = logits.logsumexp(-2) if kernel_norm == "both" else None  # [L, K]
        A = _A_block(D, invt, r, c, -dmin * invt, mask, colw, kernel_norm)
        out.append(_field_from_A(A, P, p["pos"], Y[:, P:]))
    return _normalise_sum(torch.stack(out), eps, shared_norm)


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
    if self_neg:  # column P + (row0 + i) of row i is x_i itself
        i = torch.arange(D.shape[1], device=D.device)
        D[:, i, P + row0 + i] = float("inf")  # logit -inf for every tau
    return D


def _stats_torch(G, xn, invt, row0, P, self_neg):
    """Pass 1 on one row block, same contract as field_triton.stats (partials over one "program")."""
    D = _dist_torch(G, xn, row0, P, self_neg)
    logits = torch.stack([D * (-it) for it in invt.tolist()], 1)  # [L, T, n, K]
    cmax = logits.amax(2, keepdim=True).clamp_min(-1e30)
    csum = (logits - cmax).exp().sum(2, keepdim=True)  # [L, T, 1, K]
    return logits.logsumexp(-1).transpose(0, 1), cmax.transpose(1, 2), csum.transpose(1, 2), D.amin((1, 2))


def _weights_torch(G, xn, invt, r, c, colw, row0, P, self_neg, out_pos, out_neg):
    D = _dist_torch(G, xn, row0, P, self_neg)
    for t, it in enumerate(invt.tolist()):
        expo = D * (-it) - r[t][..., None]
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
    if kernel_norm == "none":  # exp(logit - max logit of the group); see module doc
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
    invt = torch.tensor(_inv_taus(temperatures, p["C"]), dtype=Y.dtype, device=Y.device)
    block = block or _auto_block(p["L"], Y.shape[1], len(temperatures))
    Vt = torch.cat([_blocked_field(p, Y, colw, invt[i:i + ew.chunk], kernel_norm, block, precision, ew)
                    for i in range(0, len(invt), ew.chunk)], 1)
    return _normalise_sum(Vt.transpose(0, 1), eps, shared_norm)


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
                if is_self:  # exactly zero on the diagonal (matmul-based cdist leaves rounding there)
                    r = torch.arange(d.shape[1], device=d.device)
                    d[:, r, i + r] = 0.0
                part += d.sum((1, 2))
            n_pairs = N * K - (N if is_self and not count_self_pairs else 0)
            w = torch.ones(L, dtype=dt, device=x.device) if w is None else \
                torch.as_tensor(w, dtype=dt, device=x.device).reshape(-1).expand(L)
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
