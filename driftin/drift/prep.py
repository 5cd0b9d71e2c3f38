"""Shared pieces of every drift-field implementation: input preparation (centring, columns Y = [pos, neg,
extra_neg], self-pair masks), temperatures, the per-temperature RMS normalisation, and argument checks."""
from __future__ import annotations

import math

import torch

TEMPERATURES = (0.02, 0.05, 0.2)
KERNEL_NORMS = ("both", "y", "none")


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
    center = pos.mean(1, keepdim=True)  # [L, 1, C]; translation invariance, see the field.py module doc
    x = (x - center).contiguous()
    pos = (pos - center).contiguous()
    self_neg = neg is None
    negs = x if self_neg else (neg.detach().to(dt) - center).contiguous()  # [L, M, C]
    if extra_neg is not None and extra_neg.shape[1] > 0:
        extra = (extra_neg.detach().to(dt) - center).contiguous()  # [L, U, C]
        w = _weight_tensor(extra_weight, L, dt, x.device).contiguous()
    else:
        extra, w = None, None
    for name, t in (("pos", pos), ("neg", negs), ("extra_neg", extra)):
        if t is not None and (t.shape[0] != L or t.shape[2] != C):
            raise ValueError(f"{name} has shape {tuple(t.shape)}, expected [L={L}, *, C={C}]")
    return dict(x=x, pos=pos, negs=negs, extra=extra, w=w, self_neg=self_neg, L=L, N=N, C=C,
                P=pos.shape[1], M=negs.shape[1], U=0 if extra is None else extra.shape[1])


def _weight_tensor(w, L: int, dtype, device) -> torch.Tensor:
    """A float or a [1] / [L] tensor as a [L] tensor. A float is filled in on the device: torch.as_tensor(float,
    device=cuda) is a blocking host-to-device copy (a sync)."""
    if isinstance(w, (int, float)):
        return torch.full((L,), float(w), dtype=dtype, device=device)
    return torch.as_tensor(w, dtype=dtype, device=device).reshape(-1).expand(L)


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
    m = torch.zeros(rows.stop - rows.start, K, dtype=torch.bool, device=device)
    # row i's self pair is column P + rows.start + i: a diagonal view, not index tensors (an indexed
    # assignment of a Python scalar copies it host-to-device on CUDA: a sync)
    m.diagonal(p["P"] + rows.start).fill_(True)
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
