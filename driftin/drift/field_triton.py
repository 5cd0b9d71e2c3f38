"""Triton kernels for the elementwise half of the blocked drift field (blocked.py, `_blocked_field`).

The two GEMMs (Gram matrix x.y and A @ [Y, 1]) run in cuBLAS; these kernels fuse everything between
them. Each reads a row block's Gram tile G = |y|^2 - 2 x.y [L, n, K] once and handles up to TP = 4
temperatures at once (the temperature is a tensor axis), so a pass costs one read of G:

  _stats_kernel    d = sqrt(max(G + |x|^2, 0)), self pair masked; a program owns BM rows x CK columns and
                   emits the running (max, sum-exp) of -d / tau_eff per row over its columns and per
                   column over its rows (partials merged in torch), and its minimum distance.
  _weights_kernel  A = exp(-d / tau_eff - r - c / 2) (c = 0 unless kernel_norm == "both"), self pair 0,
                   times the column weight, written as separate [L, T, n, P] (positives) and
                   [L, T, n, K - P] (negatives) buffers so both GEMMs read contiguous matrices.

Setting TRITON_INTERPRET=1 runs these kernels on CPU tensors (slow; used by the tests).
"""
from __future__ import annotations

import os

import torch

from .lse import lse_merge

try:
    import triton
    import triton.language as tl
    _HAVE_TRITON = True
except Exception:  # CPU-only machines without triton
    _HAVE_TRITON = False

TP = 4  # temperatures per launch; more are done in chunks
chunk = TP  # (blocked._blocked_field reads the chunk size of its elementwise backend)
# Tile sizes from scripts/tune_field_kernels.py on an H100 (L=1, n=4096, K=8192, 3 temperatures):
# stats 482 us (vs 652 at BM=32/BN=128/8 warps), weights 229 us (vs 337).
STATS_CFG = dict(BM=16, BN=128, num_warps=4)
WEIGHTS_CFG = dict(BM=16, BN=64, num_warps=8)


def available() -> bool:
    return _HAVE_TRITON and (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1")


if _HAVE_TRITON:
    _NEG_BIG = tl.constexpr(-1e30)  # finite stand-in for -inf in running maxima (avoids inf - inf = nan)

    @triton.jit
    def _tile(g_ptr, xn_ptr, l, rows, cols, n, K, row0, P, SELF: tl.constexpr):
        """Distances [BM, BN] of one tile and its validity mask (in bounds, not the self pair)."""
        row_ok = rows < n
        valid = row_ok[:, None] & (cols < K)[None, :]
        g = tl.load(g_ptr + l * n * K + rows[:, None] * K + cols[None, :], mask=valid, other=0.0)
        xn = tl.load(xn_ptr + l * n + rows, mask=row_ok, other=0.0)
        # Rounding can make the squared distance slightly negative for (near-)identical points.
        d = tl.sqrt(tl.maximum(g + xn[:, None], 0.0))
        if SELF:
            valid = valid & (cols[None, :] != (rows[:, None] + row0 + P))
        return d, valid

    @triton.jit
    def _stats_kernel(g_ptr, xn_ptr, it_ptr, rmax_ptr, rsum_ptr, cmax_ptr, csum_ptr, dmin_ptr, n, K, T, row0, P,
                      CK, SELF: tl.constexpr, TP: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr):
        """Program (i, j, l): rows i*BM.., columns j*CK..(j+1)*CK. Row (max, sum-exp) partials over its
        columns -> [L, nJ, TP, n]; column partials over its rows -> [L, nI, TP, K]; min distance."""
        pid = tl.program_id(0)
        pj = tl.program_id(1)
        l = tl.program_id(2).to(tl.int64)  # int64: offsets exceed 2^31 for big L * n * K
        nI = tl.num_programs(0)
        nJ = tl.num_programs(1)
        rows = pid * BM + tl.arange(0, BM)
        ts = tl.arange(0, TP)
        it = tl.load(it_ptr + ts, mask=ts < T, other=0.0)  # [TP] 1 / tau_eff
        m = tl.full((TP, BM), _NEG_BIG, dtype=tl.float32)
        s = tl.zeros((TP, BM), dtype=tl.float32)
        dmin = tl.full((BM,), float("inf"), dtype=tl.float32)
        for k0 in range(pj * CK, tl.minimum(pj * CK + CK, K), BN):
            cols = k0 + tl.arange(0, BN)
            d, valid = _tile(g_ptr, xn_ptr, l, rows, cols, n, K, row0, P, SELF)
            dmin = tl.minimum(dmin, tl.min(tl.where(valid, d, float("inf")), axis=1))
            logit = tl.where(valid[None, :, :], -d[None, :, :] * it[:, None, None], float("-inf"))
            m_new = tl.maximum(m, tl.max(logit, axis=2))  # online logsumexp along the row
            s = s * tl.exp(m - m_new) + tl.sum(tl.exp(logit - m_new[:, :, None]), axis=2)
            m = m_new
            cm = tl.maximum(tl.max(logit, axis=1), _NEG_BIG)  # [TP, BN] partial over this program's rows
            cs = tl.sum(tl.exp(logit - cm[:, None, :]), axis=1)
            off = ((l * nI + pid) * TP + ts[:, None]) * K + cols[None, :]
            ok = (cols < K)[None, :] & (ts < TP)[:, None]
            tl.store(cmax_ptr + off, cm, mask=ok)
            tl.store(csum_ptr + off, cs, mask=ok)
        roff = ((l * nJ + pj) * TP + ts[:, None]) * n + rows[None, :]
        rok = (rows < n)[None, :] & (ts < TP)[:, None]
        tl.store(rmax_ptr + roff, m, mask=rok)
        tl.store(rsum_ptr + roff, s, mask=rok)
        tl.store(dmin_ptr + (l * nJ + pj) * nI + pid, tl.min(dmin, axis=0))

    @triton.jit
    def _weights_kernel(g_ptr, xn_ptr, it_ptr, r_ptr, c_ptr, colw_ptr, ap_ptr, an_ptr, n, K, T, row0, P,
                        SELF: tl.constexpr, BOTH: tl.constexpr, TP: tl.constexpr, BM: tl.constexpr,
                        BN: tl.constexpr):
        pid_m = tl.program_id(0)
        pid_n = tl.program_id(1)
        l = tl.program_id(2).to(tl.int64)
        L = tl.num_programs(2)
        rows = pid_m * BM + tl.arange(0, BM)
        cols = pid_n * BN + tl.arange(0, BN)
        ts = tl.arange(0, TP)
        t_ok = ts < T
        it = tl.load(it_ptr + ts, mask=t_ok, other=0.0)
        d, valid = _tile(g_ptr, xn_ptr, l, rows, cols, n, K, row0, P, SELF)
        r = tl.load(r_ptr + (ts[:, None] * L + l) * n + rows[None, :],
                    mask=t_ok[:, None] & (rows < n)[None, :], other=0.0)  # [TP, BM]
        expo = -d[None, :, :] * it[:, None, None] - r[:, :, None]
        if BOTH:
            c = tl.load(c_ptr + (ts[:, None] * L + l) * K + cols[None, :],
                        mask=t_ok[:, None] & (cols < K)[None, :], other=0.0)  # [TP, BN]
            expo = expo - 0.5 * c[:, None, :]
        w = tl.load(colw_ptr + l * K + cols, mask=cols < K, other=0.0)
        a = tl.where(valid[None, :, :], tl.exp(expo), 0.0) * w[None, None, :]
        inb = t_ok[:, None, None] & (rows < n)[None, :, None] & (cols < K)[None, None, :]
        lt = (l * T + ts[:, None, None]) * n + rows[None, :, None]  # row index into [L, T, n, *]
        is_pos = (cols < P)[None, None, :]
        tl.store(ap_ptr + lt * P + cols[None, None, :], a, mask=inb & is_pos)
        tl.store(an_ptr + lt * (K - P) + (cols - P)[None, None, :], a, mask=inb & (cols >= P)[None, None, :])


def stats(G, xn, invt, row0, P, self_neg):
    """Pass 1 on one row block. G [L, n, K] (|y|^2 - 2 x.y), xn [L, n], invt [T] (T <= TP).
    Returns row logsumexp [T, L, n], column (max, sum-exp) partials [L, R, T, K], min distance [L]."""
    L, n, K = G.shape
    T = invt.numel()
    cfg = STATS_CFG
    R = triton.cdiv(n, cfg["BM"])
    # one tile of columns per program: no serial loop, many programs in flight (the GPU is latency-bound
    # here, not bandwidth-bound); the per-tile row partials are merged in torch
    CK = cfg["BN"]
    J = triton.cdiv(K, CK)
    f32 = dict(device=G.device, dtype=torch.float32)
    rmax, rsum = torch.empty(L, J, TP, n, **f32), torch.empty(L, J, TP, n, **f32)
    cmax, csum = torch.empty(L, R, TP, K, **f32), torch.empty(L, R, TP, K, **f32)
    dmin = torch.empty(L, J * R, **f32)
    _stats_kernel[(R, J, L)](G, xn, invt, rmax, rsum, cmax, csum, dmin, n, K, T, row0, P, CK, SELF=self_neg,
                             TP=TP, BM=cfg["BM"], BN=cfg["BN"], num_warps=cfg["num_warps"])
    r = lse_merge(rmax[:, :, :T], rsum[:, :, :T]).transpose(0, 1)  # [T, L, n]; -inf for a row without columns
    return r, cmax[:, :, :T], csum[:, :, :T], dmin.amin(1)


def weights(G, xn, invt, r, c, colw, row0, P, self_neg, out_pos, out_neg):
    """Pass 2 on one row block: writes A into out_pos [L, T, n, P] and out_neg [L, T, n, K - P].
    r [T, L, n] row offsets; c [T, L, K] column logsumexps (None unless kernel_norm == "both")."""
    L, n, K = G.shape
    T = invt.numel()
    cfg = WEIGHTS_CFG
    grid = (triton.cdiv(n, cfg["BM"]), triton.cdiv(K, cfg["BN"]), L)
    _weights_kernel[grid](G, xn, invt, r, r if c is None else c, colw, out_pos, out_neg, n, K, T, row0, P,
                          SELF=self_neg, BOTH=c is not None, TP=TP, BM=cfg["BM"], BN=cfg["BN"],
                          num_warps=cfg["num_warps"])
