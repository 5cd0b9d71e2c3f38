"""The dense drift-field implementations: "reference" (per temperature, plain cdist and softmaxes) and
"torch" (distances once, shared by all temperatures). Both hold the full [L, N, K] matrices."""
from __future__ import annotations

import math
from typing import Sequence

import torch

from .prep import TEMPERATURES, _check, _columns, _field_from_A, _inv_taus, _normalise_sum, _prepare, _self_mask


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
